"""Sliding-window rate limits kept in the database, so every server process shares them.

One row per key and window holds a counter; each hit is a single upsert that returns the new
count, atomic on SQLite and PostgreSQL alike, so concurrent processes never lose a hit. The
limit applies to a sliding window: this window's count plus the previous window's, weighted by
how much of it still overlaps the last `per` (Cloudflare's estimate), so a burst just before a
window boundary and another just after cannot spend twice the budget.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from sqlalchemy import BigInteger, Integer, String, and_, delete, select, text, true
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from domain.db import Base
from domain.errors import RateLimited


class RateCounter(Base):
    __tablename__ = "rate_counters"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    count: Mapped[int] = mapped_column(Integer)


async def add(*, session: AsyncSession, key: str, window: int, n: int = 1) -> tuple[int, int]:
    """Add `n` hits to `key`'s counter for `window` in one atomic upsert; return the window's
    new count and the previous window's count."""
    postgres = session.bind.dialect.name == "postgresql"
    insert = pg_insert if postgres else sqlite_insert
    table = RateCounter.__table__
    key = key[:200]
    earlier = (
        select(table.c.count)
        .where(table.c.key == key, table.c.window == window - 1)
        .scalar_subquery()
    )
    stmt = insert(table).values(key=key, window=window, count=n)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.key, table.c.window], set_={"count": table.c.count + n}
    )
    if postgres:
        # A counter is not worth waiting for the disk: losing the last hits in a crash only
        # forgives them. And one round trip: the previous window comes back with the count.
        await session.execute(text("SET LOCAL synchronous_commit TO OFF"))
        count, previous = (await session.execute(stmt.returning(table.c.count, earlier))).one()
    else:  # SQLite's RETURNING takes no subquery
        count = (await session.execute(stmt.returning(table.c.count))).scalar_one()
        previous = await session.scalar(
            select(table.c.count).where(table.c.key == key, table.c.window == window - 1)
        )
    return count, previous or 0


def judge(
    *, count: int, previous: int, limit: int, per: dt.timedelta, now: dt.datetime, what: str
) -> None:
    """Raise RateLimited, with seconds to wait, when `count` hits in this window and
    `previous` in the last are over `limit` on the sliding window."""
    seconds = int(per.total_seconds())
    window = int(now.timestamp()) // seconds
    elapsed = now.timestamp() / seconds - window  # how far into this window, 0 to 1
    if count > limit or count + previous * (1 - elapsed) > limit:
        if count > limit:  # this window alone is over: wait for the next one
            wait = (1 - elapsed) * seconds
        else:  # wait until enough of the previous window has slid out
            wait = ((1 - (limit - count) / previous) - elapsed) * seconds
        retry_after = max(1, math.ceil(wait))
        raise RateLimited(f"too many {what}; try again in {retry_after} s", retry_after=retry_after)


async def hit(
    *, session: AsyncSession, key: str, limit: int, per: dt.timedelta, now: dt.datetime, what: str
) -> int:
    """Count one hit on `key`; raise RateLimited, with seconds to wait, past `limit` per window."""
    window = int(now.timestamp()) // int(per.total_seconds())
    count, previous = await add(session=session, key=key, window=window)
    judge(count=count, previous=previous, limit=limit, per=per, now=now, what=what)
    return count


@dataclass
class _Tally:
    window: int
    known: int = 0  # the window's count in the database at the last sync (ours included)
    previous: int = 0  # the previous window's count, as of the last sync
    pending: int = 0  # this process's hits since, not yet written
    synced_at: float = -math.inf  # clock seconds


class BatchedCounter:
    """A per-process front for a hot database counter (the per-account request budget, hit
    by every request): hits are counted here and written in one upsert per key at most every
    `sync_seconds` (and at the first hit of each window), instead of an upsert and a commit per
    request, which serialised one account's concurrent requests on its counter row.

    Within one process the verdict is exact: the last count read back plus the hits since. Other
    processes' hits are seen at the next sync, so across N processes an account can overrun its
    budget by what the others spend in `sync_seconds`. Hits not yet written when a process
    dies are forgiven (as an unsynchronised commit already was)."""

    def __init__(self, *, sync_seconds: float = 1.0) -> None:
        self.sync_seconds = sync_seconds
        self._tallies: dict[str, _Tally] = {}

    async def hit(
        self,
        *,
        session: AsyncSession,
        key: str,
        limit: int,
        per: dt.timedelta,
        now: dt.datetime,
        what: str,
        carried: dict[int, int] | None = None,
    ) -> bool:
        """Count one hit and judge it (RateLimited past the budget); True when it wrote to
        the session (the caller commits). `carried` holds hits counted elsewhere until now
        (window -> hits; the Redis budget's, when Redis stops answering), written here
        before this hit is judged."""
        window = int(now.timestamp()) // int(per.total_seconds())
        clock = now.timestamp()
        tally = self._tallies.get(key)
        wrote = False
        for earlier, n in sorted((carried or {}).items()):
            if earlier < window and n > 0:  # the previous window weighs on the sliding limit
                await add(session=session, key=key, window=earlier, n=n)
                wrote = True
                if tally is not None and tally.window == window:
                    tally.previous += n
        if tally is not None and tally.window != window and tally.pending:
            # The last window's unwritten hits go to that window: they weigh on this one's
            # sliding limit.
            n, tally.pending = tally.pending, 0
            await add(session=session, key=key, window=tally.window, n=n)
            wrote = True
        if tally is None or tally.window != window:
            if len(self._tallies) >= 10_000:  # one per active account; drop the idle ones
                self.forget_before(window)
            tally = self._tallies[key] = _Tally(window=window)
        tally.pending += 1
        extra = (carried or {}).get(window, 0)
        if extra > 0:  # written with this hit, and the count read back now
            tally.pending += extra
            tally.synced_at = -math.inf
        if not (0 <= clock - tally.synced_at < self.sync_seconds):
            n, tally.pending = tally.pending, 0
            tally.synced_at = clock
            try:
                count, previous = await add(session=session, key=key, window=window, n=n)
            except BaseException:
                tally.pending += n  # not written: still ours to write
                tally.synced_at = -math.inf
                raise
            wrote = True
            # A concurrent sync of the same key may have read back a later count first.
            tally.known = max(tally.known, count)
            tally.previous = max(tally.previous, previous)
        judge(
            count=tally.known + tally.pending,
            previous=tally.previous,
            limit=limit,
            per=per,
            now=now,
            what=what,
        )
        return wrote

    def forget_before(self, window: int) -> None:
        """Drop tallies of windows before `window` with nothing left to write (housekeeping)."""
        for key in [k for k, t in self._tallies.items() if t.window < window and not t.pending]:
            del self._tallies[key]


def window_start(window: int, per: dt.timedelta) -> dt.datetime:
    return dt.datetime.fromtimestamp(window * int(per.total_seconds()), dt.UTC)


async def count(*, session: AsyncSession, key: str, window: int) -> tuple[int, int]:
    """`key`'s count in `window` and in the window before, without adding a hit."""
    rows = dict(
        (
            await session.execute(
                select(RateCounter.window, RateCounter.count).where(
                    RateCounter.key == key[:200], RateCounter.window.in_([window, window - 1])
                )
            )
        ).all()
    )
    return int(rows.get(window, 0)), int(rows.get(window - 1, 0))


async def forget(*, session: AsyncSession, prefix: str) -> None:
    """Drop every counter whose key starts with `prefix`."""
    await session.execute(delete(RateCounter).where(RateCounter.key.startswith(prefix)))


# Counters kept in windows longer than the minute housekeeping runs on: their prefix and
# window length (login failures per account and source: domain/users/service.py).
LONG_WINDOWS: dict[str, dt.timedelta] = {}


async def purge(
    *, session: AsyncSession, now: dt.datetime, per: dt.timedelta, keep_prefix: str
) -> list[tuple[str, int, int]]:
    """Drop every window that has ended (housekeeping); return the ended windows of keys
    starting with `keep_prefix` as (key, window, count), for the caller to record first.
    Keys of LONG_WINDOWS go when their own windows have ended."""
    for prefix, length in LONG_WINDOWS.items():
        own = int(now.timestamp()) // int(length.total_seconds())
        await session.execute(
            delete(RateCounter).where(
                RateCounter.key.startswith(prefix), RateCounter.window < own - 1
            )
        )
    current = int(now.timestamp()) // int(per.total_seconds())
    ended = (
        await session.execute(
            select(RateCounter.key, RateCounter.window, RateCounter.count)
            .where(RateCounter.window < current, RateCounter.key.startswith(keep_prefix))
            .order_by(RateCounter.window, RateCounter.key)
        )
    ).all()
    # The previous window stays while it still weighs on the sliding limit; the summarised
    # keys go at once, so each ended window is reported once.
    longer = [~RateCounter.key.startswith(prefix) for prefix in LONG_WINDOWS]
    await session.execute(
        delete(RateCounter).where(
            ((RateCounter.window < current - 1) & and_(true(), *longer))
            | (RateCounter.key.startswith(keep_prefix) & (RateCounter.window < current))
        )
    )
    return [(key, window, count) for key, window, count in ended]
