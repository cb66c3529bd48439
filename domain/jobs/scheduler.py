"""Jobs that run at a time of day, in a named time zone, once per slot across all workers.

The seed's incident: a "00:00" channel sync ran at 08:00 Beijing time because its zone was
implicit (the server's UTC), delaying every order created between 00:00 and 02:00 by eight
hours. Here a schedule cannot exist without an IANA zone (`ScheduleInvalid` otherwise, so a
worker refuses to start), and its slots are computed in that zone: "00:00 Asia/Shanghai" is
16:00 UTC the day before. Each run claims its slot by inserting `(job, slot)` into `job_runs`
(unique), so however many workers look, one runs it; the row records start, end and outcome.
A running slot holds a lease its worker renews; if the worker dies, the lease runs out and
the next worker to look runs the slot again (once more at most), within the catch-up window.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Integer, String, Text, UniqueConstraint, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from domain.db import Base, NaiveDatetimeError, UTCDateTime, utcnow

log = logging.getLogger("ordergate.jobs")

# How late a slot may still be run (a worker that was down at 00:00 catches up until then).
CATCH_UP = dt.timedelta(hours=6)
# How long a running slot stays its worker's without a heartbeat (renewed every third of it).
LEASE = dt.timedelta(minutes=2)
# A slot is run at most this often: once, and once more when its first worker died.
MAX_ATTEMPTS = 2


class ScheduleInvalid(ValueError):
    pass


def _aware(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise NaiveDatetimeError("naive datetime refused; give a timezone offset")
    return value


class JobRun(Base):
    __tablename__ = "job_runs"
    __table_args__ = (UniqueConstraint("job", "slot"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(String(64))
    slot: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # the scheduled instant, UTC
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(16))  # RUNNING, SUCCEEDED, FAILED
    error: Mapped[str | None] = mapped_column(Text)
    # While RUNNING: until when its worker holds it (renewed while the job runs). A RUNNING
    # slot whose lease ran out belongs to a worker that died: it is run again, once.
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


@dataclass(frozen=True)
class Job:
    """`run` at local time `at` every day in `zone` (an IANA name such as Asia/Shanghai), or,
    with `every`, at each multiple of that interval from local midnight in `zone` (only the
    latest slot runs: an interval job catches up by doing its work once)."""

    name: str
    at: dt.time
    zone: str
    run: Callable[[dt.datetime], Awaitable[None]] = field(compare=False)
    every: dt.timedelta | None = None

    def __post_init__(self) -> None:
        if self.every is not None and not (
            dt.timedelta(seconds=1) <= self.every <= dt.timedelta(days=1)
        ):
            raise ScheduleInvalid(f"job {self.name!r}: every is between 1 s and a day")
        if not self.zone:
            raise ScheduleInvalid(f"job {self.name!r} has no time zone; name one explicitly")
        try:
            ZoneInfo(self.zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleInvalid(f"job {self.name!r}: unknown time zone {self.zone!r}") from None
        if self.at.tzinfo is not None:
            raise ScheduleInvalid(f"job {self.name!r}: give the time of day without an offset")

    def last_slot(self, now: dt.datetime) -> dt.datetime:
        """The latest scheduled instant at or before `now`, in UTC."""
        now = _aware(now)
        zone = ZoneInfo(self.zone)
        local_day = now.astimezone(zone).date()
        if self.every is not None:
            midnight = dt.datetime.combine(local_day, dt.time(0), tzinfo=zone).astimezone(dt.UTC)
            return midnight + ((now - midnight) // self.every) * self.every
        for day in (local_day, local_day - dt.timedelta(days=1)):
            slot = dt.datetime.combine(day, self.at, tzinfo=zone).astimezone(dt.UTC)
            if slot <= now:
                return slot
        raise AssertionError("unreachable: yesterday's slot is always before now")


async def run_due(
    *,
    sessions: async_sessionmaker[AsyncSession],
    jobs: Sequence[Job],
    now: dt.datetime | None,
    lease: dt.timedelta = LEASE,
) -> list[str]:
    """Run every job whose latest slot has not run yet (and is not older than CATCH_UP);
    returns the names run here. A slot another worker holds is skipped; one whose worker died
    (RUNNING, its lease run out) is run again, once (issue #29: a slot whose worker died
    mid-run was never run again, and a day could silently lose its checkpoint or KPI close)."""
    now = _aware(now or utcnow())
    ran = []
    for job in jobs:
        slot = job.last_slot(now)
        if now - slot > (job.every or CATCH_UP):
            continue
        async with sessions() as session:
            record = await _claim(session, job, slot, lease)
            if record is None:
                continue
            heartbeat = asyncio.create_task(_renew(sessions, record.id, lease))
            try:
                await job.run(slot)
            except Exception as exc:
                record.outcome = "FAILED"
                record.error = f"{type(exc).__name__}: {exc}"[:2000]
                log.exception("job failed", extra={"job": job.name, "slot": slot.isoformat()})
            else:
                record.outcome = "SUCCEEDED"
            finally:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
            record.finished_at = utcnow()
            record.lease_until = None
            await session.commit()
            ran.append(job.name)
    return ran


async def _claim(
    session: AsyncSession, job: Job, slot: dt.datetime, lease: dt.timedelta
) -> JobRun | None:
    """This worker's claim on the slot, committed; None when it is not ours to run."""
    found = await session.scalar(select(JobRun).where(JobRun.job == job.name, JobRun.slot == slot))
    wall = utcnow()
    if found is None:
        record = JobRun(
            job=job.name,
            slot=slot,
            started_at=wall,
            outcome="RUNNING",
            lease_until=wall + lease,
            attempts=1,
        )
        session.add(record)
        try:
            await session.commit()
        except IntegrityError:  # another worker claimed the slot between our look and now
            await session.rollback()
            return None
        return record
    if found.outcome != "RUNNING" or (found.lease_until is not None and found.lease_until > wall):
        return None  # done, or its worker is alive
    if found.attempts >= MAX_ATTEMPTS:
        found.outcome = "FAILED"
        found.error = f"its worker stopped during each of {found.attempts} attempts"
        found.finished_at = wall
        found.lease_until = None
        await session.commit()
        log.error("job slot given up", extra={"job": job.name, "slot": slot.isoformat()})
        return None
    # Its worker died: take it over, if nobody else did first (a conditional update).
    taken = await session.execute(
        update(JobRun)
        .where(
            JobRun.id == found.id,
            JobRun.outcome == "RUNNING",
            JobRun.attempts == found.attempts,
        )
        .values(started_at=wall, lease_until=wall + lease, attempts=found.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    if taken.rowcount != 1:
        return None
    await session.refresh(found)
    log.warning(
        "job slot taken over from a worker that stopped",
        extra={"job": job.name, "slot": slot.isoformat(), "attempt": found.attempts},
    )
    return found


async def _renew(
    sessions: async_sessionmaker[AsyncSession], run_id: int, lease: dt.timedelta
) -> None:
    """Keep the claim while the job runs: a heartbeat every third of the lease."""
    while True:
        await asyncio.sleep(lease.total_seconds() / 3)
        with contextlib.suppress(Exception):  # a missed beat: the next one, or the lease, tells
            async with sessions() as session:
                await session.execute(
                    update(JobRun)
                    .where(JobRun.id == run_id, JobRun.outcome == "RUNNING")
                    .values(lease_until=utcnow() + lease)
                )
                await session.commit()
