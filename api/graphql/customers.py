"""Customer queries."""

from __future__ import annotations

import json

import strawberry
from strawberry.types import Info

from api.context import RequestContext
from api.graphql.addresses import AddressInput
from api.graphql.relay import Connection, global_id, parse_id, selects
from api.graphql.types import Customer
from domain import pagination
from domain.customers import service as customers_service
from domain.customers.models import MatchCandidate
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


@strawberry.input(description="New contact values; a field left out stays as it is.")
class CustomerContactInput:
    name: str | None = None
    phone: str | None = None
    email: str | None = None


@strawberry.type(description="Two customers who may be one person, waiting for a decision.")
class CustomerMatchCandidate:
    id: strawberry.ID
    customers: list[Customer | None] = strawberry.field(
        description="The two records (each under your field policy), older first."
    )
    score: int = strawberry.field(description="0 to 100: phone 60, email 40, address 35, name 15.")
    reasons: list[str] = strawberry.field(description="What they share, in words.")


async def _candidates(
    ctx: RequestContext, page: pagination.Page[MatchCandidate]
) -> list[CustomerMatchCandidate]:
    actor = ctx.require_actor()
    ids = {cid for c in page.items for cid in (c.customer_id, c.other_id)}
    async with ctx.read() as session:
        found = await customers_service.customers_by_id(
            session=session, actor=actor, customer_ids=sorted(ids)
        )
    return [
        CustomerMatchCandidate(
            id=global_id("CustomerMatchCandidate", c.id),
            customers=[
                Customer.from_model(found[cid], actor.access) if cid in found else None
                for cid in (c.customer_id, c.other_id)
            ],
            score=c.score,
            reasons=json.loads(c.reasons),
        )
        for c in page.items
    ]


@strawberry.type
class CustomerReviewQueries:
    @strawberry.field(description="Possible duplicates to merge or leave (`customer:merge`).")
    async def customer_match_candidates(
        self,
        info: Info[RequestContext, None],
        first: int | None = 20,
        after: str | None = None,
    ) -> Connection[CustomerMatchCandidate] | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.read() as session:
            page = await customers_service.list_candidates(
                session=session,
                actor=actor,
                first=first,
                after=after,
                want_total=selects(info, "totalCount"),
            )
        shown = iter(await _candidates(ctx, page))
        return Connection.from_page(page, lambda _c: next(shown))


@strawberry.type
class CustomerMutations:
    @strawberry.mutation(
        description=(
            "Change a customer's name, phone or email at the version you read (else CONFLICT); "
            "earlier values are kept as history."
        )
    )
    async def update_customer_contact(
        self,
        info: Info[RequestContext, None],
        id: strawberry.ID,
        input: CustomerContactInput,
        expected_version: int,
    ) -> Customer | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="customer.update",
            operation="updateCustomerContact",
            target_type="Customer",
            target_id=id,
        ) as session:
            model = await customers_service.update_contact(
                session=session,
                actor=actor,
                customer_id=parse_id(id, "customer"),
                change=customers_service.ContactChange(
                    name=input.name, phone=input.phone, email=input.email
                ),
                expected_version=expected_version,
            )
            return Customer.from_model(model, actor.access)

    @strawberry.mutation(description="Add an address to a customer, as the default if asked.")
    async def add_customer_address(
        self,
        info: Info[RequestContext, None],
        customer_id: strawberry.ID,
        address: AddressInput,
        make_default: bool = False,
    ) -> Customer | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="customer.add_address",
            operation="addCustomerAddress",
            target_type="Customer",
            target_id=customer_id,
        ) as session:
            model = await customers_service.add_address(
                session=session,
                actor=actor,
                customer_id=parse_id(customer_id, "customer"),
                address=address.to_domain(),
                make_default=make_default,
            )
            return Customer.from_model(model, actor.access)
