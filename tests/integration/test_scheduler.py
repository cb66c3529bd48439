"""Scheduled jobs name their time zone, fire at that zone's local time (the seed's 00:00
incident), and run once per slot however many workers look, with the run recorded."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.db import NaiveDatetimeError, create_engine, session_factory
from domain.jobs.scheduler import Job, JobRun, ScheduleInvalid, run_due

UTC = dt.UTC


@pytest.fixture
async def sessions(any_database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(any_database_url)
    yield session_factory(engine)
    await engine.dispose()


def _sync(runs: list[dt.datetime], zone: str = "Asia/Shanghai", fail: bool = False) -> Job:
    async def run(slot: dt.datetime) -> None:
        await asyncio.sleep(0.05)  # long enough for a second worker to look meanwhile
        runs.append(slot)
        if fail:
            raise RuntimeError("channel API answered 502")

    return Job(name="channel.sync", at=dt.time(0, 0), zone=zone, run=run)


async def test_midnight_in_shanghai_fires_at_1600_utc_the_day_before(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    runs: list[dt.datetime] = []
    job = _sync(runs)
    before = dt.datetime(2026, 11, 26, 15, 59, 59, tzinfo=UTC)  # 23:59:59 in Shanghai
    at = dt.datetime(2026, 11, 26, 16, 0, 5, tzinfo=UTC)  # 00:00:05 on the 27th in Shanghai

    assert await run_due(sessions=sessions, jobs=[job], now=before) == []
    assert await run_due(sessions=sessions, jobs=[job], now=at) == ["channel.sync"]
    assert runs == [dt.datetime(2026, 11, 26, 16, 0, tzinfo=UTC)]
    # the same slot never again, and the run is on record
    assert await run_due(sessions=sessions, jobs=[job], now=at + dt.timedelta(hours=1)) == []
    async with sessions() as session:
        [record] = (await session.scalars(select(JobRun))).all()
    assert record.outcome == "SUCCEEDED"
    assert record.slot == dt.datetime(2026, 11, 26, 16, 0, tzinfo=UTC)
    assert record.finished_at is not None


async def test_two_workers_run_one_slot_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    runs: list[dt.datetime] = []
    job = _sync(runs)
    at = dt.datetime(2026, 11, 26, 16, 0, 5, tzinfo=UTC)

    done = await asyncio.gather(*(run_due(sessions=sessions, jobs=[job], now=at) for _ in range(4)))

    assert len(runs) == 1
    assert sorted(len(d) for d in done) == [0, 0, 0, 1]


async def test_a_failed_run_is_recorded_and_not_repeated_in_its_slot(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    runs: list[dt.datetime] = []
    job = _sync(runs, fail=True)
    at = dt.datetime(2026, 11, 26, 16, 0, 5, tzinfo=UTC)

    await run_due(sessions=sessions, jobs=[job], now=at)
    await run_due(sessions=sessions, jobs=[job], now=at + dt.timedelta(minutes=1))

    async with sessions() as session:
        [record] = (await session.scalars(select(JobRun))).all()
    assert len(runs) == 1
    assert record.outcome == "FAILED"
    assert "502" in (record.error or "")


@pytest.mark.parametrize("zone", ["", "Mars/Olympus_Mons", "UTC+8"])
def test_a_schedule_without_a_real_zone_refuses_to_exist(zone: str) -> None:
    with pytest.raises(ScheduleInvalid):
        _sync([], zone=zone)


def test_a_time_of_day_with_an_offset_is_refused() -> None:
    async def run(_slot: dt.datetime) -> None:
        return None

    with pytest.raises(ScheduleInvalid):
        Job(name="x", at=dt.time(0, 0, tzinfo=UTC), zone="Asia/Shanghai", run=run)


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(NaiveDatetimeError):
        _sync([]).last_slot(dt.datetime(2026, 11, 26, 16, 0))  # noqa: DTZ001 - the point


def test_slots_follow_daylight_saving_in_zones_that_have_it() -> None:
    job = _sync([], zone="Europe/Berlin")
    winter = job.last_slot(dt.datetime(2026, 1, 15, 12, 0, tzinfo=UTC))
    summer = job.last_slot(dt.datetime(2026, 7, 15, 12, 0, tzinfo=UTC))

    assert winter == dt.datetime(2026, 1, 14, 23, 0, tzinfo=UTC)
    assert summer == dt.datetime(2026, 7, 14, 22, 0, tzinfo=UTC)


async def test_a_worker_with_a_zoneless_schedule_refuses_to_start(
    database_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The schedule is checked once, at start: the worker stops there instead of failing
    every round."""
    from api import worker
    from tests.conftest import settings_for

    def zoneless(_runtime: object) -> list[Job]:
        return [_sync([], zone="")]

    monkeypatch.setattr(worker, "scheduled_jobs", zoneless)
    rounds: list[int] = []

    async def counted(*_args: object) -> int:
        rounds.append(1)
        return 0

    monkeypatch.setattr(worker, "deliver_round", counted)

    with pytest.raises(ScheduleInvalid):
        await worker.run(settings_for(database_url, tmp_path), once=True)
    assert rounds == []


@pytest.mark.parametrize("every", [dt.timedelta(0), dt.timedelta(days=2)])
def test_an_interval_outside_a_second_to_a_day_is_refused(every: dt.timedelta) -> None:
    async def run(_slot: dt.datetime) -> None:
        return None

    with pytest.raises(ScheduleInvalid):
        Job(name="x", at=dt.time(0, 0), zone="Asia/Shanghai", run=run, every=every)


async def test_an_interval_job_runs_each_slot_once_and_only_the_latest(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    runs: list[dt.datetime] = []

    async def run(slot: dt.datetime) -> None:
        runs.append(slot)

    job = Job(
        name="every.minute",
        at=dt.time(0, 0),
        zone="Asia/Shanghai",
        run=run,
        every=dt.timedelta(minutes=1),
    )
    at = dt.datetime(2026, 11, 26, 2, 3, 30, tzinfo=UTC)
    for now in (at, at + dt.timedelta(seconds=20), at + dt.timedelta(minutes=5)):
        await run_due(sessions=sessions, jobs=[job], now=now)

    assert runs == [
        dt.datetime(2026, 11, 26, 2, 3, tzinfo=UTC),
        dt.datetime(2026, 11, 26, 2, 8, tzinfo=UTC),  # the missed minutes are not replayed
    ]


_DYING_WORKER = """
import asyncio, datetime as dt, pathlib, sys
from domain.db import create_engine, session_factory
from domain.jobs.scheduler import Job, run_due

url, started = sys.argv[1], pathlib.Path(sys.argv[2])

async def run(slot):
    started.write_text(slot.isoformat())
    await asyncio.Event().wait()  # the job is still running when the worker is killed

async def main():
    engine = create_engine(url)
    job = Job(name="kpi.close", at=dt.time(1, 0), zone="Asia/Shanghai", run=run)
    now = dt.datetime(2026, 11, 26, 17, 0, 5, tzinfo=dt.UTC)
    await run_due(sessions=session_factory(engine), jobs=[job], now=now,
                  lease=dt.timedelta(seconds=2))

asyncio.run(main())
"""


def _start_dying_worker(url: str, started: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(  # noqa: S603 - our own code, in a process of its own
            [sys.executable, "-c", _DYING_WORKER, url, str(started)],
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


async def test_a_slot_whose_worker_is_killed_mid_run_runs_again_within_one_lease(
    sessions: async_sessionmaker[AsyncSession], any_database_url: str, tmp_path: Path
) -> None:
    """Issue #29: the RUNNING claim was committed first and any row for (job, slot) made every
    worker skip it, so a worker killed during the nightly KPI close lost that day's close."""
    started, log = tmp_path / "started", tmp_path / "dying.log"
    dying = _start_dying_worker(any_database_url, started, log)
    try:
        deadline = time.monotonic() + 30
        while not started.exists():  # the job began in the other process
            assert dying.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the dying worker never started its job"
            await asyncio.sleep(0.05)
    finally:
        dying.kill()  # SIGKILL: no cleanup, the claim stays RUNNING
        dying.wait(10)
    runs: list[dt.datetime] = []

    async def close(slot: dt.datetime) -> None:
        runs.append(slot)

    job = Job(name="kpi.close", at=dt.time(1, 0), zone="Asia/Shanghai", run=close)
    now = dt.datetime(2026, 11, 26, 17, 0, 5, tzinfo=UTC)
    # A live claim is respected; once its 2 s lease has run out, the slot is run here.
    first_look = await run_due(sessions=sessions, jobs=[job], now=now)
    deadline = time.monotonic() + 20
    while not runs and time.monotonic() < deadline:
        await run_due(sessions=sessions, jobs=[job], now=now)
        await asyncio.sleep(0.2)
    again = await run_due(sessions=sessions, jobs=[job], now=now + dt.timedelta(minutes=5))

    assert first_look == []
    assert runs == [dt.datetime(2026, 11, 26, 17, 0, tzinfo=UTC)]
    assert again == []
    async with sessions() as session:
        [record] = (await session.scalars(select(JobRun))).all()
    assert (record.outcome, record.attempts) == ("SUCCEEDED", 2)


async def test_a_slot_is_given_up_after_its_second_worker_dies_too(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    slot = dt.datetime(2026, 11, 26, 17, 0, tzinfo=UTC)
    async with sessions() as session:
        session.add(
            JobRun(
                job="kpi.close",
                slot=slot,
                started_at=slot,
                outcome="RUNNING",
                lease_until=slot,  # long run out
                attempts=2,
            )
        )
        await session.commit()
    runs: list[dt.datetime] = []

    async def close(at: dt.datetime) -> None:
        runs.append(at)

    job = Job(name="kpi.close", at=dt.time(1, 0), zone="Asia/Shanghai", run=close)
    ran = await run_due(sessions=sessions, jobs=[job], now=slot + dt.timedelta(seconds=5))

    assert ran == []
    assert runs == []
    async with sessions() as session:
        [record] = (await session.scalars(select(JobRun))).all()
    assert record.outcome == "FAILED"
    assert "2 attempts" in (record.error or "")
