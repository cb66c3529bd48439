"""Merging two records of one person, previewed first and reversible.

`merge` moves the merged customer's orders and addresses to the survivor, gives the survivor
the phone or email it lacked, and leaves the merged record as a tombstone pointing at the
survivor (asking for the old id answers with the survivor). Everything it changed is kept in
the merge's snapshot, so `unmerge` puts both records back exactly: the same orders, addresses
(with their default flags), names and contacts. An unmerge is refused while a later change
would be lost by it: the survivor merged again, or edited since the merge.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.exc import StaleDataError

from domain.access import Action
from domain.actor import Actor
from domain.audit import service as audit
from domain.customers import service as customers
from domain.customers.models import (
    Address,
    CandidateStatus,
    Customer,
    CustomerChange,
    CustomerMerge,
    MatchCandidate,
)
from domain.db import utcnow
from domain.errors import BadInput, Conflict, NotFound
from domain.events import service as events
from domain.orders.models import Order
from domain.values import clean_text

CONTACT = ("name", "phone", "email", "phone_e164", "phone_valid", "email_valid")


@dataclass(frozen=True)
class Preview:
    survivor: Customer
    merged: Customer
    name: str
    phone: str | None
    email: str | None
    addresses: list[Address]
    moving_orders: int
    stats: customers.CustomerStats  # the survivor's figures after the merge


async def _pair(
    session: AsyncSession, actor: Actor, survivor_id: int, merged_id: int, *, lock: bool
) -> tuple[Customer, Customer]:
    actor.access.require(Action.CUSTOMER_MERGE)
    if survivor_id == merged_id:
        raise BadInput("a customer cannot be merged into itself")
    stmt = (
        customers.matching(actor, include_merged=True)
        .where(Customer.id.in_([survivor_id, merged_id]))
        .options(selectinload(Customer.addresses))
        .order_by(Customer.id)  # locks in id order: two merges cannot deadlock
    )
    if lock:
        stmt = stmt.with_for_update(of=Customer)
    found = {c.id: c for c in await session.scalars(stmt)}
    if survivor_id not in found or merged_id not in found:
        raise NotFound("no such customer")
    survivor, merged = found[survivor_id], found[merged_id]
    for customer in (survivor, merged):
        if customer.merged_into_id is not None:
            raise Conflict(f"customer {customer.id} was already merged into another")
    return survivor, merged


def _takes(survivor: Customer, merged: Customer) -> dict[str, Any]:
    """What the survivor takes from the merged record: the contacts it lacks."""
    taken: dict[str, Any] = {}
    if not survivor.phone and merged.phone:
        taken["phone"] = merged.phone
    if not survivor.email and merged.email:
        taken["email"] = merged.email
    return taken


async def preview(
    *, session: AsyncSession, actor: Actor, survivor_id: int, merged_id: int
) -> Preview:
    survivor, merged = await _pair(session, actor, survivor_id, merged_id, lock=False)
    taken = _takes(survivor, merged)
    stats = await customers.stats_of(
        session=session, actor=actor, customer_ids=[survivor.id, merged.id]
    )
    both = stats[survivor.id]
    other = stats[merged.id]
    spent = dict(both.spent_minor or {})
    for currency, minor in (other.spent_minor or {}).items():
        spent[currency] = spent.get(currency, 0) + minor
    last = max((x for x in (both.last_order_at, other.last_order_at) if x), default=None)
    order_ids = await session.scalars(select(Order.id).where(Order.customer_id == merged.id))
    return Preview(
        survivor=survivor,
        merged=merged,
        name=survivor.name,
        phone=taken.get("phone", survivor.phone),
        email=taken.get("email", survivor.email),
        addresses=[*survivor.addresses, *merged.addresses],
        moving_orders=len(list(order_ids)),
        stats=customers.CustomerStats(
            order_count=both.order_count + other.order_count,
            spent_minor=spent,
            last_order_at=last,
            channels=tuple(sorted({*both.channels, *other.channels})),
            returns=both.returns + other.returns,
        ),
    )


def _contact(customer: Customer) -> dict[str, Any]:
    return {field: getattr(customer, field) for field in CONTACT}


async def merge(
    *,
    session: AsyncSession,
    actor: Actor,
    survivor_id: int,
    merged_id: int,
    reason: str,
    now: dt.datetime | None = None,
) -> CustomerMerge:
    reason = clean_text(reason, what="reason", max_length=500, required=True)
    now = now or utcnow()
    survivor, merged = await _pair(session, actor, survivor_id, merged_id, lock=True)
    order_ids = list(
        await session.scalars(
            select(Order.id).where(Order.customer_id == merged.id).order_by(Order.id)
        )
    )
    candidate_ids = list(
        await session.scalars(
            select(MatchCandidate.id).where(
                MatchCandidate.customer_id == min(survivor.id, merged.id),
                MatchCandidate.other_id == max(survivor.id, merged.id),
                MatchCandidate.status == CandidateStatus.OPEN,
            )
        )
    )
    snapshot = {
        "survivor": _contact(survivor),
        "merged": _contact(merged),
        "orders": order_ids,
        "addresses": [{"id": a.id, "isDefault": a.is_default} for a in merged.addresses],
        "candidates": candidate_ids,
    }
    taken = _takes(survivor, merged)
    for field, value in taken.items():
        session.add(
            CustomerChange(
                customer_id=survivor.id,
                field=field,
                before=None,
                after=value,
                source="merge",
                changed_by_id=actor.user_id,
                changed_at=now,
            )
        )
    survivor.set_contact(
        phone=taken.get("phone", survivor.phone), email=taken.get("email", survivor.email)
    )
    survivor.updated_at = now
    merged.merged_into_id = survivor.id
    merged.updated_at = now
    try:
        await session.flush()
    except StaleDataError:
        raise Conflict("one of the customers was changed concurrently; reload and retry") from None
    if order_ids:
        await session.execute(
            update(Order)
            .where(Order.id.in_(order_ids))
            .values(customer_id=survivor.id)
            .execution_options(synchronize_session=False)
        )
    await session.execute(
        update(Address)
        .where(Address.customer_id == merged.id)
        .values(customer_id=survivor.id, is_default=False)
        .execution_options(synchronize_session=False)
    )
    if candidate_ids:
        await session.execute(
            update(MatchCandidate)
            .where(MatchCandidate.id.in_(candidate_ids))
            .values(status=CandidateStatus.MERGED)
        )
    snapshot["survivorVersion"] = survivor.version
    record = CustomerMerge(
        survivor_id=survivor.id,
        merged_id=merged.id,
        reason=reason,
        merged_by_id=actor.user_id,
        merged_at=now,
        snapshot=json.dumps(snapshot, ensure_ascii=False, sort_keys=True),
    )
    session.add(record)
    await session.flush()
    await _announce(
        session,
        actor,
        record,
        now,
        merged=True,
        details={
            "reason": reason,
            "orders": len(order_ids),
            "addresses": len(snapshot["addresses"]),
            "took": sorted(taken),
        },
    )
    return record


async def unmerge(
    *, session: AsyncSession, actor: Actor, merge_id: int, now: dt.datetime | None = None
) -> CustomerMerge:
    actor.access.require(Action.CUSTOMER_MERGE)
    now = now or utcnow()
    record = await session.scalar(
        select(CustomerMerge).where(CustomerMerge.id == merge_id).with_for_update()
    )
    if record is None:
        raise NotFound("no such merge")
    if record.reversed_at is not None:
        raise Conflict(f"merge {record.id} was already undone")
    survivor, merged = await _locked(session, actor, record)
    snapshot = json.loads(record.snapshot)
    if survivor.merged_into_id is not None:
        raise Conflict(f"customer {survivor.id} was merged again since; undo that merge first")
    if merged.merged_into_id != survivor.id:
        raise Conflict(f"customer {merged.id} no longer points at customer {survivor.id}")
    if survivor.version != snapshot["survivorVersion"]:
        raise Conflict(
            f"customer {survivor.id} changed since the merge (version "
            f"{snapshot['survivorVersion']} → {survivor.version}); undoing it would lose that"
        )
    before = _contact(survivor)
    for field, value in snapshot["survivor"].items():
        setattr(survivor, field, value)
    for field in ("phone", "email"):
        if before[field] != snapshot["survivor"][field]:
            session.add(
                CustomerChange(
                    customer_id=survivor.id,
                    field=field,
                    before=before[field],
                    after=snapshot["survivor"][field],
                    source="unmerge",
                    changed_by_id=actor.user_id,
                    changed_at=now,
                )
            )
    survivor.updated_at = now
    merged.merged_into_id = None
    merged.updated_at = now
    try:
        await session.flush()
    except StaleDataError:
        raise Conflict("one of the customers was changed concurrently; reload and retry") from None
    if snapshot["orders"]:
        await session.execute(
            update(Order)
            .where(Order.id.in_(snapshot["orders"]), Order.customer_id == survivor.id)
            .values(customer_id=merged.id)
            .execution_options(synchronize_session=False)
        )
    for address in snapshot["addresses"]:
        await session.execute(
            update(Address)
            .where(Address.id == address["id"])
            .values(customer_id=merged.id, is_default=address["isDefault"])
            .execution_options(synchronize_session=False)
        )
    if snapshot["candidates"]:
        await session.execute(
            update(MatchCandidate)
            .where(MatchCandidate.id.in_(snapshot["candidates"]))
            .values(status=CandidateStatus.OPEN)
        )
    record.reversed_at = now
    record.reversed_by_id = actor.user_id
    await session.flush()
    await _announce(session, actor, record, now, merged=False)
    return record


async def _announce(
    session: AsyncSession,
    actor: Actor,
    record: CustomerMerge,
    now: dt.datetime,
    *,
    merged: bool,
    details: dict[str, Any] | None = None,
) -> None:
    """A merge or its undoing: published (on the survivor) and audited, in its transaction."""
    ids = {
        "survivorId": record.survivor_id,
        "mergedId": record.merged_id,
        "mergeId": record.id,
    }
    survivor = await session.get(Customer, record.survivor_id)
    assert survivor is not None
    events.publish(
        session=session,
        type=events.EventType.CUSTOMERS_MERGED if merged else events.EventType.CUSTOMERS_UNMERGED,
        aggregate_type="Customer",
        aggregate_id=record.survivor_id,
        version=survivor.version,
        at=now,
        payload=ids,
    )
    await audit.record(
        session=session,
        who=actor,
        action="customer.merge" if merged else "customer.unmerge",
        operation="mergeCustomers" if merged else "unmergeCustomers",
        target_type="Customer",
        target_id=record.survivor_id,
        at=now,
        details={"customerId": record.survivor_id, **ids, **(details or {})},
    )


async def _locked(
    session: AsyncSession, actor: Actor, record: CustomerMerge
) -> tuple[Customer, Customer]:
    found = {
        c.id: c
        for c in await session.scalars(
            customers.matching(actor, include_merged=True)
            .where(or_(Customer.id == record.survivor_id, Customer.id == record.merged_id))
            .order_by(Customer.id)
            .with_for_update(of=Customer)
        )
    }
    if record.survivor_id not in found or record.merged_id not in found:
        raise NotFound("no such merge")
    return found[record.survivor_id], found[record.merged_id]


async def get_merge(*, session: AsyncSession, actor: Actor, merge_id: int) -> CustomerMerge:
    actor.access.require(Action.CUSTOMER_MERGE)
    record = await session.get(CustomerMerge, merge_id)
    if record is None:
        raise NotFound("no such merge")
    return record
