"""Daily reconciliation over GraphQL: a channel's service account submits its view of a
business day; `integration` and `ops` read the differences (domain/intake/reconciliation.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from enum import Enum
from typing import Annotated

import strawberry
from strawberry.types import Info

from api.context import RequestContext
from api.graphql.scalars import Money
from api.graphql.types import Channel, OrderStatus
from domain.access import AccessProfile
from domain.intake import reconciliation


@strawberry.enum(description="How our order and the channel's differ.")
class ReconciliationKind(Enum):
    MISSING_INTERNALLY = "MISSING_INTERNALLY"
    MISSING_IN_CHANNEL = "MISSING_IN_CHANNEL"
    STATUS_MISMATCH = "STATUS_MISMATCH"
    AMOUNT_MISMATCH = "AMOUNT_MISMATCH"


assert {k.value for k in ReconciliationKind} == {k.value for k in reconciliation.Kind}


@strawberry.input(description="One order as the channel sees it at the end of the day.")
class ChannelSnapshotOrderInput:
    external_id: str
    status: OrderStatus
    total: Money
    updated_at: dt.datetime


@strawberry.type(description="What the day's snapshot holds after a submission.")
class ChannelSnapshot:
    channel: Channel
    business_day: dt.date
    rows: int


@strawberry.type(description="One difference between our order and the channel's.")
class ReconciliationDifference:
    external_id: str
    kind: ReconciliationKind
    internal_status: OrderStatus | None
    channel_status: OrderStatus | None
    internal_total: Money | None
    channel_total: Money | None


@strawberry.type(description="A business day of one channel, compared with its snapshot.")
class ChannelReconciliation:
    channel: Channel
    business_day: dt.date
    generated_at: dt.datetime
    snapshot_rows: int
    differences: list[ReconciliationDifference]
    csv: str

    @classmethod
    def of(cls, report: reconciliation.Report, access: AccessProfile) -> ChannelReconciliation:
        # Our side of each difference is shown as the caller's field policy shows the order's
        # status and total (integration does not read our totals; operations do), in the list
        # and in the CSV alike.
        report = dataclasses.replace(
            report,
            differences=[
                dataclasses.replace(
                    d,
                    internal_status=access.present("Order.status", d.internal_status),
                    internal_total=access.present("Order.total", d.internal_total),
                )
                for d in report.differences
            ],
        )
        return cls(
            channel=Channel(report.channel),
            business_day=report.business_day,
            generated_at=report.generated_at,
            snapshot_rows=report.snapshot_rows,
            differences=[
                ReconciliationDifference(
                    external_id=d.external_id,
                    kind=ReconciliationKind(d.kind.value),
                    internal_status=OrderStatus(d.internal_status) if d.internal_status else None,
                    channel_status=OrderStatus(d.channel_status) if d.channel_status else None,
                    internal_total=Money(d.internal_total) if d.internal_total else None,
                    channel_total=Money(d.channel_total) if d.channel_total else None,
                )
                for d in report.differences
            ],
            csv=reconciliation.report_csv(report),
        )


@strawberry.type
class ReconciliationQueries:
    @strawberry.field(description="Differences between our orders of a day and the channel's.")
    async def channel_reconciliation(
        self, info: Info[RequestContext, None], channel: Channel, business_day: dt.date
    ) -> ChannelReconciliation | None:
        ctx = info.context
        async with ctx.read(replica=True) as session:
            report = await reconciliation.reconcile(
                session=session,
                actor=ctx.require_actor(),
                channel=channel.value,
                business_day=business_day,
            )
        return ChannelReconciliation.of(report, ctx.require_actor().access)


@strawberry.type
class ReconciliationMutations:
    @strawberry.mutation(
        description=(
            f"Add up to {reconciliation.MAX_ROWS} of the channel's orders of a business day; "
            "rows accumulate per day (a resubmitted externalId replaces its row)."
        )
    )
    async def submit_channel_snapshot(
        self,
        info: Info[RequestContext, None],
        channel: Channel,
        business_day: dt.date,
        orders: Annotated[
            list[ChannelSnapshotOrderInput], strawberry.argument(description="The day's orders.")
        ],
    ) -> ChannelSnapshot:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="channel.snapshot",
            operation="submitChannelSnapshot",
            target_type="Channel",
            target_id=channel.value,
        ) as session:
            held = await reconciliation.submit(
                session=session,
                actor=actor,
                channel=channel.value,
                business_day=business_day,
                rows=[
                    reconciliation.ChannelView(
                        external_id=o.external_id,
                        status=reconciliation.OrderStatus(o.status),
                        total=f"{o.total:f}",
                        updated_at=o.updated_at,
                    )
                    for o in orders
                ],
            )
        return ChannelSnapshot(channel=channel, business_day=business_day, rows=held)
