"""Channel intake over GraphQL: `ingestOrders` for holders of `order:ingest` (channel service
accounts). The rules live in `domain/intake/service.py`."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any, cast

import strawberry
from sqlalchemy import select
from strawberry.types import Info
from strawberry.types.arguments import InputContext

from api.context import RequestContext
from api.graphql.addresses import AddressInput
from api.graphql.orders import relations_read
from api.graphql.relay import selects_path
from api.graphql.scalars import Money
from api.graphql.types import Channel, Order, OrderStatus
from domain.intake import service as intake
from domain.orders import views
from domain.orders.models import Order as OrderModel


@strawberry.enum(description="What became of one ingested order.")
class IngestOutcome(Enum):
    CREATED = "CREATED"
    REPLAYED = "REPLAYED"
    UPDATED = "UPDATED"
    REJECTED = "REJECTED"


assert {o.value for o in IngestOutcome} == {o.value for o in intake.Outcome}


@strawberry.input(description="The buyer as the channel knows them.")
class ChannelBuyerInput:
    name: str
    phone: str | None = None
    email: str | None = None


@strawberry.input(description="One line of a channel's order.")
class ChannelOrderLineInput:
    sku: str
    quantity: int
    unit_price: Money


@strawberry.input(description="An order as a channel sends it; keyed by (channel, externalId).")
class ChannelOrderInput:
    external_id: str
    status: OrderStatus
    created_at: str = strawberry.field(
        description=(
            "ISO 8601 with a UTC offset (channels often send UTC). A naive time rejects this "
            "order only, not the batch."
        )
    )
    currency: str
    buyer: ChannelBuyerInput
    shipping_address: AddressInput
    lines: list[ChannelOrderLineInput]
    paid_at: str | None = None
    shipping_fee: Money = strawberry.field(default=Money(Decimal("0")))
    discount: Money = strawberry.field(default=Money(Decimal("0")))
    payment_method: str | None = None
    payment_transaction_id: str | None = None
    campaign: str | None = None
    carrier: str | None = None
    tracking_number: str | None = None


def _amount(value: object) -> str:
    return f"{value:f}" if isinstance(value, Decimal) else str(value)


def _channel_order(_cls: type, value: Mapping[str, Any], _context: InputContext) -> object:
    """A `ChannelOrderInput` as the value graphql-core has already checked (types, required
    fields, scalars parsed) becomes the domain's `ChannelOrder` in one step. Strawberry's
    generic conversion of 500 nested inputs was a third of the intake's CPU; this hook (the
    one `strawberry.pydantic` uses) builds the same values without it."""
    buyer, a = value["buyer"], value["shippingAddress"]
    status = value["status"]
    return intake.ChannelOrder(
        external_id=value["externalId"],
        status=intake.OrderStatus(getattr(status, "value", status)),
        created_at=value["createdAt"],  # parsed per order by the intake
        paid_at=value.get("paidAt"),
        currency=value["currency"],
        buyer=intake.Buyer(buyer["name"], buyer.get("phone"), buyer.get("email")),
        shipping_address=intake.ShippingAddress(
            a["recipient"],
            a["phone"],
            a["province"],
            a["city"],
            a["district"],
            a["street"],
            a.get("postalCode"),
        ),
        lines=[
            intake.Line(line["sku"], line["quantity"], _amount(line["unitPrice"]))
            for line in value["lines"]
        ],
        shipping_fee=_amount(value.get("shippingFee", "0")),
        discount=_amount(value.get("discount", "0")),
        payment_method=value.get("paymentMethod"),
        payment_transaction_id=value.get("paymentTransactionId"),
        campaign=value.get("campaign"),
        carrier=value.get("carrier"),
        tracking_number=value.get("trackingNumber"),
    )


ChannelOrderInput.__strawberry_definition__.from_input = _channel_order  # type: ignore[attr-defined]


@strawberry.type(description="One ingested order's outcome, in input order.")
class IngestOrderResult:
    external_id: str
    outcome: IngestOutcome
    order: Order | None = strawberry.field(
        description="The order (created, replayed or updated); null when rejected."
    )
    code: str | None = strawberry.field(
        description="A contract code: why it was REJECTED, or INSUFFICIENT_STOCK for an unpaid "
        "order CREATED cancelled because its stock could not be reserved (cancel it upstream)."
    )
    message: str | None


@strawberry.type(description="What became of each order of an `ingestOrders` batch.")
class IngestResult:
    results: list[IngestOrderResult]


@strawberry.type
class IntakeMutations:
    @strawberry.mutation(
        description=(
            f"Land up to {intake.MAX_BATCH} orders from one channel, idempotently per "
            "(channel, externalId). One bad order is REJECTED with its code; the rest land."
        )
    )
    async def ingest_orders(
        self,
        info: Info[RequestContext, None],
        channel: Channel,
        orders: Annotated[
            list[ChannelOrderInput], strawberry.argument(description="In the channel's order.")
        ],
    ) -> IngestResult:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="order.ingest",
            operation="ingestOrders",
            target_type="Channel",
            target_id=channel.value,
        ) as session:
            results = await intake.ingest(
                session=session,
                actor=actor,
                channel=channel.value,
                orders=cast("list[intake.ChannelOrder]", orders),  # see _channel_order
                timezone=ctx.runtime.settings.timezone,
                reservation_ttl_seconds=ctx.runtime.settings.reservation_ttl_seconds,
            )
            # The orders are read back only when the caller asked for them.
            wanted = selects_path(info, "results", "order")
            ids = [r.order_id for r in results if r.order_id is not None and wanted]
            found = (
                await views.load_orders(
                    session, select(OrderModel).where(OrderModel.id.in_(ids)), relations_read(actor)
                )
                if ids
                else []
            )
            loaded = {o.id: o for o in found}
        return IngestResult(
            results=[
                IngestOrderResult(
                    external_id=r.external_id,
                    outcome=IngestOutcome(r.outcome.value),
                    order=(
                        Order.from_model(loaded[r.order_id], actor.access)
                        if r.order_id is not None and r.order_id in loaded
                        else None
                    ),
                    code=r.code,
                    message=r.message,
                )
                for r in results
            ]
        )
