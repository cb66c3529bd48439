"""Daily reconciliation: the channel's view of a business day against ours.

A channel's snapshot of a business day (its orders: external id, status, total, last update)
is submitted through `submitChannelSnapshot` or `ordergate reconcile … --snapshot file.csv`;
rows accumulate per (channel, day), a resubmitted external id replacing its row, so a day of
any size can be sent in parts. `reconcile` compares it with the orders whose `businessDay` is
that day, and lists every difference, classified:

- MISSING_INTERNALLY: the channel has it, we have no order with that external id;
- MISSING_IN_CHANNEL: we have it on that day, the channel's snapshot does not;
- STATUS_MISMATCH: both have it, the statuses differ (our PICKING is the channel's PAID: the
  channel does not see picking);
- AMOUNT_MISMATCH: both have it, the totals differ.

An order can differ in status and amount at once: two findings. A job at 00:30 business time
reconciles the previous day for each channel that sent a snapshot.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Date, ForeignKey, Index, Integer, String, UniqueConstraint, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from domain.access import Action
from domain.actor import SYSTEM_ORIGIN, Actor
from domain.audit import service as audit
from domain.audit.service import Subject
from domain.csvfiles import SafeWriter
from domain.db import Base, UTCDateTime, utcnow
from domain.errors import BadInput
from domain.money import format_amount, to_minor
from domain.orders.models import Order
from domain.orders.rules import OrderStatus
from domain.tasks import service as tasks
from domain.values import clean_text

log = logging.getLogger("ordergate.reconciliation")
SYSTEM = Subject(None, "system:reconciliation", (), SYSTEM_ORIGIN)
MAX_ROWS = 5000  # per submission; a day is sent in as many parts as it needs
# The channel's statuses, and what each of ours looks like from the channel.
SEEN_BY_CHANNEL = {OrderStatus.PICKING: OrderStatus.PAID}


class Kind(StrEnum):
    MISSING_INTERNALLY = "MISSING_INTERNALLY"
    MISSING_IN_CHANNEL = "MISSING_IN_CHANNEL"
    STATUS_MISMATCH = "STATUS_MISMATCH"
    AMOUNT_MISMATCH = "AMOUNT_MISMATCH"


class SnapshotRow(Base):
    __tablename__ = "channel_snapshot_rows"
    __table_args__ = (
        UniqueConstraint("channel_code", "business_day", "external_id"),
        Index("ix_channel_snapshot_rows_day", "channel_code", "business_day"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_code: Mapped[str] = mapped_column(ForeignKey("channels.code"))
    business_day: Mapped[dt.date] = mapped_column(Date)
    external_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))
    currency: Mapped[str] = mapped_column(String(3))
    total_minor: Mapped[int] = mapped_column(Integer)
    channel_updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    submitted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    submitted_by: Mapped[str] = mapped_column(String(64))


@dataclass(frozen=True)
class ChannelView:
    external_id: str
    status: OrderStatus
    total: str  # decimal string
    updated_at: dt.datetime
    currency: str = "CNY"


@dataclass(frozen=True)
class Difference:
    external_id: str
    kind: Kind
    internal_status: str | None
    channel_status: str | None
    internal_total: str | None
    channel_total: str | None


@dataclass(frozen=True)
class Report:
    channel: str
    business_day: dt.date
    generated_at: dt.datetime
    snapshot_rows: int
    differences: list[Difference]


async def submit(
    *,
    session: AsyncSession,
    actor: Actor,
    channel: str,
    business_day: dt.date,
    rows: Sequence[ChannelView],
    now: dt.datetime | None = None,
) -> int:
    """Add the channel's rows for the day (replacing earlier rows of the same external ids);
    returns how many rows the day's snapshot holds now. Audited in the caller's transaction.
    Submitting takes `channel:reconcile` and `order:ingest` (a channel's service account);
    `ops` holds `channel:reconcile` to read reports only."""
    actor.access.require(Action.CHANNEL_RECONCILE)
    actor.access.require(Action.ORDER_INGEST)
    actor.require_channel(channel)
    if len(rows) > MAX_ROWS:
        raise BadInput(f"send at most {MAX_ROWS} rows per call; send a day in parts")
    now = now or utcnow()
    cleaned: dict[str, SnapshotRow] = {}
    for n, row in enumerate(rows, start=1):
        external_id = clean_text(row.external_id, what=f"row {n} externalId", max_length=64)
        if not external_id:
            raise BadInput(f"row {n}: give the externalId")
        if row.updated_at.tzinfo is None:
            raise BadInput(f"row {n}: updatedAt needs a UTC offset")
        cleaned[external_id] = SnapshotRow(
            channel_code=channel,
            business_day=business_day,
            external_id=external_id,
            status=str(OrderStatus(row.status)),
            currency=row.currency,
            total_minor=to_minor(row.total, row.currency, what=f"row {n} total"),
            channel_updated_at=row.updated_at.astimezone(dt.UTC),
            submitted_at=now,
            submitted_by=actor.username,
        )
    existing = {
        r.external_id: r
        for r in (
            await session.scalars(
                select(SnapshotRow).where(
                    SnapshotRow.channel_code == channel,
                    SnapshotRow.business_day == business_day,
                    SnapshotRow.external_id.in_(list(cleaned)),
                )
            )
        ).all()
    }
    for external_id, row in cleaned.items():
        old = existing.get(external_id)
        if old is None:
            session.add(row)
        else:
            for attr in ("status", "currency", "total_minor", "channel_updated_at"):
                setattr(old, attr, getattr(row, attr))
            old.submitted_at, old.submitted_by = now, actor.username
    await session.flush()
    held = len(
        (
            await session.scalars(
                select(SnapshotRow.id).where(
                    SnapshotRow.channel_code == channel, SnapshotRow.business_day == business_day
                )
            )
        ).all()
    )
    await audit.record(
        session=session,
        who=actor,
        action="channel.snapshot",
        operation="submitChannelSnapshot",
        target_type="Channel",
        target_id=channel,
        at=now,
        details={"businessDay": business_day.isoformat(), "rows": len(cleaned), "held": held},
    )
    return held


async def reconcile(
    *,
    session: AsyncSession,
    actor: Actor | None,
    channel: str,
    business_day: dt.date,
    now: dt.datetime | None = None,
) -> Report:
    """Every difference between the channel's snapshot of the day and our orders of that day,
    sorted by external id. `actor` None: the scheduled job."""
    if actor is not None:
        actor.access.require(Action.CHANNEL_RECONCILE)
    theirs = {
        r.external_id: r
        for r in (
            await session.scalars(
                select(SnapshotRow).where(
                    SnapshotRow.channel_code == channel, SnapshotRow.business_day == business_day
                )
            )
        ).all()
    }
    columns = (Order.external_id, Order.status, Order.total_minor, Order.currency)
    ours = {
        r.external_id: r
        for r in (
            await session.execute(
                select(*columns).where(
                    Order.channel_code == channel, Order.business_day == business_day
                )
            )
        ).all()
    }
    # The channel's orders we hold under another day (a clock disagreement) are not missing.
    elsewhere = set(theirs) - set(ours)
    for start in range(0, len(elsewhere), 1000):
        chunk = sorted(elsewhere)[start : start + 1000]
        for r in (
            await session.execute(
                select(*columns).where(Order.channel_code == channel, Order.external_id.in_(chunk))
            )
        ).all():
            ours[r.external_id] = r
    found: list[Difference] = []
    for external_id in sorted(set(theirs) | set(ours)):
        mine, other = ours.get(external_id), theirs.get(external_id)
        my_status = str(mine.status) if mine else None
        my_total = format_amount(mine.total_minor, mine.currency) if mine else None
        their_total = format_amount(other.total_minor, other.currency) if other else None
        if mine is None:
            found.append(
                Difference(
                    external_id, Kind.MISSING_INTERNALLY, None, other.status, None, their_total
                )
            )
            continue
        if other is None:
            found.append(
                Difference(external_id, Kind.MISSING_IN_CHANNEL, my_status, None, my_total, None)
            )
            continue
        seen = SEEN_BY_CHANNEL.get(mine.status, mine.status)
        if str(seen) != other.status:
            found.append(
                Difference(
                    external_id,
                    Kind.STATUS_MISMATCH,
                    my_status,
                    other.status,
                    my_total,
                    their_total,
                )
            )
        if mine.total_minor != other.total_minor or mine.currency != other.currency:
            found.append(
                Difference(
                    external_id,
                    Kind.AMOUNT_MISMATCH,
                    my_status,
                    other.status,
                    my_total,
                    their_total,
                )
            )
    return Report(channel, business_day, now or utcnow(), len(theirs), found)


def report_csv(report: Report) -> str:
    """The report as CSV (BOM first, formula-looking cells neutralised)."""
    out = io.StringIO()
    writer = SafeWriter(out)
    writer.writerow(
        [
            "channel",
            "businessDay",
            "externalId",
            "kind",
            "internalStatus",
            "channelStatus",
            "internalTotal",
            "channelTotal",
        ]
    )
    for d in report.differences:
        writer.writerow(
            [
                report.channel,
                report.business_day.isoformat(),
                d.external_id,
                d.kind.value,
                d.internal_status or "",
                d.channel_status or "",
                d.internal_total or "",
                d.channel_total or "",
            ]
        )
    return out.getvalue()


async def reconcile_day(
    *, session: AsyncSession, business_day: dt.date, now: dt.datetime
) -> list[Report]:
    """The scheduled job: reconcile `business_day` for every channel that sent a snapshot of
    it, recording each report's findings in the audit log (`channel.reconciled`)."""
    channels = sorted(
        set(
            (
                await session.scalars(
                    select(SnapshotRow.channel_code).where(SnapshotRow.business_day == business_day)
                )
            ).all()
        )
    )
    reports = []
    for channel in channels:
        report = await reconcile(
            session=session, actor=None, channel=channel, business_day=business_day, now=now
        )
        counts: dict[str, int] = {}
        for d in report.differences:
            counts[d.kind.value] = counts.get(d.kind.value, 0) + 1
        await audit.record(
            session=session,
            who=SYSTEM,
            action="channel.reconciled",
            operation="reconciliation",
            target_type="Channel",
            target_id=channel,
            at=now,
            details={
                "businessDay": business_day.isoformat(),
                "snapshotRows": report.snapshot_rows,
                "differences": counts,
                "externalIds": [d.external_id for d in report.differences][:200],
            },
        )
        if report.differences:
            log.warning(
                "channel reconciliation found differences",
                extra={"channel": channel, "day": business_day.isoformat(), **counts},
            )
            # Operations works through them: one task per channel and day.
            await tasks.raise_task(
                session,
                kind="RECONCILIATION",
                title=f"{channel} {business_day.isoformat()}: "
                f"{len(report.differences)} differences with the channel",
                details={
                    "channel": channel,
                    "businessDay": business_day.isoformat(),
                    "differences": counts,
                    "externalIds": [d.external_id for d in report.differences][:200],
                },
                by=SYSTEM,
                assignee_role="ops",
                dedupe_key=f"reconciliation:{channel}:{business_day.isoformat()}",
                now=now,
            )
        reports.append(report)
    return reports
