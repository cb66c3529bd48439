"""Fixed-window rate limits kept in the database, so every server process shares them.

One row per key and window holds a counter; each hit is a single upsert that returns the new
count, atomic on SQLite and PostgreSQL alike, so concurrent processes never lose a hit.
"""

from __future__ import annotations

import datetime as dt
import math

from sqlalchemy import BigInteger, Integer, String, delete, select
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
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    table = RateCounter.__table__
    stmt = insert(table).values(key=key[:200], window=window, count=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.key, table.c.window], set_={"count": table.c.count + 1}
    ).returning(table.c.count)
    count = (await session.execute(stmt)).scalar_one()
    if count > limit:
        retry_after = max(1, math.ceil((window + 1) * seconds - now.timestamp()))
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
    await session.execute(delete(RateCounter).where(RateCounter.window < current))
    return [(key, window, count) for key, window, count in ended]
