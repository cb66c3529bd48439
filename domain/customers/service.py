"""Reading customers. Searching by a personal field needs that field in full."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from domain import pagination
from domain.actor import Actor
from domain.customers.models import Customer
from domain.errors import BadInput, NotFound
from domain.orders import service as orders_service
from domain.orders.models import Order

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


def matching(actor: Actor, flt: CustomerFilter | None = None) -> Select[Any]:
    """Customers in the caller's scope matching the filter, which may only use fields the
    caller reads in full: the one query behind lists, look-ups and exports."""
    actor.access.require_full("Customer.id")
    return _filtered(_scoped(select(Customer), actor), actor, flt or CustomerFilter())


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


async def get_customer(*, session: AsyncSession, actor: Actor, customer_id: int) -> Customer:
    stmt = matching(actor).where(Customer.id == customer_id)
    customer = await session.scalar(stmt.options(selectinload(Customer.addresses)))
    if customer is None:
        raise NotFound("no such customer")
    return customer
