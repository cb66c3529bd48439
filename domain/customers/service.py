"""Customers: reading (searching by a personal field needs that field in full), keeping
contacts and addresses current with their history, and the review queue of possible duplicates."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.exc import StaleDataError

from domain import pagination
from domain.access import Action
from domain.actor import Actor
from domain.addresses import PostalAddress
from domain.audit import service as audit
from domain.customers import matching as finder
from domain.customers import normalise
from domain.customers.models import (
    Address,
    CandidateStatus,
    Customer,
    CustomerChange,
    MatchCandidate,
)
from domain.db import utcnow
from domain.errors import BadInput, Conflict, NotFound
from domain.events import service as events
from domain.inventory.models import StockReturn
from domain.orders import service as orders_service
from domain.orders.models import Order
from domain.tasks import service as tasks
from domain.values import clean_text

ORDERING = "customers:ID:ASC"


@dataclass(frozen=True)
class CustomerFilter:
    name_contains: str | None = None
    phone: str | None = None
    email: str | None = None


FILTER_REQUIRES = {
    "name_contains": "Customer.name",
    "phone": "Customer.phone",
    "email": "Customer.email",
}


def _filtered(stmt: Select[Any], actor: Actor, flt: CustomerFilter) -> Select[Any]:
    for attr, coordinate in FILTER_REQUIRES.items():
        if getattr(flt, attr) is not None:
            actor.access.require_full(coordinate)
    if flt.name_contains is not None:
        if not flt.name_contains.strip():
            raise BadInput("nameContains must not be blank")
        stmt = stmt.where(Customer.name.contains(flt.name_contains))
    if flt.phone is not None:
        stmt = stmt.where(Customer.phone == flt.phone)
    if flt.email is not None:
        stmt = stmt.where(func.lower(Customer.email) == flt.email.lower())
    return stmt


def _scoped(stmt: Select[Any], actor: Actor) -> Select[Any]:
    """A customer is in the caller's row scope through an order the caller may see: a sales
    user bound to TAOBAO sees the customers who ordered on TAOBAO, and no others."""
    condition = orders_service.in_scope(actor)
    if condition is None:
        return stmt
    return stmt.where(
        exists().where(Order.customer_id == Customer.id).where(condition).correlate(Customer)
    )


def matching(
    actor: Actor, flt: CustomerFilter | None = None, *, include_merged: bool = False
) -> Select[Any]:
    """Customers in the caller's scope matching the filter, which may only use fields the
    caller reads in full: the one query behind lists, look-ups and exports. Records merged
    into another are left out unless asked for (their ids resolve to the survivor)."""
    actor.access.require_full("Customer.id")
    stmt = _filtered(_scoped(select(Customer), actor), actor, flt or CustomerFilter())
    return stmt if include_merged else stmt.where(Customer.merged_into_id.is_(None))


async def list_customers(
    *,
    session: AsyncSession,
    actor: Actor,
    flt: CustomerFilter | None = None,
    first: int | None = None,
    after: str | None = None,
    want_total: bool = True,
) -> pagination.Page[Customer]:
    base = matching(actor, flt).options(selectinload(Customer.addresses))
    return await pagination.by_id(
        session,
        base,
        Customer.id,
        ordering=ORDERING,
        first=first,
        after=after,
        want_total=want_total,
    )


MAX_MERGE_CHAIN = 20


async def get_customer(*, session: AsyncSession, actor: Actor, customer_id: int) -> Customer:
    """One customer; the id of a record merged into another answers with its survivor."""
    for _ in range(MAX_MERGE_CHAIN):
        stmt = matching(actor, include_merged=True).where(Customer.id == customer_id)
        customer = await session.scalar(stmt.options(selectinload(Customer.addresses)))
        if customer is None:
            raise NotFound("no such customer")
        if customer.merged_into_id is None:
            return customer
        customer_id = customer.merged_into_id
    raise NotFound("no such customer")


# ---- keeping a customer current ----------------------------------------------------------------


@dataclass(frozen=True)
class ContactChange:
    """What `updateCustomerContact` sets; None leaves a field as it is, "" clears phone/email."""

    name: str | None = None
    phone: str | None = None
    email: str | None = None


KEY_FIELDS = ("phone", "email", "defaultAddress")
_DETAIL_KEYS = {"name": "customerName", "phone": "phone", "email": "email"}


async def _for_update(session: AsyncSession, actor: Actor, customer_id: int) -> Customer:
    """A customer in the caller's scope, not merged away, with its addresses."""
    customer = await session.scalar(
        matching(actor, include_merged=True)
        .where(Customer.id == customer_id)
        .options(selectinload(Customer.addresses))
    )
    if customer is None:
        raise NotFound("no such customer")
    if customer.merged_into_id is not None:
        raise Conflict(
            "this customer was merged into another; change the surviving record",
        )
    return customer


def _record(
    session: AsyncSession,
    customer: Customer,
    actor: Actor | None,
    field: str,
    before: str | None,
    after: str | None,
    source: str,
    at: dt.datetime,
) -> None:
    session.add(
        CustomerChange(
            customer_id=customer.id,
            field=field,
            before=before,
            after=after,
            source=source,
            changed_by_id=actor.user_id if actor else None,
            changed_at=at,
        )
    )


def _address_line(address: Address | None) -> str | None:
    if address is None:
        return None
    parts = [address.recipient, address.phone, address.province, address.city, address.district]
    return " ".join([*parts, address.street, address.postal_code or ""]).strip()


async def _after_key_change(
    session: AsyncSession,
    customer: Customer,
    actor: Actor,
    fields: list[str],
    at: dt.datetime,
) -> None:
    """A key field changed: the event, the responsible salesperson's task, the review queue."""
    events.publish(
        session=session,
        type=events.EventType.CUSTOMER_CHANGED,
        aggregate_type="Customer",
        aggregate_id=customer.id,
        version=customer.version,
        at=at,
        payload={"customerId": customer.id, "fields": fields},
    )
    if customer.owner_id is not None:
        await tasks.raise_task(
            session,
            kind="CUSTOMER_CHANGED",
            title=f"Customer {customer.id}: {', '.join(fields)} changed — update your records",
            details={"customerId": customer.id, "fields": fields, "by": actor.username},
            by=actor,
            assignee_user_id=customer.owner_id,
            dedupe_key=f"customer-changed:{customer.id}",
            now=at,
        )
    await finder.review(session, customer, at)


async def update_contact(
    *,
    session: AsyncSession,
    actor: Actor,
    customer_id: int,
    change: ContactChange,
    expected_version: int,
    now: dt.datetime | None = None,
) -> Customer:
    """Name, phone and email, at the version the caller read (else CONFLICT): the previous
    values go to the history; a new phone or email is published, told to the salesperson and
    checked against other customers."""
    actor.access.require(Action.CUSTOMER_UPDATE)
    now = now or utcnow()
    name = (
        clean_text(change.name, what="name", max_length=100, required=True)
        if change.name is not None
        else None
    )
    phone = (
        clean_text(change.phone, what="phone", max_length=32) if change.phone is not None else None
    )
    email = (
        clean_text(change.email, what="email", max_length=254) if change.email is not None else None
    )
    if phone:
        number = normalise.phone(phone)
        if number is None or not number.valid:
            raise BadInput("phone is not a valid phone number")
    if email and not normalise.email_valid(normalise.email(email)):
        raise BadInput("email is not a valid email address")
    customer = await _for_update(session, actor, customer_id)
    customer_id = customer.id  # readable after a failed flush expires the instance
    if customer.version != expected_version:
        raise Conflict(
            f"customer {customer.id} is at version {customer.version}, not {expected_version}; "
            "reload and retry",
            current_version=customer.version,
        )
    new_phone = finder.display_phone(phone) if phone is not None else customer.phone
    new_email = normalise.email(email) if email is not None else customer.email
    changed: dict[str, tuple[str | None, str | None]] = {}
    if name is not None and name != customer.name:
        changed["name"] = (customer.name, name)
    if phone is not None and new_phone != customer.phone:
        changed["phone"] = (customer.phone, new_phone)
    if email is not None and new_email != customer.email:
        changed["email"] = (customer.email, new_email)
    if not changed:
        raise BadInput("nothing to change: the values are the customer's already")
    for field, (before, after) in changed.items():
        _record(session, customer, actor, field, before, after, "update", now)
    if "name" in changed:
        customer.name = name  # type: ignore[assignment]
    customer.set_contact(phone=new_phone, email=new_email)
    customer.updated_at = now
    try:
        await session.flush()
    except StaleDataError:
        raise Conflict(
            f"customer {customer_id} was changed concurrently; reload and retry"
        ) from None
    key_fields = [f for f in changed if f in KEY_FIELDS]
    await audit.record(
        session=session,
        who=actor,
        action="customer.update",
        operation="updateCustomerContact",
        target_type="Customer",
        target_id=customer.id,
        at=now,
        details={
            "customerId": customer.id,
            # Keys that name the governed field, so readers of the log see them masked.
            "before": {_DETAIL_KEYS[f]: b for f, (b, _) in changed.items()},
            "after": {_DETAIL_KEYS[f]: a for f, (_, a) in changed.items()},
            "version": customer.version,
        },
    )
    if key_fields:
        await _after_key_change(session, customer, actor, key_fields, now)
    return customer


async def add_address(
    *,
    session: AsyncSession,
    actor: Actor,
    customer_id: int,
    address: PostalAddress,
    make_default: bool,
    now: dt.datetime | None = None,
) -> Customer:
    """A new address; as the default, the previous default stays on record (history)."""
    actor.access.require(Action.CUSTOMER_UPDATE)
    now = now or utcnow()
    new = address.checked()
    customer = await _for_update(session, actor, customer_id)
    key = normalise.address_key(city=new.city, district=new.district, street=new.street)
    if any(
        a.address_key == key and a.recipient == new.recipient and a.phone == new.phone
        for a in customer.addresses
    ):
        raise BadInput("the customer has this address already")
    previous = customer.default_address
    make_default = make_default or previous is None
    if make_default and previous is not None:
        previous.is_default = False
    added = Address(
        recipient=new.recipient,
        phone=new.phone,
        province=new.province,
        city=new.city,
        district=new.district,
        street=new.street,
        postal_code=new.postal_code,
        is_default=make_default,
        address_key=key,
        created_at=now,
    )
    customer.addresses.append(added)
    customer.updated_at = now
    if make_default:
        _record(
            session,
            customer,
            actor,
            "defaultAddress",
            _address_line(previous),
            _address_line(added),
            "address",
            now,
        )
    try:
        await session.flush()
    except StaleDataError:
        raise Conflict(
            f"customer {customer_id} was changed concurrently; reload and retry"
        ) from None
    await audit.record(
        session=session,
        who=actor,
        action="customer.add_address",
        operation="addCustomerAddress",
        target_type="Customer",
        target_id=customer.id,
        at=now,
        details={"customerId": customer.id, "addressId": added.id, "madeDefault": make_default},
    )
    if make_default:
        await _after_key_change(session, customer, actor, ["defaultAddress"], now)
    else:
        await finder.review(session, customer, now)
    return customer


async def customers_by_id(
    *, session: AsyncSession, actor: Actor, customer_ids: Sequence[int]
) -> dict[int, Customer]:
    """Customers in the caller's scope, with their addresses, by id (tombstones included)."""
    if not customer_ids:
        return {}
    found = await session.scalars(
        matching(actor, include_merged=True)
        .where(Customer.id.in_(list(customer_ids)))
        .options(selectinload(Customer.addresses))
    )
    return {c.id: c for c in found}


# ---- the review queue -------------------------------------------------------------------------


async def list_candidates(
    *,
    session: AsyncSession,
    actor: Actor,
    first: int | None = None,
    after: str | None = None,
    want_total: bool = True,
) -> pagination.Page[MatchCandidate]:
    """Open pairs, for those who merge; the highest score is not first: newest first keeps the
    pages stable while the queue grows."""
    actor.access.require(Action.CUSTOMER_MERGE)
    merged = select(Customer.id).where(Customer.merged_into_id.is_not(None))
    base = select(MatchCandidate).where(
        MatchCandidate.status == CandidateStatus.OPEN,
        MatchCandidate.customer_id.not_in(merged),
        MatchCandidate.other_id.not_in(merged),
    )
    return await pagination.by_id(
        session,
        base,
        MatchCandidate.id,
        ordering="match-candidates:ID:DESC",
        first=first,
        after=after,
        descending=True,
        want_total=want_total,
    )


# ---- the 360° view ----------------------------------------------------------------------------


@dataclass
class CustomerStats:
    """A customer's orders as the caller may see them (row scope applies)."""

    order_count: int = 0
    spent_minor: dict[str, int] | None = None  # currency -> paid less refunded
    last_order_at: dt.datetime | None = None
    channels: tuple[str, ...] = ()
    returns: int = 0

    @property
    def currency(self) -> str | None:
        """The currency most of the money was spent in (orders in another are not added)."""
        if not self.spent_minor:
            return None
        return max(sorted(self.spent_minor), key=lambda c: self.spent_minor[c])  # type: ignore[index]


async def stats_of(
    *, session: AsyncSession, actor: Actor, customer_ids: Sequence[int]
) -> dict[int, CustomerStats]:
    """Order count, money spent, last order, channels and returns for each customer, in two
    aggregate statements for the whole page."""
    ids = sorted(set(customer_ids))
    found: dict[int, CustomerStats] = {cid: CustomerStats(spent_minor={}) for cid in ids}
    if not ids:
        return found
    scope = orders_service.in_scope(actor)
    per_channel = select(
        Order.customer_id,
        Order.channel_code,
        Order.currency,
        func.count(),
        func.sum(Order.paid_minor - Order.refunded_minor),
        func.max(Order.created_at),
    ).where(Order.customer_id.in_(ids))
    if scope is not None:
        per_channel = per_channel.where(scope)
    per_channel = per_channel.group_by(Order.customer_id, Order.channel_code, Order.currency)
    for customer_id, channel, currency, count, spent, last in (
        await session.execute(per_channel)
    ).all():
        stats = found[customer_id]
        stats.order_count += count
        stats.spent_minor[currency] = stats.spent_minor.get(currency, 0) + int(spent or 0)  # type: ignore[index]
        if last is not None and (stats.last_order_at is None or last > stats.last_order_at):
            stats.last_order_at = last
        stats.channels = tuple(sorted({*stats.channels, channel}))
    returned = (
        select(Order.customer_id, func.count(StockReturn.id))
        .join(StockReturn, StockReturn.order_id == Order.id)
        .where(Order.customer_id.in_(ids))
    )
    if scope is not None:
        returned = returned.where(scope)
    for customer_id, count in (await session.execute(returned.group_by(Order.customer_id))).all():
        found[customer_id].returns = count
    return found


async def history_of(
    *, session: AsyncSession, customer_ids: Sequence[int]
) -> dict[int, list[CustomerChange]]:
    """Each customer's contact history, newest first (the caller's field policy decides
    whether it is shown)."""
    found: dict[int, list[CustomerChange]] = {cid: [] for cid in customer_ids}
    if not customer_ids:
        return found
    rows = await session.scalars(
        select(CustomerChange)
        .where(CustomerChange.customer_id.in_(sorted(set(customer_ids))))
        .order_by(CustomerChange.id.desc())
    )
    for change in rows:
        found[change.customer_id].append(change)
    return found
