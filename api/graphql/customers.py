"""Customer queries."""

from __future__ import annotations

import datetime as dt
import json

import strawberry
from strawberry.types import Info

from api.context import RequestContext
from api.graphql.addresses import AddressInput
from api.graphql.projection import note_read
from api.graphql.relay import Connection, global_id, parse_id, selects
from api.graphql.scalars import Money
from api.graphql.types import Address, Customer
from domain import pagination
from domain.access import AccessProfile, FieldAccess
from domain.customers import merging
from domain.customers import service as customers_service
from domain.customers.models import CustomerMerge as MergeRecord
from domain.customers.models import MatchCandidate
from domain.customers.service import CustomerFilter as DomainCustomerFilter
from domain.money import from_minor


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


@strawberry.type(description="A merge of two customers, and whether it was undone.")
class CustomerMerge:
    id: strawberry.ID
    survivor: Customer | None = strawberry.field(description="The record that stays.")
    merged: Customer | None = strawberry.field(
        description="The record merged away (a tombstone pointing at the survivor until undone)."
    )
    at: dt.datetime = strawberry.field(description="When it was merged (ISO 8601 with offset).")
    reason: str = strawberry.field(description="Why, as the merger wrote it.")
    reversed_at: dt.datetime | None = strawberry.field(
        description="When `unmergeCustomers` undid it; null while it stands."
    )


async def _merge_view(ctx: RequestContext, record: MergeRecord) -> CustomerMerge:
    actor = ctx.require_actor()
    async with ctx.read() as session:
        found = await customers_service.customers_by_id(
            session=session, actor=actor, customer_ids=[record.survivor_id, record.merged_id]
        )
    shown = {cid: Customer.from_model(c, actor.access) for cid, c in found.items()}
    return CustomerMerge(
        id=global_id("CustomerMerge", record.id),
        survivor=shown.get(record.survivor_id),
        merged=shown.get(record.merged_id),
        at=record.merged_at,
        reason=record.reason,
        reversed_at=record.reversed_at,
    )


@strawberry.type(
    description=(
        "What the survivor will hold after `mergeCustomers`: each value under your field "
        "policy for the same Customer field."
    )
)
class CustomerMergePreview:
    survivor: Customer | None = strawberry.field(description="The record that stays, as it is.")
    merged: Customer | None = strawberry.field(description="The record merged away, as it is.")
    name: str | None = strawberry.field(description="The survivor's name after the merge.")
    phone: str | None = strawberry.field(
        description="The survivor's phone after the merge (the merged one's if it had none)."
    )
    email: str | None = strawberry.field(
        description="The survivor's email after the merge (the merged one's if it had none)."
    )
    addresses: list[Address] | None = strawberry.field(description="Both records' addresses.")
    order_count: int | None = strawberry.field(description="Orders after the merge.")
    total_spent: Money | None = strawberry.field(description="Money spent after the merge.")
    channels: list[str] | None = strawberry.field(description="Channels after the merge.")
    moving_orders: int | None = strawberry.field(description="Orders that change customer.")
    moving_addresses: int | None = strawberry.field(description="Addresses that move.")


def _preview_view(preview: merging.Preview, access: AccessProfile) -> CustomerMergePreview:
    def allowed(field: str) -> bool:
        return access.field_access(f"Customer.{field}") is not FieldAccess.NONE

    stats = preview.stats
    currency = stats.currency or "CNY"
    return CustomerMergePreview(
        survivor=Customer.from_model(preview.survivor, access),
        merged=Customer.from_model(preview.merged, access),
        name=note_read("Customer.name", access.present("Customer.name", preview.name)),
        phone=note_read("Customer.phone", access.present("Customer.phone", preview.phone))
        if preview.phone
        else None,
        email=note_read("Customer.email", access.present("Customer.email", preview.email))
        if preview.email
        else None,
        addresses=[Address.from_model(a, access) for a in preview.addresses]
        if allowed("addresses")
        else None,
        order_count=stats.order_count if allowed("orderCount") else None,
        total_spent=from_minor((stats.spent_minor or {}).get(currency, 0), currency)
        if allowed("totalSpent")
        else None,
        channels=list(stats.channels) if allowed("channels") else None,
        moving_orders=preview.moving_orders if allowed("orderCount") else None,
        moving_addresses=len(preview.merged.addresses) if allowed("addresses") else None,
    )


@strawberry.type
class CustomerMergeQueries:
    @strawberry.field(description="What merging would do, without doing it (`customer:merge`).")
    async def customer_merge_preview(
        self,
        info: Info[RequestContext, None],
        survivor_id: strawberry.ID,
        merged_id: strawberry.ID,
    ) -> CustomerMergePreview | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.read() as session:
            preview = await merging.preview(
                session=session,
                actor=actor,
                survivor_id=parse_id(survivor_id, "customer"),
                merged_id=parse_id(merged_id, "customer"),
            )
            return _preview_view(preview, actor.access)


@strawberry.type
class CustomerMergeMutations:
    @strawberry.mutation(
        description=(
            "Merge `mergedId` into `survivorId`: orders, addresses and missing contacts move; "
            "the merged record stays as a tombstone. Undo with `unmergeCustomers`."
        )
    )
    async def merge_customers(
        self,
        info: Info[RequestContext, None],
        survivor_id: strawberry.ID,
        merged_id: strawberry.ID,
        reason: str,
    ) -> CustomerMerge | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="customer.merge",
            operation="mergeCustomers",
            target_type="Customer",
            target_id=survivor_id,
        ) as session:
            record = await merging.merge(
                session=session,
                actor=actor,
                survivor_id=parse_id(survivor_id, "customer"),
                merged_id=parse_id(merged_id, "customer"),
                reason=reason,
            )
        return await _merge_view(ctx, record)

    @strawberry.mutation(description="Undo a merge: both records exactly as they were.")
    async def unmerge_customers(
        self, info: Info[RequestContext, None], merge_id: strawberry.ID
    ) -> CustomerMerge | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="customer.unmerge",
            operation="unmergeCustomers",
            target_type="CustomerMerge",
            target_id=merge_id,
        ) as session:
            record = await merging.unmerge(
                session=session, actor=actor, merge_id=parse_id(merge_id, "customer merge")
            )
        return await _merge_view(ctx, record)
