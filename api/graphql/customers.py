"""Customer queries."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from api.context import RequestContext
from api.graphql.relay import Connection, parse_id, selects
from api.graphql.types import Customer
from domain.customers import service as customers_service
from domain.customers.service import CustomerFilter as DomainCustomerFilter


@strawberry.input(description="Searching a personal field needs that field in full.")
class CustomerFilter:
    name_contains: str | None = None
    phone: str | None = None
    email: str | None = None

    def to_domain(self) -> DomainCustomerFilter:
        return DomainCustomerFilter(
            name_contains=self.name_contains, phone=self.phone, email=self.email
        )


@strawberry.type
class CustomerQueries:
    @strawberry.field
    async def customers(
        self,
        info: Info[RequestContext, None],
        first: int | None = 20,
        after: str | None = None,
        filter: CustomerFilter | None = None,
    ) -> Connection[Customer] | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.read(replica=True) as session:
            page = await customers_service.list_customers(
                session=session,
                actor=actor,
                flt=filter.to_domain() if filter else None,
                first=first,
                after=after,
                want_total=selects(info, "totalCount"),
            )
        return Connection.from_page(page, lambda c: Customer.from_model(c, actor.access))

    @strawberry.field
    async def customer(
        self,
        info: Info[RequestContext, None],
        id: strawberry.ID,
    ) -> Customer | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.read(replica=True) as session:
            model = await customers_service.get_customer(
                session=session, actor=actor, customer_id=parse_id(id, "customer")
            )
        return Customer.from_model(model, actor.access)
