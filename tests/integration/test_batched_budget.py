"""The per-account request budget in the database, written in batches (domain/ratelimit.py
BatchedCounter): exact within a process, one write a second instead of one per request, shared
by processes at each write, and a window's unwritten hits land in that window."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.db import create_engine, session_factory
from domain.errors import RateLimited
from domain.ratelimit import BatchedCounter, RateCounter

MINUTE = dt.timedelta(minutes=1)
START = dt.datetime(2026, 11, 26, 8, 0, 10, tzinfo=dt.UTC)  # 10 s into a minute


@pytest.fixture
async def session(any_database_url: str) -> AsyncIterator[AsyncSession]:
    engine = create_engine(any_database_url)
    async with session_factory(engine)() as session:
        yield session
    await engine.dispose()


async def _hit(counter: BatchedCounter, session: AsyncSession, at: dt.datetime) -> bool:
    wrote = await counter.hit(
        session=session, key="queries:7", limit=5, per=MINUTE, now=at, what="requests"
    )
    await session.commit()
    return wrote


async def _stored(session: AsyncSession) -> dict[int, int]:
    rows = await session.execute(
        select(RateCounter.window, RateCounter.count).where(RateCounter.key == "queries:7")
    )
    return dict(rows.all())


async def test_one_process_counts_exactly_and_writes_once_a_second(session: AsyncSession) -> None:
    counter = BatchedCounter(sync_seconds=1)
    moments = [START + dt.timedelta(milliseconds=100 * i) for i in range(6)]

    writes = [await _hit(counter, session, at) for at in moments[:5]]
    with pytest.raises(RateLimited):
        await _hit(counter, session, moments[5])

    assert writes == [True, False, False, False, False]
    assert await _stored(session) == {int(START.timestamp()) // 60: 1}
    later = START + dt.timedelta(seconds=2)
    with pytest.raises(RateLimited):  # still over: the refused hit counts too
        await _hit(counter, session, later)
    assert await _stored(session) == {int(START.timestamp()) // 60: 7}


async def test_two_processes_see_each_others_hits_at_their_next_write(
    session: AsyncSession,
) -> None:
    first, second = BatchedCounter(sync_seconds=1), BatchedCounter(sync_seconds=1)
    for i in range(3):
        await _hit(first, session, START + dt.timedelta(milliseconds=10 * i))
    await _hit(first, session, START + dt.timedelta(seconds=1.5))  # writes the two unwritten

    assert await _hit(second, session, START + dt.timedelta(seconds=2)) is True
    with pytest.raises(RateLimited):  # 4 + 1 by the first process, 1 by this one
        await _hit(second, session, START + dt.timedelta(seconds=2.1))


async def test_a_windows_unwritten_hits_are_written_to_that_window(session: AsyncSession) -> None:
    counter = BatchedCounter(sync_seconds=1)
    window = int(START.timestamp()) // 60
    for i in range(3):
        await _hit(counter, session, START + dt.timedelta(milliseconds=10 * i))

    await _hit(counter, session, START + dt.timedelta(seconds=60))  # the next minute

    assert await _stored(session) == {window: 3, window + 1: 1}
