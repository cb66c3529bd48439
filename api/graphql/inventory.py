"""Inventory: reservations at checkout (`stock:reserve`), receipts and corrections
(`stock:adjust`) and the stock ledger (`stock:ledger`, under the field policy). The rules are
the domain's (domain/inventory/service.py)."""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Annotated, Any

import strawberry
from strawberry.types import Info

from api.context import RequestContext
from api.graphql.projection import Projection
from api.graphql.relay import Connection, global_id, parse_id, selects
from api.graphql.scalars import Money
from api.graphql.types import StockItem, read
from domain import pagination
from domain.access import AccessProfile
from domain.inventory import models
from domain.inventory import service as inventory


@strawberry.enum(description="Where a reservation stands.")
class ReservationStatus(Enum):
    ACTIVE = "ACTIVE"
    CONFIRMED = "CONFIRMED"
    RELEASED = "RELEASED"
    EXPIRED = "EXPIRED"
    SHIPPED = "SHIPPED"


@strawberry.enum(description="Why stock moved.")
class StockMovementReason(Enum):
    OPENING = "OPENING"
    RESERVE = "RESERVE"
    RELEASE = "RELEASE"
    EXPIRE = "EXPIRE"
    RECEIPT = "RECEIPT"
    CORRECTION = "CORRECTION"
    SHIP = "SHIP"


assert {e.value for e in ReservationStatus} == {e.value for e in models.ReservationStatus}
assert {e.value for e in StockMovementReason} == {e.value for e in models.MovementReason}


@strawberry.input(description="A quantity of a SKU from one warehouse.")
class ReservationLineInput:
    sku: str
    warehouse: str
    quantity: int


@strawberry.input(description="Stock to hold for a checkout.")
class ReserveStockInput:
    reference: str = strawberry.field(
        description="The caller's checkout or order number: the same one again returns the "
        "reservation already made (a retry), with other lines it is a CONFLICT."
    )
    lines: list[ReservationLineInput]
    ttl_seconds: int | None = strawberry.field(
        default=None,
        description="How long an unconfirmed reservation holds (60 s to 7 days; default "
        "ORDERGATE_RESERVATION_TTL_SECONDS, 15 minutes).",
    )


@strawberry.input(description="A receipt (positive) or correction of on-hand stock.")
class AdjustStockInput:
    sku: str
    warehouse: str
    delta: int
    reason: str


@strawberry.input(description="Which movements to list.")
class StockMovementFilter:
    sku: str | None = None
    warehouse: str | None = None
    from_: dt.datetime | None = strawberry.field(
        default=None, name="from", description="At or after this time."
    )
    to: dt.datetime | None = strawberry.field(default=None, description="Before this time.")
    reason: StockMovementReason | None = None


@strawberry.type(description="A quantity of a SKU held in one warehouse.")
class ReservationLine:
    sku: str
    warehouse: str
    quantity: int


@strawberry.type(description="Stock held for a checkout until paid, released or expired.")
class Reservation:
    id: strawberry.ID
    reference: str
    status: ReservationStatus = strawberry.field(
        description="EXPIRED as soon as `expiresAt` has passed unconfirmed (the stock returns "
        "within a minute)."
    )
    expires_at: dt.datetime | None = strawberry.field(
        description="When an unconfirmed reservation lets its stock go; null once confirmed."
    )
    lines: list[ReservationLine]

    @classmethod
    def from_model(cls, r: models.StockReservation) -> Reservation:
        status = inventory.state_of(r, dt.datetime.now(dt.UTC))
        return cls(
            id=global_id("Reservation", r.id),
            reference=r.reference,
            status=ReservationStatus(status),
            expires_at=r.expires_at if r.status is models.ReservationStatus.ACTIVE else None,
            lines=[ReservationLine(sku=li.sku, warehouse=li.warehouse, quantity=li.quantity)
                   for li in r.lines],
        )  # fmt: skip


@strawberry.type(description="One change of a SKU's stock in a warehouse, and why.")
class StockMovement:
    id: strawberry.ID | None
    at: dt.datetime | None
    sku: str | None
    warehouse: str | None
    on_hand_delta: int | None
    reserved_delta: int | None
    reason: StockMovementReason | None
    reference: str | None
    actor: str | None
    unit_cost: Money | None

    @classmethod
    def from_model(cls, model: models.StockMovement, access: AccessProfile) -> StockMovement:
        return cls(**STOCK_MOVEMENT(model, access))


def _reason(model: Any, _access: AccessProfile) -> StockMovementReason:
    return StockMovementReason(model.reason)


STOCK_MOVEMENT = Projection.of(
    "StockMovement",
    id=lambda model, _access: global_id("StockMovement", model.id),
    at=read("StockMovement.at"),
    sku=read("StockMovement.sku"),
    warehouse=read("StockMovement.warehouse"),
    on_hand_delta=read("StockMovement.onHandDelta"),
    reserved_delta=read("StockMovement.reservedDelta"),
    reason=_reason,
    reference=read("StockMovement.reference"),
    actor=read("StockMovement.actor"),
    unit_cost=read("StockMovement.unitCost"),
)


@strawberry.type
class InventoryQueries:
    @strawberry.field(description="The stock ledger, newest first. Holders of stock:ledger.")
    async def stock_movements(
        self,
        info: Info[RequestContext, None],
        filter: StockMovementFilter | None = None,
        first: int | None = 20,
        after: str | None = None,
    ) -> Connection[StockMovement] | None:
        ctx = info.context
        actor = ctx.require_actor()
        flt = None
        if filter is not None:
            flt = inventory.MovementFilter(
                sku=filter.sku,
                warehouse=filter.warehouse,
                since=filter.from_,
                until=filter.to,
                reason=models.MovementReason(filter.reason.value) if filter.reason else None,
            )
        stmt = inventory.movements_query(actor, flt)
        async with ctx.read(replica=True) as session:
            page = await pagination.by_id(
                session,
                stmt,
                models.StockMovement.id,
                ordering="stockMovements:DESC",
                first=first,
                after=after,
                descending=True,
                want_total=selects(info, "totalCount"),
            )
        return Connection.from_page(page, lambda m: StockMovement.from_model(m, actor.access))


@strawberry.type
class InventoryMutations:
    @strawberry.mutation(
        description="Hold stock for a checkout: every line or none (INSUFFICIENT_STOCK)."
    )
    async def reserve_stock(
        self, info: Info[RequestContext, None], input: ReserveStockInput
    ) -> Reservation | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="stock.reserve", operation="reserveStock", target_type="StockReservation"
        ) as session:
            reservation = await inventory.reserve(
                session=session,
                actor=actor,
                reference=input.reference,
                lines=[
                    inventory.LineInput(li.sku, li.warehouse, li.quantity) for li in input.lines
                ],
                ttl_seconds=input.ttl_seconds,
                default_ttl_seconds=ctx.runtime.settings.reservation_ttl_seconds,
            )
            return Reservation.from_model(reservation)

    @strawberry.mutation(description="Give a reservation's stock back (a cancelled checkout).")
    async def release_reservation(
        self, info: Info[RequestContext, None], id: strawberry.ID
    ) -> Reservation | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="stock.release",
            operation="releaseReservation",
            target_type="StockReservation",
            target_id=id,
        ) as session:
            reservation = await inventory.release(
                session=session, actor=actor, reservation_id=parse_id(id, "reservation")
            )
            return Reservation.from_model(reservation)

    @strawberry.mutation(
        description="The checkout was paid: hold the stock without expiry until it ships."
    )
    async def confirm_reservation(
        self, info: Info[RequestContext, None], id: strawberry.ID
    ) -> Reservation | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="stock.confirm",
            operation="confirmReservation",
            target_type="StockReservation",
            target_id=id,
        ) as session:
            reservation = await inventory.confirm(
                session=session, actor=actor, reservation_id=parse_id(id, "reservation")
            )
            return Reservation.from_model(reservation)

    @strawberry.mutation(description="Book a receipt or a correction of on-hand stock.")
    async def adjust_stock(
        self,
        info: Info[RequestContext, None],
        input: Annotated[AdjustStockInput, strawberry.argument()],
    ) -> StockItem | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="stock.adjust", operation="adjustStock", target_type="StockItem"
        ) as session:
            item = await inventory.adjust(
                session=session,
                actor=actor,
                sku=input.sku,
                warehouse=input.warehouse,
                delta=input.delta,
                reason=input.reason,
            )
            return StockItem.from_model(item, actor.access)
