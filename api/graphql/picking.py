"""Picking lists for the warehouse: `pickingLists(warehouse, status, first, after)` and
`pickingList(id)`, for holders of `picking:read` (warehouse, ops). Created by the intake and by
`transitionOrder` when an order becomes PAID (domain/orders/picking.py)."""

from __future__ import annotations

import datetime as dt
from enum import Enum

import strawberry
from strawberry.types import Info

from api.context import RequestContext
from api.graphql.orders import relations_read
from api.graphql.relay import Connection, global_id, parse_id, selects
from api.graphql.types import Order
from domain import pagination
from domain.actor import Actor
from domain.orders import picking


@strawberry.enum(description="Where a picking list stands.")
class PickingListStatus(Enum):
    OPEN = "OPEN"
    PICKED = "PICKED"
    CANCELLED = "CANCELLED"


assert {s.value for s in PickingListStatus} == {s.value for s in picking.PickingStatus}


@strawberry.type(description="One SKU to pick.")
class PickingLine:
    sku: str
    product_name: str
    quantity: int


@strawberry.type(description="What the warehouse picks for one paid order.")
class PickingList:
    id: strawberry.ID
    number: str
    warehouse: str
    status: PickingListStatus
    order: Order | None = strawberry.field(
        description="The order, under the caller's field policy."
    )
    lines: list[PickingLine]
    created_at: dt.datetime

    @classmethod
    def of(cls, found: picking.Found, actor: Actor) -> PickingList:
        p = found.picking
        return cls(
            id=global_id("PickingList", p.id),
            number=p.number,
            warehouse=p.warehouse,
            status=PickingListStatus(p.status),
            order=Order.from_model(found.order, actor.access) if found.order else None,
            lines=[
                PickingLine(sku=li.sku, product_name=li.product_name, quantity=li.quantity)
                for li in found.lines
            ],
            created_at=p.created_at,
        )


@strawberry.type
class PickingQueries:
    @strawberry.field(description="Picking lists, oldest first. Holders of picking:read.")
    async def picking_lists(
        self,
        info: Info[RequestContext, None],
        warehouse: str | None = None,
        status: PickingListStatus | None = None,
        first: int | None = 20,
        after: str | None = None,
    ) -> Connection[PickingList] | None:
        ctx = info.context
        actor = ctx.require_actor()
        stmt = picking.lists_query(
            actor=actor,
            warehouse=warehouse,
            status=picking.PickingStatus(status.value) if status is not None else None,
        )
        async with ctx.read(replica=True) as session:
            page = await pagination.by_id(
                session,
                stmt,
                picking.PickingList.id,
                ordering=f"pickingLists:{warehouse or '*'}:{status.value if status else '*'}",
                first=first,
                after=after,
                want_total=selects(info, "totalCount"),
            )
            found = await picking.with_contents(
                session=session, lists=list(page.items), include=relations_read(actor)
            )
        by_id = {f.picking.id: f for f in found}
        return Connection.from_page(page, lambda p: PickingList.of(by_id[p.id], actor))

    @strawberry.field(description="One picking list. Holders of picking:read.")
    async def picking_list(
        self, info: Info[RequestContext, None], id: strawberry.ID
    ) -> PickingList | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.read(replica=True) as session:
            found = await picking.get(
                session=session,
                actor=actor,
                picking_id=parse_id(id, "picking list"),
                include=relations_read(actor),
            )
        return PickingList.of(found, actor)
