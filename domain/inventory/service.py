"""Stock that is never oversold: reservations, adjustments and the ledger.

Every change of `on_hand` or `reserved` is one conditional UPDATE of the stock row — it
changes nothing unless the result stays within `0 ≤ reserved ≤ on_hand` (the table's CHECK
constraints say the same) — with a `StockMovement` row and a `STOCK_CHANGED` event in the same
transaction. A reservation of the last unit by two buyers at once is therefore decided by the
database's row lock: one UPDATE matches, the other finds `available < quantity` and the buyer
gets `INSUFFICIENT_STOCK`, on any number of server processes.

A reservation holds stock for a checkout until it is confirmed (paid), released, or expires
after its TTL (`ORDERGATE_RESERVATION_TTL_SECONDS`, 15 minutes by default); the worker's
`stock.expire-reservations` job releases expired ones every minute, locking each reservation
row and checking it is still ACTIVE on the primary before releasing it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.access import Action
from domain.actor import SYSTEM_ORIGIN, Actor
from domain.audit import service as audit
from domain.audit.chain import canonical_json
from domain.audit.service import Subject
from domain.catalog.models import StockItem
from domain.db import utcnow
from domain.errors import BadInput, Conflict, InsufficientStock, NotFound
from domain.events import service as events
from domain.inventory.models import (
    MovementReason,
    ReservationStatus,
    StockMovement,
    StockReservation,
    StockReservationLine,
)
from domain.orders.models import Order
from domain.orders.rules import OrderStatus
from domain.values import clean_text

HOLDING = (ReservationStatus.ACTIVE, ReservationStatus.CONFIRMED)
MAX_LINES = 100
MAX_QUANTITY = 1_000_000
MIN_TTL_SECONDS = 60
MAX_TTL_SECONDS = 7 * 24 * 3600
EXPIRE_BATCH = 500
SYSTEM = Subject(None, "system:reservations", (), SYSTEM_ORIGIN)


@dataclass(frozen=True)
class LineInput:
    sku: str
    warehouse: str
    quantity: int


@dataclass(frozen=True)
class _Who:
    """Who a movement is booked to: a person, or the system's expiry job."""

    user_id: int | None
    username: str


def _who(actor: Actor | Subject) -> _Who:
    return _Who(actor.user_id, actor.username or "system")


def require_aware(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise BadInput("a time needs its timezone offset")
    return value


def _quantity(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInput(f"{what} is a whole number")
    return value


def _summed(lines: Sequence[LineInput]) -> list[LineInput]:
    """Lines of one SKU in one warehouse summed, in (sku, warehouse) order — one lock order
    for every transaction, so two reservations never wait on each other in a cycle."""
    if not 1 <= len(lines) <= MAX_LINES:
        raise BadInput(f"a reservation has 1 to {MAX_LINES} lines")
    total: dict[tuple[str, str], int] = {}
    for line in lines:
        sku = clean_text(line.sku, what="sku", max_length=64, required=True)
        warehouse = clean_text(line.warehouse, what="warehouse", max_length=32, required=True)
        quantity = _quantity(line.quantity, "quantity")
        if not 1 <= quantity <= MAX_QUANTITY:
            raise BadInput(f"quantity of {sku} must be between 1 and {MAX_QUANTITY:,}")
        total[(sku, warehouse)] = total.get((sku, warehouse), 0) + quantity
        if total[(sku, warehouse)] > MAX_QUANTITY:
            raise BadInput(f"quantity of {sku} must be at most {MAX_QUANTITY:,}")
    return [LineInput(s, w, q) for (s, w), q in sorted(total.items())]


def _digest(lines: Sequence[LineInput]) -> str:
    body = canonical_json([[line.sku, line.warehouse, line.quantity] for line in lines])
    return hashlib.sha256(body.encode()).hexdigest()


async def _book(
    session: AsyncSession,
    *,
    sku: str,
    warehouse: str,
    on_hand: int,
    reserved: int,
    reason: MovementReason,
    reference: str,
    who: _Who,
    at: dt.datetime,
) -> StockItem:
    """Change one stock item by (`on_hand`, `reserved`) if the result stays within
    0 ≤ reserved ≤ on_hand, with its movement and event; else INSUFFICIENT_STOCK (or
    NOT_FOUND for an unknown item), and nothing changed."""
    table = StockItem.__table__
    new_on_hand = table.c.on_hand + on_hand
    new_reserved = table.c.reserved + reserved
    row = (
        await session.execute(
            update(table)
            .where(
                table.c.sku == sku,
                table.c.warehouse == warehouse,
                new_reserved >= 0,
                new_on_hand >= new_reserved,
            )
            .values(on_hand=new_on_hand, reserved=new_reserved, updated_at=at)
            .returning(
                table.c.id,
                table.c.on_hand,
                table.c.reserved,
                table.c.currency,
                table.c.unit_cost_minor,
                table.c.safety_threshold,
            )
        )
    ).one_or_none()
    if row is None:
        exists = await session.scalar(
            select(StockItem.id).where(StockItem.sku == sku, StockItem.warehouse == warehouse)
        )
        if exists is None:
            raise NotFound(f"no stock of {sku} in warehouse {warehouse}")
        raise InsufficientStock(
            f"not enough {sku} in {warehouse} for this change", sku=sku, warehouse=warehouse
        )
    session.add(
        StockMovement(
            at=at,
            sku=sku,
            warehouse=warehouse,
            on_hand_delta=on_hand,
            reserved_delta=reserved,
            reason=reason.value,
            reference=reference[:100],
            actor_id=who.user_id,
            actor_username=who.username,
            currency=row.currency,
            unit_cost_minor=row.unit_cost_minor,
        )
    )
    events.publish(
        session=session,
        type=events.EventType.STOCK_CHANGED,
        aggregate_type="StockItem",
        aggregate_id=row.id,
        version=0,
        at=at,
        payload={
            "sku": sku,
            "warehouse": warehouse,
            "onHand": row.on_hand,
            "reserved": row.reserved,
            "available": row.on_hand - row.reserved,
            "reason": reason.value,
        },
    )
    # The session's copy, if it holds one, is stale now.
    item = await session.get(StockItem, row.id, populate_existing=True)
    assert item is not None
    return item


# ---- reservations ------------------------------------------------------------------------------


async def reserve(
    *,
    session: AsyncSession,
    actor: Actor,
    reference: str,
    lines: Sequence[LineInput],
    ttl_seconds: int | None = None,
    default_ttl_seconds: int = 900,
    now: dt.datetime | None = None,
) -> StockReservation:
    """Hold stock for a checkout under the caller's `reference` (the web shop's cart or
    order number). The same reference with the same lines again returns the reservation it
    made (a retried checkout), with other lines it is a CONFLICT. All lines or none."""
    actor.access.require(Action.STOCK_RESERVE)
    reference = clean_text(reference, what="reference", max_length=64, required=True)
    wanted = _summed(lines)
    ttl = default_ttl_seconds if ttl_seconds is None else _quantity(ttl_seconds, "ttlSeconds")
    if not MIN_TTL_SECONDS <= ttl <= MAX_TTL_SECONDS:
        raise BadInput(f"ttlSeconds must be between {MIN_TTL_SECONDS} and {MAX_TTL_SECONDS}")
    digest = _digest(wanted)
    existing = await session.scalar(
        select(StockReservation).where(StockReservation.reference == reference)
    )
    if existing is not None:
        if existing.digest != digest:
            raise Conflict(f"reference {reference} already reserved other lines")
        return existing
    now = now or utcnow()
    who = _who(actor)
    for line in wanted:
        await _book(
            session,
            sku=line.sku,
            warehouse=line.warehouse,
            on_hand=0,
            reserved=line.quantity,
            reason=MovementReason.RESERVE,
            reference=f"reservation {reference}",
            who=who,
            at=now,
        )
    reservation = StockReservation(
        reference=reference,
        status=ReservationStatus.ACTIVE,
        expires_at=now + dt.timedelta(seconds=ttl),
        digest=digest,
        created_by=actor.username,
        created_at=now,
        lines=[
            StockReservationLine(sku=li.sku, warehouse=li.warehouse, quantity=li.quantity)
            for li in wanted
        ],
    )
    session.add(reservation)
    await session.flush()
    await _audit(session, actor, "stock.reserve", "reserveStock", reservation, now)
    return reservation


async def _locked(session: AsyncSession, reservation_id: int) -> StockReservation:
    reservation = await session.scalar(
        select(StockReservation)
        .where(StockReservation.id == reservation_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if reservation is None:
        raise NotFound("no such reservation")
    return reservation


async def release(
    *, session: AsyncSession, actor: Actor, reservation_id: int, now: dt.datetime | None = None
) -> StockReservation:
    """Give the stock back (a cancelled checkout). Releasing a released one changes nothing."""
    actor.access.require(Action.STOCK_RESERVE)
    reservation = await _locked(session, reservation_id)
    if reservation.status not in HOLDING:
        return reservation
    now = now or utcnow()
    await _end(session, reservation, ReservationStatus.RELEASED, _who(actor), now)
    await _audit(session, actor, "stock.release", "releaseReservation", reservation, now)
    return reservation


async def confirm(
    *, session: AsyncSession, actor: Actor, reservation_id: int, now: dt.datetime | None = None
) -> StockReservation:
    """The checkout was paid: the stock stays held, with no expiry, until it ships or is
    released. An expired reservation cannot be confirmed (CONFLICT): its stock may be sold."""
    actor.access.require(Action.STOCK_RESERVE)
    reservation = await _locked(session, reservation_id)
    now = now or utcnow()
    if reservation.status is ReservationStatus.CONFIRMED:
        return reservation
    if reservation.status is not ReservationStatus.ACTIVE or reservation.expires_at <= now:
        raise Conflict(
            f"reservation {reservation.reference} is {state_of(reservation, now)}; reserve again",
            status=state_of(reservation, now),
        )
    reservation.status = ReservationStatus.CONFIRMED
    await session.flush()
    await _audit(session, actor, "stock.confirm", "confirmReservation", reservation, now)
    return reservation


def _movement_reference(reservation: StockReservation) -> str:
    """What the ledger names a reservation's movements by: the order, or the checkout."""
    if reservation.order_id is not None:
        return reservation.reference  # "order <number>"
    return f"reservation {reservation.reference}"


def state_of(reservation: StockReservation, now: dt.datetime) -> str:
    if reservation.status is ReservationStatus.ACTIVE and reservation.expires_at <= now:
        return "EXPIRED"
    return str(reservation.status)


async def _end(
    session: AsyncSession,
    reservation: StockReservation,
    status: ReservationStatus,
    who: _Who,
    now: dt.datetime,
) -> None:
    reason = (
        MovementReason.EXPIRE if status is ReservationStatus.EXPIRED else MovementReason.RELEASE
    )
    for line in reservation.lines:
        await _book(
            session,
            sku=line.sku,
            warehouse=line.warehouse,
            on_hand=0,
            reserved=-line.quantity,
            reason=reason,
            reference=_movement_reference(reservation),
            who=who,
            at=now,
        )
    reservation.status = status
    reservation.ended_at = now
    await session.flush()


async def expire_due(*, session: AsyncSession, now: dt.datetime) -> list[int]:
    """Release the ACTIVE reservations whose TTL has passed at `now`; returns their ids. The
    caller commits. Each row is locked and its status read again on the primary (SKIP LOCKED:
    a concurrent run, or a confirmation in progress, takes it instead)."""
    require_aware(now)
    # A reservation of an order goes only while the order is still unpaid: the order row is
    # locked with the reservation (SKIP LOCKED on both, so this never waits), and its status
    # is the one on the primary at that moment. A payment in progress holds the order row, so
    # its reservation is left for it to confirm.
    due: list[StockReservation] = []
    for of_orders in (False, True):
        stmt = select(StockReservation).where(
            StockReservation.status == ReservationStatus.ACTIVE,
            StockReservation.expires_at <= now,
        )
        if of_orders:
            stmt = stmt.join(Order, Order.id == StockReservation.order_id).where(
                Order.status == OrderStatus.PENDING_PAYMENT
            )
        else:
            stmt = stmt.where(StockReservation.order_id.is_(None))
        due += (
            await session.scalars(
                stmt.order_by(StockReservation.expires_at, StockReservation.id)
                .limit(EXPIRE_BATCH - len(due))
                .with_for_update(skip_locked=True)
                .execution_options(populate_existing=True)
            )
        ).all()
        if len(due) >= EXPIRE_BATCH:
            break
    who = _who(SYSTEM)
    for reservation in due:
        await _end(session, reservation, ReservationStatus.EXPIRED, who, now)
    if due:
        await audit.record(
            session=session,
            who=SYSTEM,
            action="stock.expire",
            operation="reservationExpiry",
            target_type="StockReservation",
            at=now,
            details={"reservations": [r.id for r in due][:500], "count": len(due)},
        )
    return [r.id for r in due]


async def _audit(
    session: AsyncSession,
    actor: Actor,
    action: str,
    operation: str,
    reservation: StockReservation,
    at: dt.datetime,
) -> None:
    await audit.record(
        session=session,
        who=actor,
        action=action,
        operation=operation,
        target_type="StockReservation",
        target_id=reservation.id,
        at=at,
        details={
            "reference": reservation.reference,
            "status": str(reservation.status),
            "lines": [[li.sku, li.warehouse, li.quantity] for li in reservation.lines],
        },
    )


# ---- orders -----------------------------------------------------------------------------------


async def hold_for_order(
    session: AsyncSession,
    *,
    number: str,
    wanted: dict[str, int],
    who: Actor,
    ttl_seconds: int,
    now: dt.datetime,
) -> list[LineInput] | None:
    """Reserve an unpaid order's quantities (sku -> units, lines of one SKU summed) from the
    warehouse that can supply all of them — the one with most available of the order among
    those that can — in a savepoint of its own: the lines held, or None (nothing held, the
    order's stock is short). Attach them to the order with `attach`, once it has an id."""
    stock = (
        await session.execute(
            select(StockItem.warehouse, StockItem.sku, StockItem.on_hand - StockItem.reserved)
            .where(StockItem.sku.in_(list(wanted)))
            .order_by(StockItem.warehouse)
        )
    ).all()
    supply: dict[str, dict[str, int]] = {}
    for warehouse, sku, available in stock:
        supply.setdefault(warehouse, {})[sku] = available
    able = [w for w, has in supply.items() if all(has.get(s, 0) >= q for s, q in wanted.items())]
    if not able:
        return None
    warehouse = max(able, key=lambda w: (sum(supply[w].values()), [-ord(c) for c in w]))
    lines = [LineInput(sku, warehouse, wanted[sku]) for sku in sorted(wanted)]
    mark = events.pending_mark(session)
    try:
        async with session.begin_nested():
            for line in lines:
                await _book(
                    session,
                    sku=line.sku,
                    warehouse=line.warehouse,
                    on_hand=0,
                    reserved=line.quantity,
                    reason=MovementReason.RESERVE,
                    reference=f"order {number}",
                    who=_who(who),
                    at=now,
                )
    except InsufficientStock:  # taken since it was read, by a concurrent reservation
        events.forget_since(session, mark)
        return None
    return lines


def attach(
    session: AsyncSession,
    *,
    order_id: int,
    number: str,
    lines: list[LineInput],
    ttl_seconds: int,
    created_by: str,
    now: dt.datetime,
) -> StockReservation:
    """The reservation record of stock `hold_for_order` held, tied to its order."""
    reservation = StockReservation(
        reference=f"order {number}",
        order_id=order_id,
        status=ReservationStatus.ACTIVE,
        expires_at=now + dt.timedelta(seconds=ttl_seconds),
        digest=_digest(lines),
        created_by=created_by,
        created_at=now,
        lines=[StockReservationLine(sku=li.sku, warehouse=li.warehouse, quantity=li.quantity)
               for li in lines],
    )  # fmt: skip
    session.add(reservation)
    return reservation


async def follow_order(
    session: AsyncSession,
    *,
    order_id: int,
    number: str,
    to: OrderStatus,
    who: Actor,
    now: dt.datetime,
) -> None:
    """What an order's step does to the stock it holds, in the step's transaction: PAID
    confirms its reservation, CANCELLED gives it back, SHIPPED takes it out of the warehouse
    (on hand and reserved both go down). An order holding nothing is left alone."""
    if to not in (OrderStatus.PAID, OrderStatus.CANCELLED, OrderStatus.SHIPPED):
        return
    reservation = await session.scalar(
        select(StockReservation)
        .where(StockReservation.order_id == order_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if reservation is None or reservation.status not in HOLDING:
        return
    if to is OrderStatus.PAID:
        reservation.status = ReservationStatus.CONFIRMED
        await session.flush()
    elif to is OrderStatus.CANCELLED:
        await _end(session, reservation, ReservationStatus.RELEASED, _who(who), now)
    else:
        for line in reservation.lines:
            await _book(
                session,
                sku=line.sku,
                warehouse=line.warehouse,
                on_hand=-line.quantity,
                reserved=-line.quantity,
                reason=MovementReason.SHIP,
                reference=f"order {number}",
                who=_who(who),
                at=now,
            )
        reservation.status = ReservationStatus.SHIPPED
        reservation.ended_at = now
        await session.flush()


# ---- adjustments and the ledger ---------------------------------------------------------------


async def adjust(
    *,
    session: AsyncSession,
    actor: Actor,
    sku: str,
    warehouse: str,
    delta: int,
    reason: str,
    now: dt.datetime | None = None,
) -> StockItem:
    """A receipt (positive) or a correction (either sign) of on-hand stock, with its reason.
    On-hand never drops below what is reserved (INSUFFICIENT_STOCK)."""
    actor.access.require(Action.STOCK_ADJUST)
    sku = clean_text(sku, what="sku", max_length=64, required=True)
    warehouse = clean_text(warehouse, what="warehouse", max_length=32, required=True)
    delta = _quantity(delta, "delta")
    if delta == 0 or abs(delta) > MAX_QUANTITY:
        raise BadInput(f"delta is a non-zero whole number of at most {MAX_QUANTITY:,} either way")
    why = clean_text(reason, what="reason", max_length=200, required=True)
    now = now or utcnow()
    kind = MovementReason.RECEIPT if delta > 0 else MovementReason.CORRECTION
    item = await _book(
        session,
        sku=sku,
        warehouse=warehouse,
        on_hand=delta,
        reserved=0,
        reason=kind,
        reference=why,
        who=_who(actor),
        at=now,
    )
    await audit.record(
        session=session,
        who=actor,
        action="stock.adjust",
        operation="adjustStock",
        target_type="StockItem",
        target_id=item.id,
        at=now,
        details={"sku": sku, "warehouse": warehouse, "delta": delta, "reason": why},
    )
    return item


@dataclass(frozen=True)
class MovementFilter:
    sku: str | None = None
    warehouse: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    reason: MovementReason | None = None


def movements_query(actor: Actor, flt: MovementFilter | None = None) -> Select[Any]:
    """The ledger for `stock:ledger` holders (finance, ops, purchasing), newest first by the
    caller's paging; what each may see of a movement is the field policy's."""
    actor.access.require(Action.STOCK_LEDGER)
    flt = flt or MovementFilter()
    stmt = select(StockMovement)
    if flt.sku is not None:
        stmt = stmt.where(
            StockMovement.sku == clean_text(flt.sku, what="sku", max_length=64, required=True)
        )
    if flt.warehouse is not None:
        warehouse = clean_text(flt.warehouse, what="warehouse", max_length=32, required=True)
        stmt = stmt.where(StockMovement.warehouse == warehouse)
    if flt.since is not None:
        stmt = stmt.where(StockMovement.at >= require_aware(flt.since))
    if flt.until is not None:
        stmt = stmt.where(StockMovement.at < require_aware(flt.until))
    if flt.reason is not None:
        stmt = stmt.where(StockMovement.reason == flt.reason.value)
    return stmt


async def open_ledger(*, session: AsyncSession, item: StockItem, at: dt.datetime) -> None:
    """The first movement of a new stock item: what it holds when the ledger starts."""
    session.add(
        StockMovement(
            at=at,
            sku=item.sku,
            warehouse=item.warehouse,
            on_hand_delta=item.on_hand,
            reserved_delta=item.reserved,
            reason=MovementReason.OPENING.value,
            reference="ledger opened",
            actor_id=None,
            actor_username="system",
            currency=item.currency,
            unit_cost_minor=item.unit_cost_minor,
        )
    )
