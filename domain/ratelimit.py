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

from sqlalchemy import BigInteger, Integer, String, delete, select, text
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


async def hit(
    *, session: AsyncSession, key: str, limit: int, per: dt.timedelta, now: dt.datetime, what: str
) -> int:
    """Count one hit on `key`; raise RateLimited, with seconds to wait, past `limit` per window."""
    seconds = int(per.total_seconds())
    epoch = int(now.timestamp())
    window = epoch // seconds
    postgres = session.bind.dialect.name == "postgresql"
    insert = pg_insert if postgres else sqlite_insert
    table = RateCounter.__table__
    key = key[:200]
    earlier = (
        select(table.c.count)
        .where(table.c.key == key, table.c.window == window - 1)
        .scalar_subquery()
    )
    stmt = insert(table).values(key=key, window=window, count=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.key, table.c.window], set_={"count": table.c.count + 1}
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
    previous = previous or 0
    elapsed = now.timestamp() / seconds - window  # how far into this window, 0 to 1
    if count > limit or count + previous * (1 - elapsed) > limit:
        if count > limit:  # this window alone is over: wait for the next one
            wait = (1 - elapsed) * seconds
        else:  # wait until enough of the previous window has slid out
            wait = ((1 - (limit - count) / previous) - elapsed) * seconds
        retry_after = max(1, math.ceil(wait))
        raise RateLimited(f"too many {what}; try again in {retry_after} s", retry_after=retry_after)
    return count


def window_start(window: int, per: dt.timedelta) -> dt.datetime:
    return dt.datetime.fromtimestamp(window * int(per.total_seconds()), dt.UTC)


async def purge(
    *, session: AsyncSession, now: dt.datetime, per: dt.timedelta, keep_prefix: str
) -> list[tuple[str, int, int]]:
    """Drop every window that has ended (housekeeping); return the ended windows of keys
    starting with `keep_prefix` as (key, window, count), for the caller to record first."""
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
    await session.execute(
        delete(RateCounter).where(
            (RateCounter.window < current - 1)
            | (RateCounter.key.startswith(keep_prefix) & (RateCounter.window < current))
        )
    )
    return [(key, window, count) for key, window, count in ended]
