"""Order queries and lifecycle mutations."""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Annotated

import strawberry
from strawberry.types import Info

from api.context import RequestContext
from api.graphql.addresses import AddressInput
from api.graphql.projection import READ_SCOPE
from api.graphql.relay import Connection, parse_id, selects
from api.graphql.scalars import Money
from api.graphql.types import Channel, Order, OrderStatus
from domain.access import FieldAccess
from domain.actor import Actor
from domain.orders import address as order_address
from domain.orders import service as orders_service
from domain.orders.service import OrderFilter as DomainOrderFilter
from domain.orders.service import OrderSortField as DomainSortField

OrderSortField = strawberry.enum(DomainSortField, name="OrderSortField")


def relations_read(actor: Actor) -> frozenset[str]:
    """The relations of each listed order that this operation will read: asked for by the
    selection (the access extension's read scope) and readable by the caller."""
    scope = READ_SCOPE.get()
    if scope is None:
        return orders_service.EVERYTHING
    return frozenset(
        c
        for c in orders_service.EVERYTHING & scope.asked
        if actor.access.field_access(c) is not FieldAccess.NONE
    )


@strawberry.enum
class SortDirection(Enum):
    ASC = "ASC"
    DESC = "DESC"


@strawberry.input(description="All given conditions must hold.")
class OrderFilter:
    status: list[OrderStatus] | None = None
    channel: list[Channel] | None = None
    created_from: dt.datetime | None = strawberry.field(
        default=None, description="Inclusive lower bound."
    )
    created_to: dt.datetime | None = strawberry.field(
        default=None, description="Exclusive upper bound."
    )
    customer_id: strawberry.ID | None = None
    customer_phone: str | None = strawberry.field(
        default=None, description="Exact phone number; needs Order.customerPhone in full."
    )
    min_total: Money | None = None
    max_total: Money | None = None
    escalated: bool | None = strawberry.field(
        default=None, description="Only escalated orders (true) or only the others (false)."
    )

    def to_domain(self) -> DomainOrderFilter:
        return DomainOrderFilter(
            statuses=tuple(self.status or ()),
            channels=tuple(c.value for c in self.channel or ()),
            created_from=self.created_from,
            created_to=self.created_to,
            customer_id=parse_id(self.customer_id, "customer") if self.customer_id else None,
            customer_phone=self.customer_phone,
            min_total=str(self.min_total) if self.min_total is not None else None,
            max_total=str(self.max_total) if self.max_total is not None else None,
            escalated=self.escalated,
        )


@strawberry.input
class OrderOrder:
    field: OrderSortField = DomainSortField.CREATED_AT
    direction: SortDirection = SortDirection.DESC


@strawberry.type
class OrderQueries:
    @strawberry.field(description="Orders in the caller's row scope, newest first by default.")
    async def orders(
        self,
        info: Info[RequestContext, None],
        first: int | None = 20,
        after: str | None = None,
        filter: OrderFilter | None = None,
        order_by: OrderOrder | None = None,
    ) -> Connection[Order] | None:
        ctx = info.context
        actor = ctx.require_actor()
        order_by = order_by or OrderOrder()
        async with ctx.read(replica=True) as session:
            page = await orders_service.list_orders(
                session=session,
                actor=actor,
                flt=filter.to_domain() if filter else None,
                sort=DomainSortField(order_by.field),
                descending=order_by.direction is SortDirection.DESC,
                first=first,
                after=after,
                want_total=selects(info, "totalCount"),
                include=relations_read(actor),
            )
        return Connection.from_page(page, lambda o: Order.from_model(o, actor.access))

    @strawberry.field
    async def order(self, info: Info[RequestContext, None], id: strawberry.ID) -> Order | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.read(replica=True) as session:
            model = await orders_service.get_order(
                session=session,
                actor=actor,
                order_id=parse_id(id, "order"),
                include=relations_read(actor),
            )
        return Order.from_model(model, actor.access)


@strawberry.type
class OrderMutations:
    @strawberry.mutation(description="Move an order one step along its lifecycle.")
    async def transition_order(
        self,
        info: Info[RequestContext, None],
        id: strawberry.ID,
        to: OrderStatus,
        note: str | None = None,
        expected_version: Annotated[
            int | None,
            strawberry.argument(
                description="Fail with CONFLICT unless the order is at this version."
            ),
        ] = None,
    ) -> Order | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="order.transition",
            operation="transitionOrder",
            target_type="Order",
            target_id=id,
        ) as session:
            model = await orders_service.transition(
                session=session,
                actor=actor,
                order_id=parse_id(id, "order"),
                to=to,
                note=note,
                expected_version=expected_version,
                include=relations_read(actor),
            )
            result = Order.from_model(model, actor.access)
        return result

    @strawberry.mutation(
        description=(
            "Ship an order somewhere else, before it ships: with a reason, audited with both "
            "addresses, counted per account in the quarterly access report."
        )
    )
    async def change_shipping_address(
        self,
        info: Info[RequestContext, None],
        order_id: strawberry.ID,
        address: AddressInput,
        reason: str,
    ) -> Order | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="order.change_address",
            operation="changeShippingAddress",
            target_type="Order",
            target_id=order_id,
        ) as session:
            model = await order_address.change_shipping_address(
                session=session,
                actor=actor,
                order_id=parse_id(order_id, "order"),
                address=address.to_domain(),
                reason=reason,
                include=relations_read(actor),
            )
            result = Order.from_model(model, actor.access)
        return result
