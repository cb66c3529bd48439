"""Reading customers. Searching by a personal field needs that field in full."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from domain import pagination
from domain.actor import Actor
from domain.customers.models import Customer
from domain.errors import BadInput, NotFound

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


def matching(actor: Actor, flt: CustomerFilter | None = None) -> Select[Any]:
    """Customers matching the filter, which may only use fields the caller reads in full."""
    actor.access.require_full("Customer.id")
    return _filtered(select(Customer), actor, flt or CustomerFilter())


async def list_customers(
    *,
    session: AsyncSession,
    actor: Actor,
    flt: CustomerFilter | None = None,
    first: int | None = None,
    after: str | None = None,
) -> pagination.Page[Customer]:
    base = matching(actor, flt).options(selectinload(Customer.addresses))
    return await pagination.by_id(
        session, base, Customer.id, ordering=ORDERING, first=first, after=after
    )


async def get_customer(*, session: AsyncSession, actor: Actor, customer_id: int) -> Customer:
    actor.access.require_full("Customer.id")
    stmt = select(Customer).where(Customer.id == customer_id)
    customer = await session.scalar(stmt.options(selectinload(Customer.addresses)))
    if customer is None:
        raise NotFound("no such customer")
    return customer
