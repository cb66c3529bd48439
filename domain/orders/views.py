"""Read-only views of orders for lists: plain objects built from Core rows.

A page of 50 orders with their lines and customers is ~250 objects. As ORM instances each
carries instrumentation, an identity-map entry and a state object, which made object
construction the largest single cost of the read path (bench/read_path.py). Lists never change
what they read, so they are loaded here as Core rows into `View`s: the same attribute names as
the mapped classes (the readers in `domain/readers.py` cannot tell the difference), without the
bookkeeping. Anything that writes loads ORM instances as before.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Result, Select, Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.customers.models import Address, Customer
from domain.orders.models import Order, OrderLine, OrderStatusChange


class View:
    """A row's columns as attributes, plus the relations the caller asked to be loaded. An
    attribute that was not loaded raises AttributeError rather than reading as empty."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return f"View({self.__dict__.get('id')!r})"


def _table(mapped: type) -> Table:
    return mapped.__table__  # type: ignore[attr-defined,no-any-return]


def _views(result: Result[Any]) -> list[View]:
    keys = list(result.keys())  # once per result, not once per row as Row._asdict does
    return [View(dict(zip(keys, row, strict=True))) for row in result]


async def _children(
    session: AsyncSession, mapped: type, parent_column: str, ids: Sequence[int]
) -> dict[int, list[View]]:
    """Children of `ids` in id order, grouped by parent: one statement."""
    grouped: dict[int, list[View]] = defaultdict(list)
    if not ids:
        return grouped
    table = _table(mapped)
    rows = await session.execute(
        select(*table.columns).where(table.c[parent_column].in_(ids)).order_by(table.c.id)
    )
    for view in _views(rows):
        grouped[getattr(view, parent_column)].append(view)
    return grouped


async def load_orders(
    session: AsyncSession, stmt: Select[Any], include: frozenset[str]
) -> list[View]:
    """Run an order query built on `select(Order)` (scope, filter, order and limit already in
    it) and load the relations named in `include` — the coordinates of `EVERYTHING` — with one
    statement per relation, as selectin loading would."""
    orders = _views(await session.execute(stmt.with_only_columns(*_table(Order).columns)))
    ids = [o.id for o in orders]
    if "Order.lines" in include:
        lines = await _children(session, OrderLine, "order_id", ids)
        for order in orders:
            order.lines = lines.get(order.id, [])
            for line in order.lines:
                line.order = order  # a line's money is read in its order's currency
    if "Order.statusHistory" in include:
        history = await _children(session, OrderStatusChange, "order_id", ids)
        for order in orders:
            order.status_history = history.get(order.id, [])
    if "Order.customer" in include:
        customer_ids = sorted({o.customer_id for o in orders if o.customer_id is not None})
        customers: dict[int, View] = {}
        if customer_ids:
            table = _table(Customer)
            found = await session.execute(
                select(*table.columns).where(table.c.id.in_(customer_ids))
            )
            customers = {c.id: c for c in _views(found)}
            if "Customer.addresses" in include:
                addresses = await _children(session, Address, "customer_id", customer_ids)
                for customer in customers.values():
                    customer.addresses = addresses.get(customer.id, [])
        for order in orders:
            order.customer = customers.get(order.customer_id) if order.customer_id else None
    return orders
