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
import functools
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, and_, bindparam, case, func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.access import Action
from domain.actor import SYSTEM_ORIGIN, Actor
from domain.audit import service as audit
from domain.audit.chain import canonical_json
from domain.audit.service import Subject
from domain.bulk import insert_rows
from domain.catalog.models import Product, StockItem
from domain.db import utcnow
from domain.errors import BadInput, Conflict, InsufficientStock, InvalidTransition, NotFound
from domain.events import service as events
from domain.inventory.models import (
    MovementReason,
    ReservationStatus,
    ReturnDisposition,
    ReturnInspection,
    StockAlert,
    StockCount,
    StockCountLine,
    StockMovement,
    StockPool,
    StockReservation,
    StockReservationLine,
    StockReturn,
    StockReturnLine,
)
from domain.notify.mail import Mailer, MailError
from domain.orders import picking
from domain.orders.models import Order, OrderLine
from domain.orders.rules import OrderStatus
from domain.tasks import service as tasks
from domain.users.models import User, UserRole
from domain.values import clean_text

HOLDING = (ReservationStatus.ACTIVE, ReservationStatus.CONFIRMED)
MAX_LINES = 100
MAX_QUANTITY = 1_000_000
MIN_TTL_SECONDS = 60
MAX_TTL_SECONDS = 7 * 24 * 3600
EXPIRE_BATCH = 500
SYSTEM = Subject(None, "system:reservations", (), SYSTEM_ORIGIN)
log = logging.getLogger("ordergate.inventory")


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


def _digest(lines: Sequence[LineInput], campaign: str | None = None) -> str:
    body = canonical_json(
        [[line.sku, line.warehouse, line.quantity] for line in lines]
        + ([["campaign", campaign]] if campaign is not None else [])
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _levels(table: Any) -> tuple[Any, ...]:
    """What a stock change returns: the row's id, levels and cost as the change left them,
    and its low-stock state (`_changed` reads them)."""
    c = table.c
    return (c.id, c.on_hand, c.reserved, c.currency, c.unit_cost_minor, c.safety_threshold,
            c.low_since)  # fmt: skip


# What a booking writes into the ledger, by bind parameter (named apart from the columns:
# SQLAlchemy reserves column names for SET and VALUES).
_LEDGER_PARAMS = {
    "at": "p_at",
    "sku": "p_sku",
    "warehouse": "p_warehouse",
    "on_hand_delta": "p_on_hand",
    "reserved_delta": "p_reserved",
    "reason": "p_reason",
    "reference": "p_reference",
    "actor_id": "p_actor_id",
    "actor_username": "p_actor_username",
}


def _ledger_param(column: str) -> Any:
    ledger = StockMovement.__table__
    return bindparam(_LEDGER_PARAMS[column], type_=ledger.c[column].type)


_MOVEMENT = insert(StockMovement.__table__).values(
    **{column: _ledger_param(column) for column in _LEDGER_PARAMS},
    currency=bindparam("p_currency"),
    unit_cost_minor=bindparam("p_cost"),
)


@functools.cache
def _booking(postgresql: bool) -> Any:
    """The conditional update of one stock item, built once (a booking runs on every
    reservation, and building and hashing the statement cost more than running it). On
    PostgreSQL its movement is written by the same statement; elsewhere by `_MOVEMENT`."""
    table = StockItem.__table__
    c = table.c
    new_on_hand = c.on_hand + _ledger_param("on_hand_delta")
    new_reserved = c.reserved + _ledger_param("reserved_delta")
    at = _ledger_param("at")
    # The low-stock edge, in the same statement: below the threshold, `low_since` keeps the
    # time it first went below (set now if it was not); back at or above it, cleared.
    low_since = case(
        (new_on_hand - new_reserved < c.safety_threshold, func.coalesce(c.low_since, at)),
        else_=None,
    )
    change = (
        update(table)
        .where(
            c.sku == _ledger_param("sku"),
            c.warehouse == _ledger_param("warehouse"),
            new_reserved >= 0,
            new_on_hand >= new_reserved,
        )
        .values(on_hand=new_on_hand, reserved=new_reserved, updated_at=at, low_since=low_since)
        .returning(*_levels(table))
    )
    if not postgresql:
        return change
    changed = change.cte("changed")
    moved = insert(StockMovement.__table__).from_select(
        [*_LEDGER_PARAMS, "currency", "unit_cost_minor"],
        select(
            *(_ledger_param(column) for column in _LEDGER_PARAMS),
            changed.c.currency,
            changed.c.unit_cost_minor,
        ),
    )
    return select(changed).add_cte(moved.cte("moved"))


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
) -> Any:
    """Change one stock item by (`on_hand`, `reserved`) if the result stays within
    0 ≤ reserved ≤ on_hand, with its movement and event; else INSUFFICIENT_STOCK (or
    NOT_FOUND for an unknown item), and nothing changed. Returns the row's levels as the
    change left them (`_levels`); an ORM copy of the item the session holds is stale now.

    The change locks the row until COMMIT, so it should be a transaction's last work: on
    PostgreSQL the update and its movement are one statement (a data-modifying CTE), and
    what follows in the transaction is its event and the COMMIT."""
    params = {
        "p_sku": sku,
        "p_warehouse": warehouse,
        "p_on_hand": on_hand,
        "p_reserved": reserved,
        "p_at": at,
        "p_reason": reason.value,
        "p_reference": reference[:100],
        "p_actor_id": who.user_id,
        "p_actor_username": who.username,
    }
    postgresql = session.get_bind().dialect.name == "postgresql"
    row = (await session.execute(_booking(postgresql), params)).one_or_none()
    if row is not None and not postgresql:
        await session.execute(
            _MOVEMENT, {**params, "p_currency": row.currency, "p_cost": row.unit_cost_minor}
        )
    if row is None:
        exists = await session.scalar(
            select(StockItem.id).where(StockItem.sku == sku, StockItem.warehouse == warehouse)
        )
        if exists is None:
            raise NotFound(f"no stock of {sku} in warehouse {warehouse}")
        raise InsufficientStock(
            f"not enough {sku} in {warehouse} for this change", sku=sku, warehouse=warehouse
        )
    _changed(session, sku, warehouse, row, reason, at)
    return row


async def _hold(
    session: AsyncSession, line: LineInput, *, reference: str, who: _Who, at: dt.datetime
) -> None:
    """Reserve one (summed) line from the main stock, or INSUFFICIENT_STOCK."""
    await _book(
        session,
        sku=line.sku,
        warehouse=line.warehouse,
        on_hand=0,
        reserved=line.quantity,
        reason=MovementReason.RESERVE,
        reference=reference,
        who=who,
        at=at,
    )


def _changed(
    session: AsyncSession,
    sku: str,
    warehouse: str,
    row: Any,
    reason: MovementReason,
    at: dt.datetime,
) -> None:
    """After a stock row changed (`row`: its id and levels as the change left them): the
    STOCK_CHANGED event, and the low-stock alert when the change crossed the threshold."""
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
    if row.low_since is not None and row.low_since == at:
        _alert_once(session, sku, warehouse, row.on_hand - row.reserved, row.safety_threshold, at)


_ALERTED = "ordergate.inventory.alerted"


def alerts_mark(session: AsyncSession) -> tuple[int, set[tuple[str, str]]] | None:
    """Which crossings this transaction has alerted, to restore when a savepoint holding later
    ones (and their alert rows) is rolled back (`restore_alerts`)."""
    alerted = session.info.get(_ALERTED)
    return (alerted[0], set(alerted[1])) if alerted is not None else None


def restore_alerts(session: AsyncSession, mark: tuple[int, set[tuple[str, str]]] | None) -> None:
    if mark is None:
        session.info.pop(_ALERTED, None)
    else:
        session.info[_ALERTED] = (mark[0], set(mark[1]))


def _alert_once(
    session: AsyncSession, sku: str, warehouse: str, available: int, threshold: int, at: dt.datetime
) -> None:
    """Available stock just crossed below the safety threshold: one alert, in this
    transaction (a second change of the same item in it is the same crossing)."""
    transaction = id(session.sync_session.get_transaction())
    owner, alerted = session.info.get(_ALERTED, (None, set()))
    if owner != transaction:
        alerted = set()
        session.info[_ALERTED] = (transaction, alerted)
    if (sku, warehouse) in alerted:
        return
    alerted.add((sku, warehouse))
    session.add(
        StockAlert(sku=sku, warehouse=warehouse, available=available, threshold=threshold, at=at)
    )


# ---- reservations ------------------------------------------------------------------------------


ORDER_REFERENCE_PREFIX = "order "


async def reserve(
    *,
    session: AsyncSession,
    actor: Actor,
    reference: str,
    lines: Sequence[LineInput],
    ttl_seconds: int | None = None,
    default_ttl_seconds: int = 900,
    campaign: str | None = None,
    now: dt.datetime | None = None,
) -> StockReservation:
    """Hold stock for a checkout under the caller's `reference` (the web shop's cart or
    order number). The same reference with the same lines again returns the reservation it
    made (a retried checkout), with other lines it is a CONFLICT. All lines or none.

    With a `campaign` (a promotion pool's name), the line of the pool's SKU and warehouse is
    drawn from the pool only — an empty pool is INSUFFICIENT_STOCK even when the main stock
    has units — and the other lines from the main stock."""
    actor.access.require(Action.STOCK_RESERVE)
    reference = clean_text(reference, what="reference", max_length=64, required=True)
    if reference.casefold().startswith(ORDER_REFERENCE_PREFIX):
        # The order centre names its orders' holds "order <number>": a checkout taking such a
        # reference would block that order's hold for ever (issue #30, L5).
        raise BadInput(f"a reference may not start with {ORDER_REFERENCE_PREFIX.strip()!r}")
    wanted = _summed(lines)
    ttl = default_ttl_seconds if ttl_seconds is None else _quantity(ttl_seconds, "ttlSeconds")
    if not MIN_TTL_SECONDS <= ttl <= MAX_TTL_SECONDS:
        raise BadInput(f"ttlSeconds must be between {MIN_TTL_SECONDS} and {MAX_TTL_SECONDS}")
    if campaign is not None:
        campaign = clean_text(campaign, what="campaign", max_length=64, required=True)
    digest = _digest(wanted, campaign)
    existing = await session.scalar(
        select(StockReservation).where(StockReservation.reference == reference)
    )
    if existing is not None:
        if existing.created_by != actor.username:
            raise Conflict(f"reference {reference} is taken")  # another account's checkout
        if existing.digest != digest:
            raise Conflict(f"reference {reference} already reserved other lines")
        return existing
    now = now or utcnow()
    who = _who(actor)
    pool = await _running_pool(session, campaign, now) if campaign is not None else None
    pooled = (pool.sku, pool.warehouse) if pool is not None else None
    # Everything but the stock first: the stock rows stay locked from their update to COMMIT,
    # and on a hot SKU every request queues on that lock — so the reservation, its lines and
    # its audit record are written before it, and only the updates, their events and the
    # COMMIT while it is held. Refused, it all rolls back.
    reservation = StockReservation(
        reference=reference,
        status=ReservationStatus.ACTIVE,
        expires_at=now + dt.timedelta(seconds=ttl),
        digest=digest,
        created_by=actor.username,
        created_at=now,
        lines=[
            StockReservationLine(
                sku=li.sku,
                warehouse=li.warehouse,
                quantity=li.quantity,
                pool_id=pool.id if pool is not None and (li.sku, li.warehouse) == pooled else None,
            )
            for li in wanted
        ],
    )
    session.add(reservation)
    await session.flush()
    await _audit(session, actor, "stock.reserve", "reserveStock", reservation, now)
    await audit.write_pending(session)
    for line in wanted:
        if pool is not None and (line.sku, line.warehouse) == pooled:
            await _draw(session, pool, line.quantity, now)
            continue
        await _hold(session, line, reference=f"reservation {reference}", who=who, at=now)
    return reservation


async def _locked(session: AsyncSession, actor: Actor, reservation_id: int) -> StockReservation:
    """The caller's own checkout hold, locked. A hold belongs to the account that made it:
    anyone else's, like one that does not exist, is NOT_FOUND (ids are sequential; issue #30,
    H3). An order's hold moves only with its order (paid, cancelled, shipped), never by hand."""
    reservation = await session.scalar(
        select(StockReservation)
        .where(StockReservation.id == reservation_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if reservation is None or reservation.created_by != actor.username:
        raise NotFound("no such reservation")
    if reservation.order_id is not None:
        raise Conflict(
            f"{reservation.reference} holds stock for its order; it moves only with the order",
            status=str(reservation.status),
        )
    return reservation


async def release(
    *, session: AsyncSession, actor: Actor, reservation_id: int, now: dt.datetime | None = None
) -> StockReservation:
    """Give the stock back (a cancelled checkout). Releasing a released one changes nothing."""
    actor.access.require(Action.STOCK_RESERVE)
    reservation = await _locked(session, actor, reservation_id)
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
    reservation = await _locked(session, actor, reservation_id)
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
        if line.pool_id is not None and await _refill(session, line.pool_id, line.quantity):
            continue  # back to its campaign's pool, still counted in `reserved`
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


# ---- promotion pools -------------------------------------------------------------------------


class PoolStatus(StrEnum):
    SCHEDULED = "SCHEDULED"  # its window has not begun: nothing can be drawn yet
    ACTIVE = "ACTIVE"
    CLOSED = "CLOSED"  # ended (or closed early); what was left went back


def pool_status(pool: StockPool, now: dt.datetime) -> PoolStatus:
    if pool.closed_at is not None:
        return PoolStatus.CLOSED
    return PoolStatus.SCHEDULED if now < pool.starts_at else PoolStatus.ACTIVE


async def create_pool(
    *,
    session: AsyncSession,
    actor: Actor,
    name: str,
    sku: str,
    warehouse: str,
    quantity: int,
    starts_at: dt.datetime,
    ends_at: dt.datetime,
    now: dt.datetime | None = None,
) -> StockPool:
    """Carve `quantity` out of the available stock of a SKU in a warehouse for a campaign
    window, in one conditional update (INSUFFICIENT_STOCK if it is not there): from now on
    only the campaign's reservations can take those units, and the campaign cannot take any
    other. The remainder goes back when the window ends (or `close_pool`)."""
    actor.access.require(Action.STOCK_POOL)
    name = clean_text(name, what="name", max_length=64, required=True)
    sku = clean_text(sku, what="sku", max_length=64, required=True)
    warehouse = clean_text(warehouse, what="warehouse", max_length=32, required=True)
    quantity = _quantity(quantity, "quantity")
    if not 1 <= quantity <= MAX_QUANTITY:
        raise BadInput(f"quantity must be between 1 and {MAX_QUANTITY:,}")
    starts_at, ends_at = require_aware(starts_at), require_aware(ends_at)
    now = now or utcnow()
    if ends_at <= starts_at or ends_at <= now:
        raise BadInput("endsAt must be after startsAt and in the future")
    if ends_at - starts_at > dt.timedelta(days=366):
        raise BadInput("a campaign window is at most a year")
    if await session.scalar(select(StockPool.id).where(StockPool.name == name)) is not None:
        raise Conflict(f"a pool named {name} exists")
    await _book(
        session,
        sku=sku,
        warehouse=warehouse,
        on_hand=0,
        reserved=quantity,
        reason=MovementReason.POOL,
        reference=f"pool {name}",
        who=_who(actor),
        at=now,
    )
    pool = StockPool(
        name=name,
        sku=sku,
        warehouse=warehouse,
        quantity=quantity,
        remaining=quantity,
        starts_at=starts_at,
        ends_at=ends_at,
        created_by=actor.username,
        created_at=now,
    )
    session.add(pool)
    await session.flush()
    await audit.record(
        session=session,
        who=actor,
        action="stock.pool_create",
        operation="createStockPool",
        target_type="StockPool",
        target_id=pool.id,
        at=now,
        details={
            "name": name,
            "sku": sku,
            "warehouse": warehouse,
            "quantity": quantity,
            "startsAt": starts_at.isoformat(),
            "endsAt": ends_at.isoformat(),
        },
    )
    return pool


async def _running_pool(session: AsyncSession, name: str, now: dt.datetime) -> StockPool:
    pool = await session.scalar(select(StockPool).where(StockPool.name == name))
    if pool is None:
        raise NotFound(f"no promotion pool named {name}")
    status = pool_status(pool, now)
    if status is not PoolStatus.ACTIVE or now >= pool.ends_at:
        raise Conflict(f"campaign {name} is not running", status=str(status))
    return pool


async def _draw(session: AsyncSession, pool: StockPool, quantity: int, now: dt.datetime) -> None:
    """Take units from a running pool in one conditional update; INSUFFICIENT_STOCK when it
    has fewer left (the main stock is never touched for the campaign)."""
    table = StockPool.__table__
    taken = (
        await session.execute(
            update(table)
            .where(
                table.c.id == pool.id,
                table.c.remaining >= quantity,
                table.c.closed_at.is_(None),
                table.c.ends_at > now,
            )
            .values(remaining=table.c.remaining - quantity)
            .returning(table.c.remaining)
        )
    ).one_or_none()
    if taken is None:
        raise InsufficientStock(
            f"campaign {pool.name} has fewer than {quantity} of {pool.sku} left",
            sku=pool.sku,
            warehouse=pool.warehouse,
        )


async def _refill(session: AsyncSession, pool_id: int, quantity: int) -> bool:
    """Units of a released reservation back to their pool, if it is still open."""
    table = StockPool.__table__
    back = await session.execute(
        update(table)
        .where(table.c.id == pool_id, table.c.closed_at.is_(None))
        .values(remaining=table.c.remaining + quantity)
        .returning(table.c.id)
    )
    return back.one_or_none() is not None


async def close_pool(
    *, session: AsyncSession, actor: Actor | Subject, pool_id: int, now: dt.datetime | None = None
) -> StockPool:
    """End a pool: what it has left goes back to the available stock in one audited move.
    Reservations already drawn from it keep their units. Closing a closed pool changes
    nothing."""
    if isinstance(actor, Actor):
        actor.access.require(Action.STOCK_POOL)
    pool = await session.scalar(
        select(StockPool)
        .where(StockPool.id == pool_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if pool is None:
        raise NotFound("no such promotion pool")
    if pool.closed_at is not None:
        return pool
    now = now or utcnow()
    left = pool.remaining
    if left:
        await _book(
            session,
            sku=pool.sku,
            warehouse=pool.warehouse,
            on_hand=0,
            reserved=-left,
            reason=MovementReason.POOL_RETURN,
            reference=f"pool {pool.name}",
            who=_who(actor),
            at=now,
        )
    pool.remaining = 0
    pool.returned = left
    pool.closed_at = now
    await session.flush()
    await audit.record(
        session=session,
        who=actor,
        action="stock.pool_close",
        operation="closeStockPool",
        target_type="StockPool",
        target_id=pool.id,
        at=now,
        details={"name": pool.name, "returned": left, "drawn": pool.quantity - left},
    )
    return pool


async def close_ended_pools(*, session: AsyncSession, now: dt.datetime) -> list[int]:
    """Close every open pool whose window has ended; returns their ids. The caller commits."""
    require_aware(now)
    ended = (
        await session.scalars(
            select(StockPool.id)
            .where(StockPool.closed_at.is_(None), StockPool.ends_at <= now)
            .order_by(StockPool.id)
            .limit(EXPIRE_BATCH)
        )
    ).all()
    for pool_id in ended:
        await close_pool(session=session, actor=SYSTEM, pool_id=pool_id, now=now)
    return list(ended)


def pools_query(actor: Actor, status: PoolStatus | None, now: dt.datetime) -> Select[Any]:
    actor.access.require(Action.STOCK_POOL)
    stmt = select(StockPool)
    if status is PoolStatus.CLOSED:
        stmt = stmt.where(StockPool.closed_at.is_not(None))
    elif status is PoolStatus.SCHEDULED:
        stmt = stmt.where(StockPool.closed_at.is_(None), StockPool.starts_at > now)
    elif status is PoolStatus.ACTIVE:
        stmt = stmt.where(StockPool.closed_at.is_(None), StockPool.starts_at <= now)
    return stmt.order_by(StockPool.ends_at, StockPool.id)


# ---- returns -----------------------------------------------------------------------------------

RETURN_SLA = dt.timedelta(hours=2)


@dataclass(frozen=True)
class ReturnLineInput:
    order_line_id: int
    quantity: int
    disposition: ReturnDisposition


async def register_return(
    *,
    session: AsyncSession,
    actor: Actor,
    order_id: int,
    inspected_at: dt.datetime,
    lines: Sequence[ReturnLineInput],
    now: dt.datetime | None = None,
) -> StockReturn:
    """The warehouse registers what came back, after inspecting it: RESTOCK lines return to
    on hand in the warehouse the order was picked from (reason RETURN), DAMAGED lines are
    recorded only. Each order line is registered once: the same registration again returns
    the first (a retry), a different one for a line already registered is a CONFLICT. A
    registration more than two hours after `inspectedAt` is `slaBreached`."""
    actor.access.require(Action.RETURN_REGISTER)
    inspected_at = require_aware(inspected_at)
    now = now or utcnow()
    if inspected_at > now + dt.timedelta(minutes=5):
        raise BadInput("inspectedAt is in the future")
    if not 1 <= len(lines) <= MAX_LINES:
        raise BadInput(f"a return has 1 to {MAX_LINES} lines")
    wanted: dict[int, ReturnLineInput] = {}
    for line in lines:
        quantity = _quantity(line.quantity, "quantity")
        if not 1 <= quantity <= MAX_QUANTITY:
            raise BadInput(f"quantity must be between 1 and {MAX_QUANTITY:,}")
        if line.order_line_id in wanted:
            raise BadInput("an order line appears twice in the return")
        wanted[line.order_line_id] = line
    order = await _returnable_order(session, order_id)
    order_lines = {
        li.id: li
        for li in (
            await session.scalars(select(OrderLine).where(OrderLine.order_id == order_id))
        ).all()
    }
    for line_id, line in wanted.items():
        if line_id not in order_lines:
            raise NotFound(f"order {order.number} has no line {line_id}")
        if line.quantity > order_lines[line_id].quantity:
            raise BadInput(
                f"line {line_id} sold {order_lines[line_id].quantity}, not {line.quantity}"
            )
    already = (
        await session.scalars(
            select(StockReturnLine).where(StockReturnLine.order_line_id.in_(list(wanted)))
        )
    ).all()
    if already:
        earlier = {r.return_id for r in already}
        same = len(earlier) == 1 and {
            (r.order_line_id, r.quantity, r.disposition) for r in already
        } == {(i, w.quantity, w.disposition) for i, w in wanted.items()}
        existing = await session.get(StockReturn, next(iter(earlier))) if same else None
        if existing is not None and len(existing.lines) == len(wanted):
            return existing  # the same registration again
        raise Conflict(
            "already registered: "
            + ", ".join(f"line {r.order_line_id}" for r in sorted(already, key=lambda r: r.id))
        )
    warehouse = await _order_warehouse(session, order_id)
    returned = StockReturn(
        order_id=order_id,
        inspected_at=inspected_at,
        registered_at=now,
        sla_breached=now - inspected_at > RETURN_SLA,
        registered_by=actor.username,
    )
    for line_id, line in sorted(wanted.items()):
        sku = order_lines[line_id].sku
        home = await _home(session, warehouse, sku)
        if line.disposition is ReturnDisposition.RESTOCK:
            await _book(
                session,
                sku=sku,
                warehouse=home,
                on_hand=line.quantity,
                reserved=0,
                reason=MovementReason.RETURN,
                reference=f"return of order {order.number}",
                who=_who(actor),
                at=now,
            )
        returned.lines.append(
            StockReturnLine(
                order_line_id=line_id,
                sku=sku,
                warehouse=home,
                quantity=line.quantity,
                disposition=line.disposition,
            )
        )
    session.add(returned)
    await session.flush()
    # The inspection it follows, if the inspection step recorded one: its clock stops.
    waiting = await _waiting_inspection(session, order_id)
    if waiting is not None:
        waiting.return_id = returned.id
        await session.flush()
    await audit.record(
        session=session,
        who=actor,
        action="stock.return",
        operation="registerReturn",
        target_type="Order",
        target_id=order_id,
        at=now,
        details={
            "returnId": returned.id,
            "number": order.number,
            "inspectedAt": inspected_at.isoformat(),
            "slaBreached": returned.sla_breached,
            "lines": [
                [li.order_line_id, li.sku, li.quantity, str(li.disposition)]
                for li in returned.lines
            ],
        },
    )
    return returned


async def _returnable_order(session: AsyncSession, order_id: int) -> Order:
    """The order a parcel comes back from, locked: it must have shipped."""
    order = await session.scalar(select(Order).where(Order.id == order_id).with_for_update())
    if order is None:
        raise NotFound("no such order")
    if order.status not in (OrderStatus.SHIPPED, OrderStatus.COMPLETED):
        raise InvalidTransition(
            f"order {order.number} is {order.status}: only shipped orders come back",
            current=str(order.status),
        )
    return order


async def _waiting_inspection(session: AsyncSession, order_id: int) -> ReturnInspection | None:
    """The order's inspected parcel whose return is not registered yet, if any."""
    return await session.scalar(
        select(ReturnInspection).where(
            ReturnInspection.order_id == order_id, ReturnInspection.return_id.is_(None)
        )
    )


async def record_inspection(
    *,
    session: AsyncSession,
    actor: Actor,
    order_id: int,
    inspected_at: dt.datetime,
    now: dt.datetime | None = None,
) -> ReturnInspection:
    """The inspection step: a returned parcel of a shipped order was inspected. Its return
    should be registered within two hours; past that, the `stock.returns-overdue` job raises a
    task for the warehouse. Recording the same order's open inspection again changes nothing."""
    actor.access.require(Action.RETURN_REGISTER)
    inspected_at = require_aware(inspected_at)
    now = now or utcnow()
    if inspected_at > now + dt.timedelta(minutes=5):
        raise BadInput("inspectedAt is in the future")
    order = await _returnable_order(session, order_id)
    waiting = await _waiting_inspection(session, order_id)
    if waiting is not None:
        return waiting
    inspection = ReturnInspection(
        order_id=order_id, inspected_at=inspected_at, recorded_by=actor.username, recorded_at=now
    )
    session.add(inspection)
    await session.flush()
    await audit.record(
        session=session,
        who=actor,
        action="stock.return_inspected",
        operation="recordReturnInspection",
        target_type="Order",
        target_id=order_id,
        at=now,
        details={"number": order.number, "inspectedAt": inspected_at.isoformat()},
    )
    return inspection


async def flag_overdue_returns(*, session: AsyncSession, now: dt.datetime) -> list[int]:
    """Inspected parcels still unregistered two hours after inspection: one task each for
    the warehouse; returns the new tasks' ids. The caller commits."""
    require_aware(now)
    overdue = (
        await session.scalars(
            select(ReturnInspection)
            .where(
                ReturnInspection.return_id.is_(None),
                ReturnInspection.overdue_task_id.is_(None),
                # Exactly two hours is still on time (`sla_breached` agrees): overdue after.
                ReturnInspection.inspected_at < now - RETURN_SLA,
            )
            .order_by(ReturnInspection.inspected_at, ReturnInspection.id)
            .limit(EXPIRE_BATCH)
            .with_for_update(skip_locked=True)
        )
    ).all()
    raised = []
    for inspection in overdue:
        number = await session.scalar(select(Order.number).where(Order.id == inspection.order_id))
        task = await tasks.raise_task(
            session,
            kind="RETURN_OVERDUE",
            title=f"Register the return of order {number}: inspected "
            f"{inspection.inspected_at.isoformat()}, over two hours ago",
            details={
                "orderId": inspection.order_id,
                "number": number,
                "inspectedAt": inspection.inspected_at.isoformat(),
                "inspectedBy": inspection.recorded_by,
            },
            by=SYSTEM,
            assignee_role="warehouse",
            dedupe_key=f"return-overdue:{inspection.id}",
            due_at=now,
            now=now,
        )
        if task is not None:
            inspection.overdue_task_id = task.id
            raised.append(task.id)
    await session.flush()
    return raised


async def _order_quantities(session: AsyncSession, order_id: int) -> dict[str, int]:
    """An order's units per SKU, its lines of one SKU summed."""
    total: dict[str, int] = {}
    for sku, quantity in (
        await session.execute(
            select(OrderLine.sku, OrderLine.quantity).where(OrderLine.order_id == order_id)
        )
    ).all():
        total[sku] = total.get(sku, 0) + quantity
    return total


async def _order_warehouse(session: AsyncSession, order_id: int) -> str | None:
    """The warehouse an order was picked from, else the one its units were held in."""
    return await session.scalar(
        select(picking.PickingList.warehouse).where(picking.PickingList.order_id == order_id)
    ) or await session.scalar(
        select(StockReservationLine.warehouse)
        .join(StockReservation)
        .where(StockReservation.order_id == order_id)
        .limit(1)
    )


async def _home(session: AsyncSession, warehouse: str | None, sku: str) -> str:
    """Where an order's units of `sku` come from or go back to: its warehouse if that stocks
    the SKU, else the warehouse holding most of it."""
    if warehouse is not None and await session.scalar(
        select(StockItem.id).where(StockItem.sku == sku, StockItem.warehouse == warehouse)
    ):
        return warehouse
    return await _fullest(session, sku)


async def _fullest(session: AsyncSession, sku: str) -> str:
    """The warehouse holding most of a SKU: where a return goes when its order names none."""
    home = await session.scalar(
        select(StockItem.warehouse)
        .where(StockItem.sku == sku)
        .order_by(StockItem.on_hand.desc(), StockItem.warehouse)
        .limit(1)
    )
    if home is None:
        raise NotFound(f"no warehouse stocks {sku}")
    return home


def returns_query(
    actor: Actor, *, order_id: int | None = None, sla_breached: bool | None = None
) -> Select[Any]:
    actor.access.require(Action.RETURN_REGISTER)
    stmt = select(StockReturn)
    if order_id is not None:
        stmt = stmt.where(StockReturn.order_id == order_id)
    if sla_breached is not None:
        stmt = stmt.where(StockReturn.sla_breached.is_(sla_breached))
    return stmt


# ---- counts ------------------------------------------------------------------------------------

TRACE_ABOVE_BASIS_POINTS = 300  # a discrepancy above 3% is traced
MAX_COUNT_LINES = 2000


@dataclass(frozen=True)
class CountLineInput:
    sku: str
    counted: int


def delta_basis_points(system: int, counted: int) -> int:
    """(counted - system) / system in hundredths of a percent, rounded half away from zero;
    a count of something the system holds none of is +100% (10000)."""
    if system == 0:
        return 0 if counted == 0 else 10000
    scaled = abs(counted - system) * 10000
    magnitude = (scaled + system // 2) // system  # integer rounding: no floats
    return magnitude if counted >= system else -magnitude


async def submit_count(
    *,
    session: AsyncSession,
    actor: Actor,
    warehouse: str,
    counted_at: dt.datetime,
    lines: Sequence[CountLineInput],
    now: dt.datetime | None = None,
) -> StockCount:
    """Compare a physical count with the system's on-hand quantities as they were at
    `counted_at` (today's on hand less every movement booked after it). A SKU whose
    discrepancy exceeds 3% gets a trace task for the warehouse, listing every movement since
    that SKU's previous count. The count corrects nothing by itself: the warehouse books the
    correction with `adjustStock` once the trace explains the difference."""
    actor.access.require(Action.STOCK_COUNT)
    warehouse = clean_text(warehouse, what="warehouse", max_length=32, required=True)
    counted_at = require_aware(counted_at)
    now = now or utcnow()
    if counted_at > now + dt.timedelta(minutes=5):
        raise BadInput("countedAt is in the future")
    if not 1 <= len(lines) <= MAX_COUNT_LINES:
        raise BadInput(f"a count has 1 to {MAX_COUNT_LINES} lines")
    wanted: dict[str, int] = {}
    for line in lines:
        sku = clean_text(line.sku, what="sku", max_length=64, required=True)
        counted = _quantity(line.counted, "counted")
        if not 0 <= counted <= MAX_QUANTITY:
            raise BadInput(f"counted must be between 0 and {MAX_QUANTITY:,}")
        if sku in wanted:
            raise BadInput(f"{sku} appears twice in the count")
        wanted[sku] = counted
    on_hand = dict(
        (
            await session.execute(
                select(StockItem.sku, StockItem.on_hand).where(
                    StockItem.warehouse == warehouse, StockItem.sku.in_(list(wanted))
                )
            )
        ).all()
    )
    missing = sorted(set(wanted) - set(on_hand))
    if missing:
        raise NotFound(f"no stock of {', '.join(missing[:10])} in warehouse {warehouse}")
    # A count dated on a closed business day changes that day's stock accuracy: its facts
    # are computed again (the day either side in UTC covers any business timezone).
    from domain.kpis import service as kpis

    await kpis.invalidate(
        session,
        [counted_at.date() + dt.timedelta(days=n) for n in (-1, 0, 1)],
        [kpis.STOCK_ACCURACY],
    )
    since = dict(
        (
            await session.execute(
                select(StockMovement.sku, func.sum(StockMovement.on_hand_delta))
                .where(
                    StockMovement.warehouse == warehouse,
                    StockMovement.sku.in_(list(wanted)),
                    StockMovement.at > counted_at,
                )
                .group_by(StockMovement.sku)
            )
        ).all()
    )
    count = StockCount(
        warehouse=warehouse, counted_at=counted_at, submitted_at=now, submitted_by=actor.username
    )
    traced: list[tuple[str, int, int, int]] = []
    for sku in sorted(wanted):
        system = on_hand[sku] - int(since.get(sku) or 0)
        bp = delta_basis_points(system, wanted[sku])
        over = abs(bp) > TRACE_ABOVE_BASIS_POINTS
        count.lines.append(
            StockCountLine(
                sku=sku, system=system, counted=wanted[sku], delta_basis_points=bp, traced=over
            )
        )
        if over:
            traced.append((sku, system, wanted[sku], bp))
    session.add(count)
    await session.flush()
    for sku, system, counted, bp in traced:
        await _raise_trace(session, actor, count, sku, system, counted, bp, now)
    await audit.record(
        session=session,
        who=actor,
        action="stock.count",
        operation="submitStockCount",
        target_type="StockCount",
        target_id=count.id,
        at=now,
        details={
            "warehouse": warehouse,
            "countedAt": counted_at.isoformat(),
            "lines": len(count.lines),
            "matching": sum(1 for li in count.lines if li.system == li.counted),
            "traced": [sku for sku, *_ in traced][:200],
        },
    )
    return count


async def _raise_trace(
    session: AsyncSession,
    actor: Actor,
    count: StockCount,
    sku: str,
    system: int,
    counted: int,
    bp: int,
    now: dt.datetime,
) -> None:
    """A trace task: the discrepancy and every movement of the SKU in the warehouse since its
    previous count (or all of them, for a first count)."""
    previous = await session.scalar(
        select(func.max(StockCount.counted_at))
        .join(StockCountLine, StockCountLine.count_id == StockCount.id)
        .where(
            StockCount.warehouse == count.warehouse,
            StockCountLine.sku == sku,
            StockCount.id != count.id,
            StockCount.counted_at < count.counted_at,
        )
    )
    stmt = select(StockMovement).where(
        StockMovement.sku == sku, StockMovement.warehouse == count.warehouse
    )
    if previous is not None:
        stmt = stmt.where(StockMovement.at > previous)
    moves = (await session.scalars(stmt.order_by(StockMovement.id).limit(501))).all()
    await tasks.raise_task(
        session,
        kind="STOCK_TRACE",
        title=f"Trace {sku} in {count.warehouse}: counted {counted}, system {system} "
        f"({format_percent(bp)}%)",
        details={
            "countId": count.id,
            "sku": sku,
            "warehouse": count.warehouse,
            "countedAt": count.counted_at.isoformat(),
            "system": system,
            "counted": counted,
            "deltaPercent": format_percent(bp),
            "since": previous.isoformat() if previous is not None else None,
            "movements": [
                {
                    "at": m.at.isoformat(),
                    "reason": m.reason,
                    "onHandDelta": m.on_hand_delta,
                    "reservedDelta": m.reserved_delta,
                    "reference": m.reference,
                    "actor": m.actor_username,
                }
                for m in moves[:500]
            ],
            "truncated": len(moves) > 500,
        },
        by=actor,
        assignee_role="warehouse",
        dedupe_key=f"trace:{count.warehouse}:{sku}",
        now=now,
    )


def format_percent(basis_points: int) -> str:
    """Hundredths of a percent as a signed decimal string: 345 -> "3.45", -50 -> "-0.50"."""
    sign = "-" if basis_points < 0 else ""
    whole, part = divmod(abs(basis_points), 100)
    return f"{sign}{whole}.{part:02d}"


async def remind_counts(*, session: AsyncSession, day: dt.date, now: dt.datetime) -> list[int]:
    """The weekly count reminder: one task per warehouse for the week of `day` (a business
    day), raised once however often the job runs. Returns the new tasks' ids."""
    week = day.isocalendar()
    warehouses = (
        await session.scalars(select(StockItem.warehouse).distinct().order_by(StockItem.warehouse))
    ).all()
    raised = []
    for warehouse in warehouses:
        task = await tasks.raise_task(
            session,
            kind="STOCK_COUNT_DUE",
            title=f"Weekly stock count of {warehouse} (week {week.week} of {week.year})",
            details={"warehouse": warehouse, "week": f"{week.year}-W{week.week:02d}"},
            by=SYSTEM,
            assignee_role="warehouse",
            dedupe_key=f"count-due:{warehouse}:{week.year}-W{week.week:02d}",
            due_at=now + dt.timedelta(days=2),
            now=now,
        )
        if task is not None:
            raised.append(task.id)
    return raised


# ---- low-stock alerts --------------------------------------------------------------------------

ALERT_ROLES = ("purchasing", "ops")
MAX_MAIL_ATTEMPTS = 20


async def mail_alerts(*, sessions: Any, mailer: Mailer, now: dt.datetime, limit: int = 50) -> int:
    """Mail the pending low-stock alerts to every active purchasing and operations account
    with an email address, one message per alert; returns how many were handled. A failed
    send is tried again on the next round (up to 20 times), the alert row locked meanwhile
    (SKIP LOCKED: two workers never mail one alert twice at once)."""
    async with sessions() as session:
        pending = list(
            (
                await session.scalars(
                    select(StockAlert)
                    .where(
                        StockAlert.notified_at.is_(None),
                        StockAlert.attempts < MAX_MAIL_ATTEMPTS,
                    )
                    .order_by(StockAlert.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
        )
        if not pending:
            await session.commit()
            return 0
        recipients = sorted(
            set(
                (
                    await session.scalars(
                        select(User.email)
                        .join(UserRole, UserRole.user_id == User.id)
                        .where(
                            UserRole.role.in_(ALERT_ROLES),
                            User.disabled.is_(False),
                            User.email.is_not(None),
                        )
                    )
                ).all()
            )
        )
        names = dict(
            (
                await session.execute(
                    select(Product.sku, Product.name).where(
                        Product.sku.in_({a.sku for a in pending})
                    )
                )
            ).all()
        )
        sent = []
        for alert in pending:
            if not recipients:
                alert.notified_at, alert.recipients = now, 0
                log.warning("low stock, and nobody to tell", extra={"sku": alert.sku})
                continue
            msg = mailer.message(
                to=list(recipients),
                subject=f"Low stock: {alert.sku} in {alert.warehouse} "
                f"({alert.available} available, threshold {alert.threshold})",
                body=(
                    f"{alert.sku} {names.get(alert.sku, '')} in warehouse {alert.warehouse}\\n"
                    f"Available: {alert.available} (on hand less reserved)\\n"
                    f"Safety threshold: {alert.threshold}\\n"
                    f"Fell below it at: {alert.at.isoformat()}\\n\\n"
                    "You receive one mail per crossing: none again until the stock recovers "
                    "to the threshold.\\n"
                ),
                at=now,
            )
            try:
                await mailer.send(msg)
            except MailError as exc:
                alert.attempts += 1
                alert.last_error = str(exc)[:500]
                log.warning("low-stock mail failed", extra={"alert": alert.id, "error": str(exc)})
                continue
            alert.notified_at, alert.recipients = now, len(recipients)
            sent.append(alert)
        if sent:
            await audit.record(
                session=session,
                who=SYSTEM,
                action="stock.alert_mailed",
                operation="lowStockAlert",
                target_type="StockAlert",
                at=now,
                details={
                    "alerts": [[a.id, a.sku, a.warehouse, a.available] for a in sent][:200],
                    "recipients": len(recipients),
                },
            )
        await session.commit()
        return len(pending)


def alerts_query(actor: Actor) -> Select[Any]:
    actor.access.require(Action.STOCK_ALERTS)
    return select(StockAlert)


# ---- orders -----------------------------------------------------------------------------------


async def hold_for_order(
    session: AsyncSession,
    *,
    number: str,
    wanted: dict[str, int],
    who: Actor,
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
    try:
        async with session.begin_nested():
            for line in lines:
                await _hold(session, line, reference=f"order {number}", who=_who(who), at=now)
    except InsufficientStock:  # taken since it was read, by a concurrent reservation
        return None
    return lines


class StockMoved(Exception):
    """A planned hold no longer fits: stock was taken since the plan read it."""


@dataclass(frozen=True)
class HoldPlan:
    """Where each order of a batch will hold its stock (its lines, or None: short), and the
    ledger parts per SKU and warehouse, decided from one read (`plan_holds`)."""

    chosen: list[list[LineInput] | None]
    parts: dict[tuple[str, str], list[tuple[str, int]]]


async def plan_holds(
    session: AsyncSession, *, orders: Sequence[tuple[str, dict[str, int]]]
) -> HoldPlan:
    """For a batch of (number, sku -> units): each order's warehouse chosen as
    `hold_for_order` would, in the batch's order and counting what the orders before it take,
    from one read of the stock. Nothing is locked or written: `apply_holds` writes the plan,
    as late in the transaction as it can, so the stock rows are locked only until commit."""
    stock = (
        await session.execute(
            select(StockItem.warehouse, StockItem.sku, StockItem.on_hand - StockItem.reserved)
            .where(StockItem.sku.in_(sorted({sku for _, wanted in orders for sku in wanted})))
            .order_by(StockItem.warehouse)
        )
    ).all()
    supply: dict[str, dict[str, int]] = {}
    for warehouse, sku, available in stock:
        supply.setdefault(warehouse, {})[sku] = available
    chosen: list[list[LineInput] | None] = []
    parts: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for number, wanted in orders:
        able = [
            w for w, has in supply.items() if all(has.get(s, 0) >= q for s, q in wanted.items())
        ]
        if not able:
            chosen.append(None)
            continue
        warehouse = max(able, key=lambda w: (sum(supply[w].values()), [-ord(c) for c in w]))
        for sku, quantity in wanted.items():
            supply[warehouse][sku] -= quantity
            parts.setdefault((sku, warehouse), []).append((f"order {number}", quantity))
        chosen.append([LineInput(sku, warehouse, wanted[sku]) for sku in sorted(wanted)])
    return HoldPlan(chosen, parts)


async def lock_stock(session: AsyncSession, skus: set[str]) -> None:
    """Lock every stock row of these SKUs, in the order `apply_holds` writes them (SKU, then
    warehouse): what a plan then reads stays true until it is written, and changes made to
    them in another order cannot deadlock."""
    if skus:
        await session.execute(
            select(StockItem.id)
            .where(StockItem.sku.in_(sorted(skus)))
            .order_by(StockItem.sku, StockItem.warehouse)
            .with_for_update()
        )


async def apply_holds(
    session: AsyncSession, plan: HoldPlan, *, who: Actor, now: dt.datetime
) -> None:
    """Write a plan in three statements whatever the batch's size: lock its stock rows in one
    order for every batch (SKU, then warehouse: concurrent batches cannot deadlock), raise
    each row's reserved count by the batch's total for it where it still fits (one
    conditional UPDATE), and write one ledger movement per order and SKU; then an event per
    row with the levels it left, and the low-stock alerts it crossed. StockMoved when a total
    no longer fits (stock taken since the plan read it): the caller rolls the batch back and
    plans again."""
    if not plan.parts:
        return
    table = StockItem.__table__
    keys = sorted(plan.parts)
    totals = {key: sum(q for _, q in plan.parts[key]) for key in keys}
    where = tuple_(table.c.sku, table.c.warehouse).in_(keys)
    await session.execute(
        select(table.c.id).where(where).order_by(table.c.sku, table.c.warehouse).with_for_update()
    )
    delta = case(
        *(
            (and_(table.c.sku == sku, table.c.warehouse == warehouse), totals[(sku, warehouse)])
            for sku, warehouse in keys
        ),
        else_=0,
    )
    new_reserved = table.c.reserved + delta
    low_since = case(
        (
            table.c.on_hand - new_reserved < table.c.safety_threshold,
            func.coalesce(table.c.low_since, now),
        ),
        else_=None,
    )
    rows = (
        await session.execute(
            update(table)
            .where(where, table.c.on_hand >= new_reserved)
            .values(reserved=new_reserved, updated_at=now, low_since=low_since)
            .returning(table.c.sku, table.c.warehouse, *_levels(table))
        )
    ).all()
    if len(rows) != len(keys):
        missing = sorted(set(keys) - {(r.sku, r.warehouse) for r in rows})
        raise StockMoved(f"{missing[0][0]} in {missing[0][1]} was taken since it was read")
    by_key = {(r.sku, r.warehouse): r for r in rows}
    actor = _who(who)
    await insert_rows(
        session,
        StockMovement.__table__,
        [
            {
                "at": now,
                "sku": sku,
                "warehouse": warehouse,
                "on_hand_delta": 0,
                "reserved_delta": quantity,
                "reason": MovementReason.RESERVE.value,
                "reference": reference[:100],
                "actor_id": actor.user_id,
                "actor_username": actor.username,
                "currency": by_key[(sku, warehouse)].currency,
                "unit_cost_minor": by_key[(sku, warehouse)].unit_cost_minor,
            }
            for sku, warehouse in keys
            for reference, quantity in plan.parts[(sku, warehouse)]
        ],
    )
    for sku, warehouse in keys:
        _changed(session, sku, warehouse, by_key[(sku, warehouse)], MovementReason.RESERVE, now)


async def attach_many(
    session: AsyncSession,
    *,
    holds: Sequence[tuple[int, str, list[LineInput], bool]],
    ttl_seconds: int,
    created_by: str,
    now: dt.datetime,
) -> None:
    """The reservation records of stock a plan holds, tied to their orders — (order id,
    number, lines, paid) each: ACTIVE until paid, or CONFIRMED for an order that arrived
    paid — as two multi-row INSERTs."""
    if not holds:
        return
    ids = await insert_rows(
        session,
        StockReservation.__table__,
        [
            {
                "reference": f"order {number}",
                "order_id": order_id,
                "status": ReservationStatus.CONFIRMED if paid else ReservationStatus.ACTIVE,
                "expires_at": now + dt.timedelta(seconds=ttl_seconds),
                "digest": _digest(lines),
                "created_by": created_by,
                "created_at": now,
            }
            for order_id, number, lines, paid in holds
        ],
        return_ids=True,
    )
    await insert_rows(
        session,
        StockReservationLine.__table__,
        [
            {
                "reservation_id": reservation_id,
                "sku": li.sku,
                "warehouse": li.warehouse,
                "quantity": li.quantity,
            }
            for reservation_id, (_, _, lines, _) in zip(ids, holds, strict=True)
            for li in lines
        ],
    )


async def short_on_arrival(
    session: AsyncSession,
    *,
    number: str,
    wanted: dict[str, int],
    who: Actor,
    now: dt.datetime,
) -> None:
    """An order arrived paid and no warehouse has all of it to hold: the sale is made, so it
    lands paid and holds nothing, and operations get a STOCK_SHORT task to decide (wait for
    a delivery, split it, or agree a refund with the buyer) before it is promised again."""
    await tasks.raise_task(
        session,
        kind="STOCK_SHORT",
        title=f"Order {number} arrived paid, and no warehouse has all of it in stock",
        details={"order": number, "wanted": dict(sorted(wanted.items()))},
        by=who,
        assignee_role="ops",
        dedupe_key=f"short:{number}",
        now=now,
    )


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
    (on hand and reserved both go down). An order that holds nothing (it arrived paid, or its
    hold expired) still takes its units out of on hand when it ships (`_ship_unheld`)."""
    if to not in (OrderStatus.PAID, OrderStatus.CANCELLED, OrderStatus.SHIPPED):
        return
    reservation = await session.scalar(
        select(StockReservation)
        .where(StockReservation.order_id == order_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    lapsed = reservation is not None and reservation.status is ReservationStatus.EXPIRED
    if lapsed and to is OrderStatus.PAID:  # paid after its hold lapsed: hold again, if it can
        await _hold_again(session, reservation, order_id=order_id, who=who, now=now)  # type: ignore[arg-type]
        return
    if reservation is None or reservation.status not in HOLDING:
        if to is OrderStatus.SHIPPED:
            await _ship_unheld(session, order_id=order_id, number=number, who=who, now=now)
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


async def _hold_again(
    session: AsyncSession,
    reservation: StockReservation,
    *,
    order_id: int,
    who: Actor,
    now: dt.datetime,
) -> None:
    """An order paid after its hold expired: hold its units again (confirmed), from whichever
    warehouse can supply them now; if none can, it holds nothing and takes its units out of
    on hand when it ships."""
    number = reservation.reference.removeprefix("order ")
    wanted = await _order_quantities(session, order_id)
    lines = await hold_for_order(session, number=number, wanted=wanted, who=who, now=now)
    if lines is None:
        return
    reservation.lines.clear()
    await session.flush()
    reservation.lines.extend(
        StockReservationLine(sku=li.sku, warehouse=li.warehouse, quantity=li.quantity)
        for li in lines
    )
    reservation.status = ReservationStatus.CONFIRMED
    reservation.digest = _digest(lines)
    reservation.ended_at = None
    await session.flush()


async def _ship_unheld(
    session: AsyncSession, *, order_id: int, number: str, who: Actor, now: dt.datetime
) -> None:
    """An order that held no stock ships: its units leave on hand in the warehouse it was
    picked from (reason SHIP). Where the books cannot take them — fewer available than
    shipped, so the stock record is wrong — shipping is not stopped: the warehouse gets a
    STOCK_TRACE task to find out why, and nothing is booked for that SKU."""
    shipped = await _order_quantities(session, order_id)
    warehouse = await _order_warehouse(session, order_id)
    for sku in sorted(shipped):
        home = await _home(session, warehouse, sku)
        try:
            async with session.begin_nested():
                await _book(
                    session,
                    sku=sku,
                    warehouse=home,
                    on_hand=-shipped[sku],
                    reserved=0,
                    reason=MovementReason.SHIP,
                    reference=f"order {number}",
                    who=_who(who),
                    at=now,
                )
        except InsufficientStock:
            await tasks.raise_task(
                session,
                kind="STOCK_TRACE",
                title=f"Order {number} shipped {shipped[sku]} of {sku} from {home}, more than "
                "the books had available",
                details={"sku": sku, "warehouse": home, "shipped": shipped[sku], "order": number},
                by=who,
                assignee_role="warehouse",
                dedupe_key=f"trace:{home}:{sku}",
                now=now,
            )


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
    row = await _book(
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
        target_id=row.id,
        at=now,
        details={"sku": sku, "warehouse": warehouse, "delta": delta, "reason": why},
    )
    item = await session.get(StockItem, row.id, populate_existing=True)
    assert item is not None
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
