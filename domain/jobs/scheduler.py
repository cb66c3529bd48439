"""Jobs that run at a time of day, in a named time zone, once per slot across all workers.

The seed's incident: a "00:00" channel sync ran at 08:00 Beijing time because its zone was
implicit (the server's UTC), delaying every order created between 00:00 and 02:00 by eight
hours. Here a schedule cannot exist without an IANA zone (`ScheduleInvalid` otherwise, so a
worker refuses to start), and its slots are computed in that zone: "00:00 Asia/Shanghai" is
16:00 UTC the day before. Each run claims its slot by inserting `(job, slot)` into `job_runs`
(unique), so however many workers look, one runs it; the row records start, end and outcome.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import String, Text, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from domain.db import Base, NaiveDatetimeError, UTCDateTime, utcnow

log = logging.getLogger("ordergate.jobs")

# How late a slot may still be run (a worker that was down at 00:00 catches up until then).
CATCH_UP = dt.timedelta(hours=6)


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
    *, sessions: async_sessionmaker[AsyncSession], jobs: Sequence[Job], now: dt.datetime | None
) -> list[str]:
    """Run every job whose latest slot has not run yet (and is not older than CATCH_UP);
    returns the names run here. A slot another worker claimed first is skipped."""
    now = _aware(now or utcnow())
    ran = []
    for job in jobs:
        slot = job.last_slot(now)
        if now - slot > (job.every or CATCH_UP):
            continue
        async with sessions() as session:
            if await session.scalar(
                select(JobRun.id).where(JobRun.job == job.name, JobRun.slot == slot)
            ):
                continue
            record = JobRun(job=job.name, slot=slot, started_at=utcnow(), outcome="RUNNING")
            session.add(record)
            try:
                await session.commit()
            except IntegrityError:  # another worker claimed the slot between our look and now
                continue
            try:
                await job.run(slot)
            except Exception as exc:
                record.outcome = "FAILED"
                record.error = f"{type(exc).__name__}: {exc}"[:2000]
                log.exception("job failed", extra={"job": job.name, "slot": slot.isoformat()})
            else:
                record.outcome = "SUCCEEDED"
            record.finished_at = utcnow()
            await session.commit()
            ran.append(job.name)
    return ran
