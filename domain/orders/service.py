"""Reading orders within the caller's row scope, and moving them through their lifecycle."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Select, false, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import raiseload, selectinload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from domain import pagination
from domain.access import Action, RowScope
from domain.actor import Actor
from domain.audit import service as audit
from domain.customers.models import Customer
from domain.db import utcnow
from domain.errors import BadInput, Conflict, InvalidTransition, NotFound
from domain.events import service as events
from domain.inventory import service as inventory
from domain.money import to_minor
from domain.orders import picking, views
from domain.orders.models import Order, OrderLine, OrderStatusChange
from domain.orders.rules import OrderStatus, allowed_next
from domain.values import clean_text, is_int4

MAX_NOTE = 2000


class OrderSortField(StrEnum):
    CREATED_AT = "CREATED_AT"
    TOTAL = "TOTAL"


@dataclass(frozen=True)
class OrderFilter:
    statuses: Sequence[OrderStatus] = ()
    channels: Sequence[str] = ()
    created_from: dt.datetime | None = None
    created_to: dt.datetime | None = None
    customer_id: int | None = None
    customer_phone: str | None = None
    min_total: str | None = None
    max_total: str | None = None
    escalated: bool | None = None


# Which field a caller must read in full to use a filter or sort key: an argument on a field
# the caller cannot see would let them find its value by bisection.
FILTER_REQUIRES = {
    "customer_id": "Order.customer",
    "customer_phone": "Order.customerPhone",
    "min_total": "Order.total",
    "max_total": "Order.total",
    "escalated": "Order.escalatedAt",
}
SORT_REQUIRES = {OrderSortField.CREATED_AT: "Order.createdAt", OrderSortField.TOTAL: "Order.total"}
SORT_COLUMNS = {
    OrderSortField.CREATED_AT: Order.created_at,
    OrderSortField.TOTAL: Order.total_minor,
}

# What a caller may ask to be loaded with each order of a list (GraphQL coordinates, which the
# delivery layer knows from the selection): nothing more is read.
EVERYTHING = frozenset(
    {"Order.lines", "Order.statusHistory", "Order.customer", "Customer.addresses"}
)


def _link_lines(orders: Sequence[Order]) -> None:
    """Point each loaded line at its order without a lookup per line: a line's money is read
    in its order's currency, and the selectin load does not fill that side in."""
    for order in orders:
        if "lines" in order.__dict__:
            for line in order.lines:
                set_committed_value(line, "order", order)


def order_graph(include: frozenset[str]) -> list[Any]:
    """ORM loader options for exactly the relations asked for (single orders; lists load
    views, see `domain/orders/views.py`)."""
    options: list[Any] = []
    if "Order.lines" in include:
        options.append(selectinload(Order.lines))
    if "Order.statusHistory" in include:
        options.append(selectinload(Order.status_history))
    if "Order.customer" in include:
        customer = selectinload(Order.customer)
        if "Customer.addresses" in include:
            customer = customer.selectinload(Customer.addresses)
        options.append(customer)
    return options


def in_scope(actor: Actor) -> ColumnElement[bool] | None:
    """The row filter of the caller's scope; None when the caller sees every channel."""
    scope = actor.access.order_rows
    if scope is RowScope.ALL:
        return None
    if scope is RowScope.CHANNELS and actor.channels:
        return Order.channel_code.in_(sorted(actor.channels))
    return false()


def _scoped(stmt: Select[Any], actor: Actor) -> Select[Any]:
    condition = in_scope(actor)
    return stmt if condition is None else stmt.where(condition)


def _require_readable(actor: Actor) -> None:
    actor.access.require_full("Order.id")


def _filtered(stmt: Select[Any], actor: Actor, flt: OrderFilter) -> Select[Any]:
    for attr, coordinate in FILTER_REQUIRES.items():
        if getattr(flt, attr) is not None:
            actor.access.require_full(coordinate)
    if flt.created_from and flt.created_to and flt.created_from > flt.created_to:
        raise BadInput("createdFrom is after createdTo")
    if flt.statuses:
        stmt = stmt.where(Order.status.in_(list(flt.statuses)))
    if flt.escalated is not None:
        stmt = stmt.where(
            Order.escalated_at.is_not(None) if flt.escalated else Order.escalated_at.is_(None)
        )
    if flt.channels:
        stmt = stmt.where(Order.channel_code.in_(list(flt.channels)))
    if flt.created_from is not None:
        stmt = stmt.where(Order.created_at >= flt.created_from)
    if flt.created_to is not None:
        stmt = stmt.where(Order.created_at < flt.created_to)
    if flt.customer_id is not None:
        stmt = stmt.where(Order.customer_id == flt.customer_id)
    if flt.customer_phone is not None:
        stmt = stmt.where(Order.customer_phone == flt.customer_phone)
    # Totals compare in minor units; every channel in ordergate settles in CNY today.
    if flt.min_total is not None:
        stmt = stmt.where(Order.total_minor >= to_minor(flt.min_total, "CNY"))
    if flt.max_total is not None:
        stmt = stmt.where(Order.total_minor <= to_minor(flt.max_total, "CNY"))
    return stmt


def _cursor_key(sort: OrderSortField, raw: Any) -> Any:
    if sort is OrderSortField.CREATED_AT:
        try:
            value = dt.datetime.fromisoformat(raw)
        except (TypeError, ValueError):
            raise BadInput("malformed cursor") from None
        if value.tzinfo is None:
            raise BadInput("malformed cursor")
        return value
    if not is_int4(raw):
        raise BadInput("malformed cursor")
    return raw


def matching(actor: Actor, flt: OrderFilter | None = None) -> Select[Any]:
    """Orders the caller may see that match the filter (no order, no limit): the one query
    behind lists, counts and exports, so none of them can show more than another."""
    _require_readable(actor)
    return _filtered(_scoped(select(Order), actor), actor, flt or OrderFilter())


async def list_orders(
    *,
    session: AsyncSession,
    actor: Actor,
    flt: OrderFilter | None = None,
    sort: OrderSortField = OrderSortField.CREATED_AT,
    descending: bool = True,
    first: int | None = None,
    after: str | None = None,
    include: frozenset[str] = EVERYTHING,
    want_total: bool = True,
) -> pagination.Page[views.View]:
    """One page of orders. `include` names the relations to load with them (see
    `EVERYTHING`); the count runs only when `want_total`, and stops at the cap."""
    actor.access.require_full(SORT_REQUIRES[sort])
    size = pagination.page_size(first)
    column = SORT_COLUMNS[sort]
    ordering = f"orders:{sort}:{'DESC' if descending else 'ASC'}"

    base = matching(actor, flt)
    total, capped = await pagination.count(session, base) if want_total else (None, False)

    stmt = base
    if after is not None:
        raw_key, row_id = pagination.decode_cursor(after, ordering)
        key = _cursor_key(sort, raw_key)
        stmt = stmt.where(
            pagination.after_condition(column, Order.id, key, row_id, desc=descending)
        )
    stmt = pagination.apply_order(stmt, column, Order.id, desc=descending)
    rows = await views.load_orders(session, stmt.limit(size + 1), include)
    has_next = len(rows) > size
    rows = rows[:size]
    key_of = (
        (lambda o: o.created_at) if sort is OrderSortField.CREATED_AT else (lambda o: o.total_minor)
    )
    cursors = [pagination.encode_cursor(ordering, key_of(o), o.id) for o in rows]
    return pagination.Page(rows, cursors, has_next, after is not None, total, capped)


async def get_order(
    *,
    session: AsyncSession,
    actor: Actor,
    order_id: int,
    include: frozenset[str] = EVERYTHING,
) -> Order:
    """One order in the caller's scope; out of scope is indistinguishable from missing.
    `include` names the relations to load with it (see `EVERYTHING`); reading one that was
    not loaded fails loudly rather than loading it behind the caller's back."""
    _require_readable(actor)
    stmt = _scoped(select(Order).where(Order.id == order_id), actor).options(
        *order_graph(include), raiseload("*")
    )
    order = await session.scalar(stmt)
    if order is None:
        raise NotFound("no such order")
    _link_lines([order])
    return order


async def get_order_line(*, session: AsyncSession, actor: Actor, line_id: int) -> OrderLine:
    """One order line, when its order is in the caller's scope and the caller may read an
    order's lines; otherwise indistinguishable from missing."""
    _require_readable(actor)
    actor.access.require_full("Order.lines")
    stmt = _scoped(
        select(OrderLine)
        .join(Order, OrderLine.order_id == Order.id)
        .where(OrderLine.id == line_id),
        actor,
    )
    line = await session.scalar(stmt)
    if line is None:
        raise NotFound("no such order line")
    return line


async def orders_of_customers(
    *,
    session: AsyncSession,
    actor: Actor,
    customer_ids: Sequence[int],
    limit: int,
    include: frozenset[str] = EVERYTHING,
) -> dict[int, list[views.View]]:
    """The latest `limit` orders of each customer, in the caller's scope, in one query that
    reads no more than `limit` orders per customer however many each has."""
    _require_readable(actor)
    ranked = _scoped(
        select(
            Order.id,
            func.row_number()
            .over(
                partition_by=Order.customer_id,
                order_by=(Order.created_at.desc(), Order.id.desc()),
            )
            .label("rank"),
        ).where(Order.customer_id.in_(list(customer_ids))),
        actor,
    ).subquery()
    stmt = (
        select(Order)
        .join(ranked, ranked.c.id == Order.id)
        .where(ranked.c.rank <= limit)
        .order_by(Order.created_at.desc(), Order.id.desc())
    )
    grouped: dict[int, list[Any]] = defaultdict(list)
    found = await views.load_orders(session, stmt, include)
    for order in found:
        bucket = grouped[order.customer_id]  # type: ignore[index]
        if len(bucket) < limit:
            bucket.append(order)
    return grouped


async def move(
    *,
    session: AsyncSession,
    order: Order,
    to: OrderStatus,
    actor: Actor,
    at: dt.datetime,
    note: str | None,
    open_picking: bool = True,
    paid_minor: int | None = None,
) -> None:
    """One lifecycle step and everything that follows from it, in the caller's transaction:
    the history row, the paid amount at PAID, `ORDER_STATUS_CHANGED`, and the picking list
    opened at PAID (unless `open_picking` is False) or cancelled with the order. The caller
    has checked the rules. Used by `transitionOrder` and the channel intake alike.

    The amount paid comes from payment evidence only — `paid_minor`, what the channel reports
    its buyer paid — never from the status: a person moving an order to PAID records no money,
    so nothing can be refunded that was never received (issue #30, H2: an unpaid order was
    refunded in full after a staff transition, and a repriced one at its new price)."""
    before, number = order.status, order.number
    change = OrderStatusChange(
        order_id=order.id,
        from_status=order.status,
        to_status=to,
        actor_id=actor.user_id,
        actor_username=actor.username,
        at=at,
        note=note,
    )
    if "status_history" in order.__dict__:  # loaded for the caller: keep it current
        order.status_history.append(change)
    else:
        session.add(change)
    order.status = to
    order.updated_at = at
    if to is OrderStatus.PAID:
        # What the customer paid, as evidenced; refunds are capped by it from here on.
        if paid_minor is not None:
            order.paid_minor = max(order.paid_minor, paid_minor)
        order.check_money()
        if order.paid_at is None:
            order.paid_at = at
    elif to is OrderStatus.SHIPPED:
        order.shipped_at = at
    elif to is OrderStatus.CANCELLED and order.business_day is not None:
        # A cancelled order leaves its day's timeliness: a closed day is computed again.
        from domain.kpis import service as kpis

        await kpis.invalidate(session, [order.business_day], [kpis.TIMELINESS])
    await flush_versioned(session, order, number)
    events.publish(
        session=session,
        type=events.EventType.ORDER_STATUS_CHANGED,
        aggregate_type="Order",
        aggregate_id=order.id,
        version=order.version,
        at=at,
        payload={"orderId": order.id, "from": str(before), "to": str(to)},
    )
    # The stock the order holds follows it: confirmed when paid, back when cancelled, out of
    # the warehouse when shipped.
    await inventory.follow_order(
        session=session, order_id=order.id, number=number, to=to, who=actor, now=at
    )
    if to is OrderStatus.PAID and open_picking:  # the warehouse gets its picking list, once
        await picking.open_for(session=session, order=order, at=at)
    elif to is OrderStatus.CANCELLED:
        await picking.cancel_for(session=session, order_id=order.id)


async def flush_versioned(session: AsyncSession, order: Order, number: str | None = None) -> None:
    """Write the order's changes at the version it was read at; a concurrent writer that got
    there first makes this a CONFLICT (nothing of this transaction is kept)."""
    number = number or order.number
    try:
        await session.flush()
    except StaleDataError:
        raise Conflict(f"order {number} was changed concurrently; reload and retry") from None


async def transition(
    *,
    session: AsyncSession,
    actor: Actor,
    order_id: int,
    to: OrderStatus,
    note: str | None = None,
    expected_version: int | None = None,
    include: frozenset[str] = EVERYTHING,
) -> Order:
    """Move an order one step along its lifecycle, recording who did it and when. `include`:
    the relations the caller will read of the moved order (the rules need none of them)."""
    actor.access.require(Action.ORDER_TRANSITION)
    if note is not None:
        note = clean_text(note, what="note", max_length=MAX_NOTE) or None
    order = await get_order(session=session, actor=actor, order_id=order_id, include=include)
    if expected_version is not None and expected_version != order.version:
        raise Conflict(
            f"order {order.number} is at version {order.version}, not {expected_version}",
            current_version=order.version,
        )
    if to not in allowed_next(order.status):
        allowed = ", ".join(sorted(allowed_next(order.status))) or "none"
        raise InvalidTransition(
            f"order {order.number} cannot move from {order.status} to {to} (allowed: {allowed})",
            current=str(order.status),
        )
    number, before_status, before_version = order.number, order.status, order.version
    now = utcnow()
    await move(session=session, order=order, to=to, actor=actor, at=now, note=note)
    await audit.record(
        session=session,
        who=actor,
        action="order.transition",
        operation="transitionOrder",
        target_type="Order",
        target_id=order.id,
        at=now,
        details={
            "number": number,
            "before": {"status": str(before_status), "version": before_version},
            "after": {"status": str(to), "version": order.version},
            "note": note,
        },
    )
    return order
