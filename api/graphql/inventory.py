"""Inventory: reservations at checkout (`stock:reserve`), receipts and corrections
(`stock:adjust`) and the stock ledger (`stock:ledger`, under the field policy). The rules are
the domain's (domain/inventory/service.py)."""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Annotated, Any

import strawberry
from sqlalchemy import select
from strawberry.types import Info

from api.context import RequestContext
from api.graphql.orders import relations_read
from api.graphql.projection import Projection
from api.graphql.relay import Connection, global_id, parse_id, selects
from api.graphql.scalars import Money
from api.graphql.types import Order, StockItem, read
from domain import pagination
from domain.access import AccessProfile
from domain.inventory import models
from domain.inventory import service as inventory
from domain.orders import views
from domain.orders.models import Order as OrderModel


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
    POOL = "POOL"
    POOL_RETURN = "POOL_RETURN"
    RETURN = "RETURN"


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
    campaign: str | None = strawberry.field(
        default=None,
        description="A running promotion pool's name: the line of its SKU and warehouse is "
        "drawn from the pool only (empty pool: INSUFFICIENT_STOCK).",
    )


@strawberry.input(description="A receipt (positive) or correction of on-hand stock.")
class AdjustStockInput:
    sku: str
    warehouse: str
    delta: int
    reason: str


@strawberry.input(description="Stock to set aside for a campaign window.")
class StockPoolInput:
    name: str
    sku: str
    warehouse: str
    quantity: int
    starts_at: dt.datetime
    ends_at: dt.datetime


@strawberry.enum(description="Where a promotion pool stands.")
class StockPoolStatus(Enum):
    SCHEDULED = "SCHEDULED"
    ACTIVE = "ACTIVE"
    CLOSED = "CLOSED"


assert {e.value for e in StockPoolStatus} == {e.value for e in inventory.PoolStatus}


@strawberry.type(description="Stock set aside for a campaign: only its orders draw from it.")
class StockPool:
    id: strawberry.ID
    name: str
    sku: str
    warehouse: str
    quantity: int = strawberry.field(description="Units set aside when it was created.")
    remaining: int = strawberry.field(description="Units not yet drawn (0 once closed).")
    returned: int | None = strawberry.field(
        description="Units that went back to the available stock when it closed."
    )
    status: StockPoolStatus
    starts_at: dt.datetime
    ends_at: dt.datetime

    @classmethod
    def from_model(cls, pool: models.StockPool, now: dt.datetime) -> StockPool:
        return cls(
            id=global_id("StockPool", pool.id),
            name=pool.name,
            sku=pool.sku,
            warehouse=pool.warehouse,
            quantity=pool.quantity,
            remaining=pool.remaining,
            returned=pool.returned,
            status=StockPoolStatus(inventory.pool_status(pool, now).value),
            starts_at=pool.starts_at,
            ends_at=pool.ends_at,
        )


@strawberry.enum(description="What becomes of a returned item.")
class ReturnDisposition(Enum):
    RESTOCK = "RESTOCK"
    DAMAGED = "DAMAGED"


assert {e.value for e in ReturnDisposition} == {e.value for e in models.ReturnDisposition}


@strawberry.input(description="One order line that came back.")
class ReturnLineInput:
    order_line_id: strawberry.ID
    quantity: int
    disposition: ReturnDisposition


@strawberry.input(description="A customer's return, after the warehouse inspected it.")
class ReturnInput:
    order_id: strawberry.ID
    inspected_at: dt.datetime
    lines: list[ReturnLineInput]


@strawberry.type(description="A returned parcel inspected by the warehouse.")
class ReturnInspection:
    id: strawberry.ID
    order_id: strawberry.ID
    inspected_at: dt.datetime
    recorded_by: str
    registered: bool = strawberry.field(
        description="Its return has been registered (the two-hour clock stopped)."
    )

    @classmethod
    def from_model(cls, i: models.ReturnInspection) -> ReturnInspection:
        return cls(
            id=global_id("ReturnInspection", i.id),
            order_id=global_id("Order", i.order_id),
            inspected_at=i.inspected_at,
            recorded_by=i.recorded_by,
            registered=i.return_id is not None,
        )


@strawberry.input(description="Which returns to list.")
class ReturnFilter:
    order_id: strawberry.ID | None = None
    sla_breached: bool | None = None


@strawberry.type(description="One returned order line.")
class ReturnLine:
    order_line_id: strawberry.ID
    sku: str
    warehouse: str
    quantity: int
    disposition: ReturnDisposition


@strawberry.type(description="Goods a customer sent back, registered after inspection.")
class Return:
    id: strawberry.ID
    order: Order | None
    inspected_at: dt.datetime
    registered_at: dt.datetime
    sla_breached: bool = strawberry.field(
        description="Registered more than two hours after the inspection."
    )
    lines: list[ReturnLine]

    @classmethod
    def from_model(cls, r: models.StockReturn, order: Order | None) -> Return:
        return cls(
            id=global_id("Return", r.id),
            order=order,
            inspected_at=r.inspected_at,
            registered_at=r.registered_at,
            sla_breached=r.sla_breached,
            lines=[
                ReturnLine(
                    order_line_id=global_id("OrderLine", li.order_line_id),
                    sku=li.sku,
                    warehouse=li.warehouse,
                    quantity=li.quantity,
                    disposition=ReturnDisposition(li.disposition.value),
                )
                for li in r.lines
            ],
        )


async def _with_orders(session: Any, actor: Any, found: list[models.StockReturn]) -> list[Return]:
    """Each return with its order under the caller's field policy (one query for all)."""
    ids = {r.order_id for r in found}
    loaded = (
        await views.load_orders(
            session, select(OrderModel).where(OrderModel.id.in_(ids)), relations_read(actor)
        )
        if ids
        else []
    )
    by_id = {o.id: Order.from_model(o, actor.access) for o in loaded}
    return [Return.from_model(r, by_id.get(r.order_id)) for r in found]


@strawberry.input(description="One SKU's counted quantity.")
class StockCountLineInput:
    sku: str
    counted: int


@strawberry.input(description="A physical count of a warehouse.")
class StockCountInput:
    warehouse: str
    counted_at: dt.datetime
    lines: list[StockCountLineInput]


@strawberry.type(description="A counted SKU against the system's quantity when it was counted.")
class StockDiscrepancy:
    sku: str
    system: int
    counted: int
    delta_percent: str = strawberry.field(
        description='(counted - system) / system as a signed decimal string ("-3.45"); '
        '"100.00" when the system held none.'
    )
    traced: bool = strawberry.field(
        description="Above 3%: a trace task lists every movement since the previous count."
    )


@strawberry.type(description="A physical count compared with the system.")
class StockCount:
    id: strawberry.ID
    warehouse: str
    counted_at: dt.datetime
    discrepancies: list[StockDiscrepancy] = strawberry.field(
        description="One entry per counted SKU (delta 0.00 where they agree)."
    )

    @classmethod
    def from_model(cls, count: models.StockCount) -> StockCount:
        return cls(
            id=global_id("StockCount", count.id),
            warehouse=count.warehouse,
            counted_at=count.counted_at,
            discrepancies=[
                StockDiscrepancy(
                    sku=li.sku,
                    system=li.system,
                    counted=li.counted,
                    delta_percent=inventory.format_percent(li.delta_basis_points),
                    traced=li.traced,
                )
                for li in count.lines
            ],
        )


@strawberry.type(description="Available stock fell below its safety threshold (once per crossing).")
class StockAlert:
    id: strawberry.ID
    sku: str
    warehouse: str
    available: int
    threshold: int
    at: dt.datetime
    notified_at: dt.datetime | None

    @classmethod
    def from_model(cls, a: models.StockAlert) -> StockAlert:
        return cls(
            id=global_id("StockAlert", a.id),
            sku=a.sku,
            warehouse=a.warehouse,
            available=a.available,
            threshold=a.threshold,
            at=a.at,
            notified_at=a.notified_at,
        )


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
    def from_model(cls, r: models.StockReservation, now: dt.datetime) -> Reservation:
        status = inventory.state_of(r, now)
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
    @strawberry.field(description="Registered returns, newest first. Holders of return:register.")
    async def returns(
        self,
        info: Info[RequestContext, None],
        filter: ReturnFilter | None = None,
        first: int | None = 20,
        after: str | None = None,
    ) -> Connection[Return] | None:
        ctx = info.context
        actor = ctx.require_actor()
        stmt = inventory.returns_query(
            actor,
            order_id=parse_id(filter.order_id, "order") if filter and filter.order_id else None,
            sla_breached=filter.sla_breached if filter else None,
        )
        async with ctx.read(replica=True) as session:
            page = await pagination.by_id(
                session,
                stmt,
                models.StockReturn.id,
                ordering="returns:DESC",
                first=first,
                after=after,
                descending=True,
                want_total=selects(info, "totalCount"),
            )
            items = list(page.items)
            shown = dict(
                zip([r.id for r in items], await _with_orders(session, actor, items), strict=True)
            )
        return Connection.from_page(page, lambda r: shown[r.id])

    @strawberry.field(description="Low-stock alerts, newest first. Holders of stock:alerts.")
    async def stock_alerts(
        self, info: Info[RequestContext, None], first: int | None = 20, after: str | None = None
    ) -> Connection[StockAlert] | None:
        ctx = info.context
        stmt = inventory.alerts_query(ctx.require_actor())
        async with ctx.read(replica=True) as session:
            page = await pagination.by_id(
                session,
                stmt,
                models.StockAlert.id,
                ordering="stockAlerts:DESC",
                first=first,
                after=after,
                descending=True,
                want_total=selects(info, "totalCount"),
            )
        return Connection.from_page(page, StockAlert.from_model)

    @strawberry.field(description="Promotion pools, ending soonest first. Holders of stock:pool.")
    async def stock_pools(
        self, info: Info[RequestContext, None], status: StockPoolStatus | None = None
    ) -> list[StockPool] | None:
        ctx = info.context
        stmt = inventory.pools_query(
            ctx.require_actor(),
            inventory.PoolStatus(status.value) if status is not None else None,
            ctx.runtime.clock(),
        )
        async with ctx.read() as session:
            found = (await session.scalars(stmt.limit(500))).all()
        return [StockPool.from_model(p, ctx.runtime.clock()) for p in found]

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
                campaign=input.campaign,
                now=ctx.runtime.clock(),
            )
            return Reservation.from_model(reservation, ctx.runtime.clock())

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
                session=session,
                actor=actor,
                reservation_id=parse_id(id, "reservation"),
                now=ctx.runtime.clock(),
            )
            return Reservation.from_model(reservation, ctx.runtime.clock())

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
                session=session,
                actor=actor,
                reservation_id=parse_id(id, "reservation"),
                now=ctx.runtime.clock(),
            )
            return Reservation.from_model(reservation, ctx.runtime.clock())

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
                now=ctx.runtime.clock(),
            )
            return StockItem.from_model(item, actor.access)

    @strawberry.mutation(
        description="Set stock aside for a campaign window, out of the available stock "
        "(INSUFFICIENT_STOCK if it is not there)."
    )
    async def create_stock_pool(
        self, info: Info[RequestContext, None], input: StockPoolInput
    ) -> StockPool | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="stock.pool_create", operation="createStockPool", target_type="StockPool"
        ) as session:
            pool = await inventory.create_pool(
                session=session,
                actor=actor,
                name=input.name,
                sku=input.sku,
                warehouse=input.warehouse,
                quantity=input.quantity,
                starts_at=input.starts_at,
                ends_at=input.ends_at,
                now=ctx.runtime.clock(),
            )
            return StockPool.from_model(pool, ctx.runtime.clock())

    @strawberry.mutation(
        description="End a pool now: what it has left goes back to the available stock."
    )
    async def close_stock_pool(
        self, info: Info[RequestContext, None], id: strawberry.ID
    ) -> StockPool | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="stock.pool_close",
            operation="closeStockPool",
            target_type="StockPool",
            target_id=id,
        ) as session:
            pool = await inventory.close_pool(
                session=session,
                actor=actor,
                pool_id=parse_id(id, "stock pool"),
                now=ctx.runtime.clock(),
            )
            return StockPool.from_model(pool, ctx.runtime.clock())

    @strawberry.mutation(
        description="The inspection step: a returned parcel of a shipped order was inspected. "
        "Unregistered two hours later, it raises a task for the warehouse."
    )
    async def record_return_inspection(
        self, info: Info[RequestContext, None], order_id: strawberry.ID, inspected_at: dt.datetime
    ) -> ReturnInspection | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="stock.return_inspected",
            operation="recordReturnInspection",
            target_type="Order",
            target_id=order_id,
        ) as session:
            inspection = await inventory.record_inspection(
                session=session,
                actor=actor,
                order_id=parse_id(order_id, "order"),
                inspected_at=inspected_at,
                now=ctx.runtime.clock(),
            )
            return ReturnInspection.from_model(inspection)

    @strawberry.mutation(
        description="Register what came back after inspection: RESTOCK lines return to on "
        "hand, DAMAGED lines are recorded only. Each order line once."
    )
    async def register_return(
        self, info: Info[RequestContext, None], input: ReturnInput
    ) -> Return | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="stock.return",
            operation="registerReturn",
            target_type="Order",
            target_id=input.order_id,
        ) as session:
            returned = await inventory.register_return(
                session=session,
                actor=actor,
                order_id=parse_id(input.order_id, "order"),
                inspected_at=input.inspected_at,
                lines=[
                    inventory.ReturnLineInput(
                        order_line_id=parse_id(li.order_line_id, "order line"),
                        quantity=li.quantity,
                        disposition=models.ReturnDisposition(li.disposition.value),
                    )
                    for li in input.lines
                ],
                now=ctx.runtime.clock(),
            )
            [shown] = await _with_orders(session, actor, [returned])
            return shown

    @strawberry.mutation(
        description="Submit a physical count: compared with the system as of countedAt; a "
        "discrepancy above 3% raises a trace task. Corrects nothing by itself."
    )
    async def submit_stock_count(
        self, info: Info[RequestContext, None], input: StockCountInput
    ) -> StockCount | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="stock.count", operation="submitStockCount", target_type="StockCount"
        ) as session:
            count = await inventory.submit_count(
                session=session,
                actor=actor,
                warehouse=input.warehouse,
                counted_at=input.counted_at,
                lines=[inventory.CountLineInput(li.sku, li.counted) for li in input.lines],
                now=ctx.runtime.clock(),
            )
            return StockCount.from_model(count)
