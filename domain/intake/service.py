"""Channel intake: orders from Taobao, JD, Pinduoduo and the web shop, landing exactly once.

`ingest` takes a batch (up to `MAX_BATCH`) from one channel's service account. Each order is
keyed by `(channel, externalId)`; one bad order is REJECTED with its code while the rest of the
batch lands:

- new key: CREATED, with its customer (domain/customers/matching.py: linked when certain,
  else created, doubtful pairs queued for review), its
  `businessDay` in the business timezone, and — if it arrives paid — its picking list;
- same key, same content: REPLAYED, the original order, nothing written;
- same key, a later channel status (paid, cancelled by the buyer, shipped with carrier and
  tracking): UPDATED, moved along the lifecycle rules step by step, each step recorded;
- same key, different immutable content (lines, money, buyer, address, creation time):
  REJECTED with CONFLICT.

New orders land set-based (`_land`: one multi-row INSERT per table, in one savepoint);
updates go one by one through `orders.service.move`, as `transitionOrder` does. Two
submissions of one key racing meet at the unique constraint: the loser's bulk savepoint rolls
back and its orders are decided again one by one, reading the winner's order, so there is one
order. The batch is audited as one event listing every order's outcome (`order.ingest`).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlalchemy import ARRAY, BigInteger, bindparam, func, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from domain.access import Action
from domain.actor import Actor
from domain.addresses import PostalAddress
from domain.audit import service as audit
from domain.audit.chain import canonical_json
from domain.bulk import insert_rows
from domain.catalog.models import Product, StockItem
from domain.customers import matching
from domain.db import is_deadlock, utcnow
from domain.errors import (
    BadInput,
    Conflict,
    DomainError,
    InsufficientStock,
    InvalidTransition,
    NotFound,
)
from domain.events import service as events
from domain.events.models import OutboxHead
from domain.inventory import service as inventory
from domain.kpis import service as kpis
from domain.money import to_minor
from domain.orders import picking
from domain.orders import service as orders_service
from domain.orders.models import Order, OrderLine, OrderStatusChange
from domain.orders.rules import OrderStatus, allowed_next
from domain.values import check_minor, clean_text, parse_time

log = logging.getLogger("ordergate.intake")
MAX_BATCH = 500
# Tries for a batch that loses a race for stock, and for one order met by a concurrent
# submission of its key.
ATTEMPTS = 3
MAX_LINES = 100
MAX_QUANTITY = 100_000
CURRENCIES = frozenset({"CNY"})
# Where a status a channel reports stands on the lifecycle (PICKING is ours, not a channel's).
_RANK = {
    OrderStatus.PENDING_PAYMENT: 0,
    OrderStatus.PAID: 1,
    OrderStatus.PICKING: 2,
    OrderStatus.SHIPPED: 3,
    OrderStatus.COMPLETED: 4,
}
CHANNEL_STATUSES = frozenset(
    {
        OrderStatus.PENDING_PAYMENT,
        OrderStatus.PAID,
        OrderStatus.SHIPPED,
        OrderStatus.COMPLETED,
        OrderStatus.CANCELLED,
    }
)


class Outcome(StrEnum):
    CREATED = "CREATED"
    REPLAYED = "REPLAYED"
    UPDATED = "UPDATED"
    REJECTED = "REJECTED"


@dataclass(frozen=True)
class Buyer:
    name: str
    phone: str | None = None
    email: str | None = None


# A channel's shipping address: the one postal address type (domain/addresses.py).
ShippingAddress = PostalAddress


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int
    unit_price: str  # a decimal string in the order's currency


@dataclass(frozen=True)
class ChannelOrder:
    external_id: str
    status: OrderStatus
    created_at: dt.datetime | str  # a string is parsed here: ISO 8601 with an offset
    currency: str
    buyer: Buyer
    shipping_address: ShippingAddress
    lines: Sequence[Line]
    paid_at: dt.datetime | str | None = None
    shipping_fee: str = "0"
    discount: str = "0"
    payment_method: str | None = None
    payment_transaction_id: str | None = None
    campaign: str | None = None
    carrier: str | None = None
    tracking_number: str | None = None


@dataclass
class Result:
    external_id: str
    outcome: Outcome
    order_id: int | None = None
    code: str | None = None
    message: str | None = None

    @classmethod
    def rejected(cls, external_id: str, error: DomainError) -> Result:
        return cls(external_id, Outcome.REJECTED, code=error.code, message=error.message)


@dataclass
class _Checked:
    """An order after its checks: cleaned text, money in minor units, its digest."""

    source: ChannelOrder
    created_at: dt.datetime
    paid_at: dt.datetime | None
    external_id: str
    buyer: Buyer
    address: ShippingAddress
    lines: list[tuple[str, int, int]]  # sku, quantity, unit price (minor)
    shipping_minor: int
    discount_minor: int
    digest: str
    mutable: dict[str, str | None] = field(default_factory=dict)


def business_day(at: dt.datetime, zone: ZoneInfo) -> dt.date:
    """The calendar day of an instant in the business timezone: 16:30 UTC is the next day in
    Asia/Shanghai."""
    if at.tzinfo is None:
        raise BadInput("times need a UTC offset; naive timestamps are refused")
    return at.astimezone(zone).date()


_NOT_ASCII_DIGIT = re.compile(r"[^0-9]")


def normalise_phone(phone: str | None) -> str | None:
    """Digits only, without a leading +86/0086 (mainland numbers as the channels send them)."""
    if not phone:
        return None
    digits = _NOT_ASCII_DIGIT.sub("", phone)
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) - len(prefix) == 11:
            digits = digits[len(prefix) :]
    return digits or None


def normalise_email(email: str | None) -> str | None:
    return email.strip().lower() if email and email.strip() else None


def _text(value: str | None, what: str, size: int, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise BadInput(f"give {what}")
        return None
    return clean_text(value, what=what, max_length=size, required=required) or None


def _check(order: ChannelOrder) -> _Checked:
    external_id = _text(order.external_id, "externalId", 64, required=True) or ""
    if order.status not in CHANNEL_STATUSES:
        raise BadInput(f"a channel cannot report {order.status}")
    created_at = _time(order.created_at, "createdAt")
    paid_at = _time(order.paid_at, "paidAt") if order.paid_at is not None else None
    if order.currency not in CURRENCIES:
        raise BadInput(f"currency {order.currency!r} is not accepted")
    if not order.lines:
        raise BadInput("an order needs at least one line")
    if len(order.lines) > MAX_LINES:
        raise BadInput(f"an order has at most {MAX_LINES} lines")
    lines = []
    for n, line in enumerate(order.lines, start=1):
        sku = _text(line.sku, f"line {n} sku", 64, required=True) or ""
        if not isinstance(line.quantity, int) or not 1 <= line.quantity <= MAX_QUANTITY:
            raise BadInput(f"line {n} quantity must be between 1 and {MAX_QUANTITY}")
        price = to_minor(line.unit_price, order.currency, what=f"line {n} unitPrice")
        lines.append((sku, line.quantity, price))
    buyer = Buyer(
        name=_text(order.buyer.name, "buyer name", 100, required=True) or "",
        phone=_text(order.buyer.phone, "buyer phone", 32),
        email=_text(order.buyer.email, "buyer email", 254),
    )
    a = order.shipping_address
    address = ShippingAddress(
        recipient=_text(a.recipient, "recipient", 100, required=True) or "",
        phone=_text(a.phone, "address phone", 32, required=True) or "",
        province=_text(a.province, "province", 50, required=True) or "",
        city=_text(a.city, "city", 50, required=True) or "",
        district=_text(a.district, "district", 50, required=True) or "",
        street=_text(a.street, "street", 200, required=True) or "",
        postal_code=_text(a.postal_code, "postal code", 12),
    )
    shipping = to_minor(order.shipping_fee, order.currency, what="shippingFee")
    discount = to_minor(order.discount, order.currency, what="discount")
    mutable = {
        "paymentMethod": _text(order.payment_method, "paymentMethod", 32),
        "paymentTransactionId": _text(order.payment_transaction_id, "paymentTransactionId", 64),
        "carrier": _text(order.carrier, "carrier", 32),
        "trackingNumber": _text(order.tracking_number, "trackingNumber", 64),
    }
    if order.status in (OrderStatus.SHIPPED, OrderStatus.COMPLETED) and not (
        mutable["carrier"] and mutable["trackingNumber"]
    ):
        raise BadInput("a shipped order needs its carrier and tracking number")
    immutable = {
        "createdAt": created_at.isoformat(),
        "currency": order.currency,
        "buyer": {"name": buyer.name, "phone": buyer.phone, "email": buyer.email},
        "address": {
            "recipient": address.recipient,
            "phone": address.phone,
            "province": address.province,
            "city": address.city,
            "district": address.district,
            "street": address.street,
            "postal_code": address.postal_code,
        },
        "lines": [list(line) for line in lines],
        "shippingFee": shipping,
        "discount": discount,
        "campaign": _text(order.campaign, "campaign", 64),
    }
    digest = hashlib.sha256(canonical_json(immutable).encode()).hexdigest()
    return _Checked(
        source=order,
        created_at=created_at,
        paid_at=paid_at,
        external_id=external_id,
        buyer=buyer,
        address=address,
        lines=lines,
        shipping_minor=shipping,
        discount_minor=discount,
        digest=digest,
        mutable=mutable,
    )


def _time(value: dt.datetime | str, what: str) -> dt.datetime:
    """A time with an offset, as UTC; naive times are refused (this order only)."""
    if isinstance(value, str):
        return parse_time(value, what=what)
    if value.tzinfo is None:
        raise BadInput(f"{what} needs a UTC offset; naive timestamps are refused")
    return value.astimezone(dt.UTC)


def _person(checked: _Checked) -> matching.Person:
    buyer = checked.buyer
    return matching.Person(
        name=buyer.name, phone=buyer.phone, email=buyer.email, place=checked.address
    )


def _path(number: str, current: OrderStatus, reported: OrderStatus) -> list[OrderStatus]:
    """The lifecycle steps from `current` to where the channel says the order is; empty when
    the channel is not ahead of us. A report the rules cannot follow is InvalidTransition."""
    if reported is OrderStatus.CANCELLED:
        if current is OrderStatus.CANCELLED:
            return []
        if OrderStatus.CANCELLED not in allowed_next(current):
            raise InvalidTransition(
                f"order {number} is {current}; the channel's cancellation cannot apply",
                current=str(current),
            )
        return [OrderStatus.CANCELLED]
    if current is OrderStatus.CANCELLED:
        if reported is OrderStatus.PENDING_PAYMENT:
            return []  # cancelled here (e.g. for lack of stock) while the channel still waits
        raise InvalidTransition(
            f"order {number} is CANCELLED; the channel reports {reported}", current=str(current)
        )
    return list(_steps_ahead(current, reported))  # empty when the channel is behind or level


@functools.cache
def _steps_ahead(current: OrderStatus, reported: OrderStatus) -> tuple[OrderStatus, ...]:
    return tuple(s for s, rank in _RANK.items() if _RANK[current] < rank <= _RANK[reported])


async def _advance(
    session: AsyncSession,
    actor: Actor,
    order: Order,
    reported: OrderStatus,
    now: dt.datetime,
    *,
    source: str,
    paid_minor: int | None = None,
) -> bool:
    """Move the order along the lifecycle to where the channel says it is, one recorded step
    at a time; False when the channel is not ahead of us (nothing to do). `paid_minor` is what
    the channel says its buyer paid: the paid amount when the order becomes PAID."""
    path = _path(order.number, order.status, reported)
    if not path:
        return False
    # A picking list only for an order that will wait to be picked, not one already shipped.
    still_to_pick = path[-1] in (OrderStatus.PAID, OrderStatus.PICKING)
    for step in path:  # each step recorded and published, as `transitionOrder` does
        await orders_service.move(
            session=session,
            order=order,
            to=step,
            actor=actor,
            at=now,
            note=f"reported by {source}",
            open_picking=still_to_pick,
            paid_minor=paid_minor,
        )
    return True


async def _existing(session: AsyncSession, channel: str, external_id: str) -> Order | None:
    return await session.scalar(
        select(Order)
        .where(Order.channel_code == channel, Order.external_id == external_id)
        .options(selectinload(Order.lines), selectinload(Order.status_history))
        .execution_options(populate_existing=True)
    )


async def _resubmitted(
    session: AsyncSession,
    actor: Actor,
    channel: str,
    order: Order,
    checked: _Checked,
    now: dt.datetime,
) -> Outcome:
    if order.intake_digest != checked.digest:
        raise _conflict(channel, checked, order.number)
    if not _path(order.number, order.status, checked.source.status):
        return Outcome.REPLAYED
    # The channel's payment and shipment details are set before the first step, so they are
    # part of that step's version (and its event) rather than a version no event announces.
    for attribute, key in (
        ("payment_method", "paymentMethod"),
        ("payment_transaction_id", "paymentTransactionId"),
        ("carrier", "carrier"),
        ("tracking_number", "trackingNumber"),
    ):
        if checked.mutable[key]:
            setattr(order, attribute, checked.mutable[key])
    # What the buyer paid is the channel's own total for this content (the same digest: the
    # same lines, fee and discount), not the order's total now, which a signed price change
    # may have moved since it arrived.
    channel_total = (
        sum(price * quantity for _, quantity, price in checked.lines)
        + checked.shipping_minor
        - checked.discount_minor
    )
    await _advance(
        session,
        actor,
        order,
        checked.source.status,
        now,
        source=channel,
        paid_minor=channel_total,
    )
    return Outcome.UPDATED


async def ingest(
    *,
    session: AsyncSession,
    actor: Actor,
    channel: str,
    orders: Sequence[ChannelOrder],
    timezone: ZoneInfo,
    now: dt.datetime | None = None,
    reservation_ttl_seconds: int = 900,
) -> list[Result]:
    """Land a channel's batch; one result per order, in input order. The caller commits.

    Set-based where it can be: one lookup finds which keys exist; replays and conflicts are
    decided from that row alone; the new orders land together (customers, orders, lines,
    history, picking lists: one multi-row INSERT each) in one savepoint. Orders that move an
    existing order on, and every order of a batch whose bulk insert met a concurrent
    submission of one of its keys, go one by one in savepoints of their own."""
    actor.access.require(Action.ORDER_INGEST)
    actor.require_channel(channel)
    if not orders:
        raise BadInput("send at least one order")
    if len(orders) > MAX_BATCH:
        raise BadInput(f"send at most {MAX_BATCH} orders per call")
    now = now or utcnow()
    if session.get_bind().dialect.name == "sqlite":
        # Open the write transaction before the first savepoint: on SQLite a SAVEPOINT outside
        # a transaction starts one, and releasing it would commit each order on its own.
        await session.execute(
            update(OutboxHead).where(OutboxHead.id == 1).values(seq=OutboxHead.seq)
        )
    else:
        # A batch inserts hundreds of rows whose foreign keys PostgreSQL checks one by one. A
        # connection keeps the plan of each check; one made while a table was small (a new
        # deployment, a new table) scans the whole table for every row once it has grown,
        # until autovacuum analyzes it: hundreds of milliseconds a batch. Planned afresh for
        # this transaction, the checks use the primary key's index as the table grows.
        await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    keys = [o.external_id for o in orders]
    if len(set(keys)) != len(keys):
        raise BadInput("an externalId appears twice in the batch")
    if session.get_bind().dialect.name == "postgresql":
        # Batches sharing orders take turns, in one key order, before either writes: otherwise
        # one waits on the other's uncommitted order (its unique key) while the other waits on
        # a stock or customer row the first has locked, and PostgreSQL aborts one of them —
        # on its last attempt too. Held until COMMIT; batches with no order in common never
        # wait here.
        await session.execute(
            _TAKE_TURNS, {"keys": sorted({_turn_key(channel, key) for key in keys})}
        )
    # The stock new orders hold is planned from a read without locks and written at the end of
    # their landing, in one order for every batch. Should a concurrent batch take that stock
    # in between (StockMoved), or a deadlock abort this attempt (orders landed or moved on one
    # by one change stock rows in their own order), the attempt's savepoint is rolled back
    # and the batch decided again from what committed. The last attempt locks its stock rows
    # before anything else: nobody can change them under it, so it cannot lose.
    for attempt in range(ATTEMPTS):
        alerts = inventory.alerts_mark(session)
        try:
            async with session.begin_nested():
                return await _ingest(
                    session=session,
                    actor=actor,
                    channel=channel,
                    orders=orders,
                    timezone=timezone,
                    now=now,
                    reservation_ttl_seconds=reservation_ttl_seconds,
                    lock_first=attempt == ATTEMPTS - 1,
                )
        except (DBAPIError, inventory.StockMoved) as exc:
            lost = isinstance(exc, inventory.StockMoved) or is_deadlock(exc)
            if not lost or attempt == ATTEMPTS - 1:
                raise
            inventory.restore_alerts(session, alerts)
            log.info(
                "intake batch lost a race for stock; deciding it again",
                extra={"channel": channel, "reason": type(exc).__name__},
            )
    raise AssertionError("unreachable")


_TAKE_TURNS = text(
    "SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS t(k)"
).bindparams(bindparam("keys", type_=ARRAY(BigInteger)))


def _turn_key(channel: str, external_id: object) -> int:
    """A 64-bit advisory-lock key for one channel order (a collision only makes two batches
    take turns needlessly)."""
    digest = hashlib.blake2b(f"intake\x1f{channel}\x1f{external_id}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


async def _ingest(
    *,
    session: AsyncSession,
    actor: Actor,
    channel: str,
    orders: Sequence[ChannelOrder],
    timezone: ZoneInfo,
    now: dt.datetime,
    reservation_ttl_seconds: int,
    lock_first: bool,
) -> list[Result]:
    skus = {line.sku for o in orders for line in o.lines if isinstance(line.sku, str)}
    if lock_first:
        await inventory.lock_stock(session, skus)
    products = {
        p.sku: p for p in (await session.scalars(select(Product).where(Product.sku.in_(skus))))
    }
    costs = {
        sku: int(cost)
        for sku, cost in (
            await session.execute(
                select(StockItem.sku, func.max(StockItem.unit_cost_minor))
                .where(StockItem.sku.in_(skus))
                .group_by(StockItem.sku)
            )
        ).all()
    }
    batch = _Batch(actor, channel, products, costs, timezone, now, reservation_ttl_seconds)
    results: list[Result | None] = [None] * len(orders)
    checked: dict[int, _Checked] = {}
    for i, source in enumerate(orders):
        try:
            checked[i] = _check(source)
        except DomainError as exc:
            label = source.external_id if isinstance(source.external_id, str) else ""
            results[i] = Result.rejected(label, exc)
    known = {
        row.external_id: row
        for row in (
            await session.execute(
                select(
                    Order.id, Order.external_id, Order.number, Order.status, Order.intake_digest
                ).where(
                    Order.channel_code == channel,
                    Order.external_id.in_([c.external_id for c in checked.values()]),
                )
            )
        ).all()
    }
    fresh: list[int] = []
    later: list[int] = []
    for i, c in checked.items():
        row = known.get(c.external_id)
        if row is None:
            fresh.append(i)
        elif row.intake_digest != c.digest:
            results[i] = Result.rejected(c.external_id, _conflict(channel, c, row.number))
        else:
            try:
                path = _path(row.number, row.status, c.source.status)
            except DomainError as exc:
                results[i] = Result.rejected(c.external_id, exc)
                continue
            if path:
                later.append(i)
            else:
                results[i] = Result(c.external_id, Outcome.REPLAYED, row.id)
    if fresh:
        try:
            async with session.begin_nested():
                landed = await _land(session, batch, {i: checked[i] for i in fresh})
        except IntegrityError:
            # A concurrent submission created one of these keys after our lookup: nothing of
            # the bulk insert stays; each order is decided again on its own.
            later.extend(fresh)
        else:
            for i, result in landed.items():
                results[i] = result
    # One by one, in key order (concurrent batches meet their keys in the same order).
    for i in sorted(later, key=lambda i: checked[i].external_id):
        results[i] = await _one(session, batch, checked[i])
    done = [r for r in results if r is not None]
    assert len(done) == len(orders)
    await audit.record(
        session=session,
        who=actor,
        action="order.ingest",
        operation="ingestOrders",
        target_type="Channel",
        target_id=channel,
        at=now,
        details={
            "orders": len(done),
            "outcomes": {
                o.value: sum(1 for r in done if r.outcome is o)
                for o in Outcome
                if any(r.outcome is o for r in done)
            },
            "results": [
                {
                    "externalId": r.external_id[:64],
                    "outcome": r.outcome.value,
                    **({"orderId": r.order_id} if r.order_id is not None else {}),
                    **({"code": r.code} if r.code else {}),
                }
                for r in done
            ],
        },
    )
    return done


def _conflict(channel: str, checked: _Checked, number: str) -> Conflict:
    return Conflict(
        f"{channel} order {checked.external_id} was received before with other content "
        "(lines, amounts, buyer, address or creation time)",
        order_number=number,
    )


@dataclass
class _New:
    """A new order ready to insert: its row, lines and lifecycle path."""

    checked: _Checked
    row: dict[str, object]
    lines: list[dict[str, object]]
    path: list[OrderStatus]
    order_id: int = 0
    short: bool = False  # unpaid, and its stock could not be reserved: it lands cancelled


@dataclass(frozen=True)
class _Batch:
    """What every order of one call shares: who sends it, from which channel, the catalogue
    rows its SKUs need, the business timezone and the call's time."""

    actor: Actor
    channel: str
    products: dict[str, Product]
    costs: dict[str, int]
    zone: ZoneInfo
    now: dt.datetime
    reservation_ttl_seconds: int = 900


def _new_order(batch: _Batch, checked: _Checked) -> _New:
    """The checks a new order passes before anything is written, and the row it becomes: at
    its final status, with the version its recorded steps bring it to."""
    channel, products, now = batch.channel, batch.products, batch.now
    missing = sorted({sku for sku, _, _ in checked.lines if sku not in products})
    if missing:
        raise NotFound(f"unknown SKU {', '.join(missing)}")
    created = checked.created_at
    if created > now + dt.timedelta(minutes=5):
        raise BadInput("createdAt is in the future")
    day = business_day(created, batch.zone)
    lines = [
        {
            "sku": sku,
            "name": products[sku].name,
            "quantity": quantity,
            "unit_price_minor": price,
            "cost_price_minor": batch.costs.get(sku, 0),
        }
        for sku, quantity, price in checked.lines
    ]
    subtotal = sum(price * quantity for _, quantity, price in checked.lines)
    total = subtotal + checked.shipping_minor - checked.discount_minor
    if total < 0:
        raise BadInput("the discount exceeds the order's amount")
    check_minor(subtotal, what="the order's subtotal")
    check_minor(total, what="the order's total")
    cost_total = sum(int(li["cost_price_minor"]) * int(li["quantity"]) for li in lines)  # type: ignore[call-overload]
    key = hashlib.sha256(f"{channel}\x1f{checked.external_id}".encode()).hexdigest()[:16]
    number = f"OG{day:%Y%m%d}{key.upper()}"
    path = _path(number, OrderStatus.PENDING_PAYMENT, checked.source.status)
    row: dict[str, object] = {
        "number": number,
        "channel_code": channel,
        "external_id": checked.external_id,
        "status": path[-1] if path else OrderStatus.PENDING_PAYMENT,
        "currency": checked.source.currency,
        "subtotal_minor": subtotal,
        "shipping_fee_minor": checked.shipping_minor,
        "discount_minor": checked.discount_minor,
        "total_minor": total,
        "gross_margin_minor": total - cost_total - checked.shipping_minor,
        # What the customer paid: the channel's total, when the channel reports it paid.
        "paid_minor": total if OrderStatus.PAID in path else 0,
        "refunded_minor": 0,
        "customer_name": checked.buyer.name,
        "customer_phone": normalise_phone(checked.buyer.phone),
        "ship_recipient": checked.address.recipient,
        "ship_phone": checked.address.phone,
        "ship_province": checked.address.province,
        "ship_city": checked.address.city,
        "ship_district": checked.address.district,
        "ship_street": checked.address.street,
        "ship_postal_code": checked.address.postal_code,
        "payment_method": checked.mutable["paymentMethod"],
        "payment_transaction_id": checked.mutable["paymentTransactionId"],
        "carrier": checked.mutable["carrier"],
        "tracking_number": checked.mutable["trackingNumber"],
        "internal_note": None,
        "version": 1 + len(path),  # created at 1, one more per recorded step
        "business_day": day,
        "paid_at": (checked.paid_at or now) if OrderStatus.PAID in path else None,
        "shipped_at": now if OrderStatus.SHIPPED in path else None,
        "escalated_at": None,
        "intake_digest": checked.digest,
        "created_at": created,
        "updated_at": now,
    }
    return _New(checked, row, lines, path)


async def _land(
    session: AsyncSession, batch: _Batch, orders: dict[int, _Checked]
) -> dict[int, Result]:
    """The batch's new orders, written together; the same rows, events and picking lists as
    creating each and moving it step by step (`_create`) would leave. The stock they hold is
    planned first and written last (StockMoved: the caller decides the batch again)."""
    actor, channel, now = batch.actor, batch.channel, batch.now
    results: dict[int, Result] = {}
    new: list[tuple[int, _New]] = []
    for i, c in orders.items():
        try:
            new.append((i, _new_order(batch, c)))
        except DomainError as exc:
            results[i] = Result.rejected(c.external_id, exc)
    if not new:
        return results
    new.sort(key=lambda pair: pair[1].checked.external_id)  # one lock order for every batch
    # An order holds its stock as it lands, the whole batch at once: an unpaid one until it
    # is paid (one whose stock is short lands cancelled, with INSUFFICIENT_STOCK in its
    # result, so the channel can cancel it upstream), one that arrives paid until it ships
    # (one whose stock is short still lands paid, the sale is made: it holds nothing, and the
    # warehouse gets a task). Orders that arrive shipped, completed or cancelled hold nothing.
    # Planned from one read now, written last (`inventory.apply_holds`), so the stock rows are
    # locked only from there to the commit.
    holding = [k for k, (_, n) in enumerate(new) if _holds(n.path)]
    held: dict[int, list[inventory.LineInput]] = {}
    unheld: list[_New] = []
    plan = inventory.HoldPlan([], {})
    if holding:
        plan = await inventory.plan_holds(
            session,
            orders=[(str(new[k][1].row["number"]), _wanted(new[k][1].lines)) for k in holding],
        )
        for k, lines in zip(holding, plan.chosen, strict=True):
            n = new[k][1]
            if lines is not None:
                held[k] = lines
            elif n.path:
                unheld.append(n)
            else:
                n.short = True
                n.path = [OrderStatus.CANCELLED]
                n.row["status"] = OrderStatus.CANCELLED
                n.row["version"] = 2
    # Each buyer's customer: linked when certain, new otherwise, doubtful pairs queued.
    customer_ids = await matching.link(session, [_person(n.checked) for _, n in new], now)
    for (_, n), customer_id in zip(new, customer_ids, strict=True):
        n.row["customer_id"] = customer_id
    order_ids = await insert_rows(
        session, Order.__table__, [n.row for _, n in new], return_ids=True
    )
    for (_, n), order_id in zip(new, order_ids, strict=True):
        n.order_id = order_id
    # Orders landing on a closed business day (a channel syncing late): that day's KPI facts
    # are computed again.
    today = now.astimezone(batch.zone).date()
    late = {day for _, n in new if (day := n.row["business_day"]) < today}  # type: ignore[operator]
    if late:
        await kpis.invalidate(session, late, [kpis.TIMELINESS])  # type: ignore[arg-type]
    # The holds' records; the stock itself is booked last (`apply_holds`).
    await inventory.attach_many(
        session,
        holds=[
            (new[k][1].order_id, str(new[k][1].row["number"]), lines, bool(new[k][1].path))
            for k, lines in sorted(held.items())
        ],
        ttl_seconds=batch.reservation_ttl_seconds,
        created_by=actor.username,
        now=now,
    )
    for n in unheld:
        await inventory.short_on_arrival(
            session,
            number=str(n.row["number"]),
            wanted=_wanted(n.lines),
            who=actor,
            now=now,
        )
    await insert_rows(
        session,
        OrderLine.__table__,
        [{**line, "order_id": n.order_id} for _, n in new for line in n.lines],
    )
    history: list[dict[str, object]] = []
    for _, n in new:
        history.append(
            _change(n.order_id, None, OrderStatus.PENDING_PAYMENT, actor, n.checked.created_at,
                    f"received from {channel}")
        )  # fmt: skip
        before = OrderStatus.PENDING_PAYMENT
        note = "not enough stock to reserve" if n.short else f"reported by {channel}"
        for step in n.path:
            history.append(_change(n.order_id, before, step, actor, now, note))
            before = step
    await insert_rows(session, OrderStatusChange.__table__, history)
    # A picking list for each order that arrives paid and waits to be picked.
    to_pick = [n for _, n in new if n.path and n.path[-1] is OrderStatus.PAID]
    picking_ids: dict[int, tuple[int, str]] = {}
    if to_pick:
        stock = [
            tuple(r)
            for r in (
                await session.execute(
                    picking.stock_query({str(li["sku"]) for n in to_pick for li in n.lines})
                )
            ).all()
        ]
        held_in = {id(new[k][1]): lines[0].warehouse for k, lines in held.items()}
        # Picked where its stock is held; an order that holds nothing, where it best can be.
        warehouses = [
            held_in.get(id(n)) or picking.choose_warehouse(_wanted(n.lines), stock)  # type: ignore[arg-type]
            for n in to_pick
        ]
        list_ids = await insert_rows(
            session,
            picking.PickingList.__table__,
            [
                {
                    "number": f"PK-{n.row['number']}",
                    "order_id": n.order_id,
                    "warehouse": warehouse,
                    "status": picking.PickingStatus.OPEN.value,
                    "created_at": now,
                }
                for n, warehouse in zip(to_pick, warehouses, strict=True)
            ],
            return_ids=True,
        )
        await insert_rows(
            session,
            picking.PickingLine.__table__,
            [
                {
                    "picking_list_id": list_id,
                    "sku": li["sku"],
                    "product_name": li["name"],
                    "quantity": li["quantity"],
                }
                for n, list_id in zip(to_pick, list_ids, strict=True)
                for li in n.lines
            ],
        )
        for n, list_id, warehouse in zip(to_pick, list_ids, warehouses, strict=True):
            picking_ids[n.order_id] = (list_id, warehouse)
    # The events each order's creation and steps publish, in each order's version order.
    for i, n in new:
        order_id = n.order_id
        events.publish(
            session=session,
            type=events.EventType.ORDER_CREATED,
            aggregate_type="Order",
            aggregate_id=order_id,
            version=1,
            at=now,
            payload={"orderId": order_id, "channel": channel, "externalId": n.checked.external_id},
        )
        before = OrderStatus.PENDING_PAYMENT
        for version, step in enumerate(n.path, start=2):
            events.publish(
                session=session,
                type=events.EventType.ORDER_STATUS_CHANGED,
                aggregate_type="Order",
                aggregate_id=order_id,
                version=version,
                at=now,
                payload={"orderId": order_id, "from": str(before), "to": str(step)},
            )
            before = step
            if step is OrderStatus.PAID and order_id in picking_ids:
                list_id, warehouse = picking_ids[order_id]
                events.publish(
                    session=session,
                    type=events.EventType.PICKING_LIST_CREATED,
                    aggregate_type="Order",
                    aggregate_id=order_id,
                    version=version,
                    at=now,
                    payload={"orderId": order_id, "pickingListId": list_id, "warehouse": warehouse},
                )
        if n.short:
            results[i] = Result(
                n.checked.external_id,
                Outcome.CREATED,
                order_id,
                code=InsufficientStock.code,
                message="not enough stock to reserve: recorded as cancelled; cancel it upstream",
            )
        else:
            results[i] = Result(n.checked.external_id, Outcome.CREATED, order_id)
    await inventory.apply_holds(session, plan, who=actor, now=now)
    return results


def _holds(path: list[OrderStatus]) -> bool:
    """Whether an order landing with this path holds stock: unpaid, or paid and not yet
    shipped."""
    return not path or path[-1] is OrderStatus.PAID


def _wanted(lines: list[dict[str, object]]) -> dict[str, int]:
    """sku -> units of an order's lines (lines of one SKU summed)."""
    wanted: dict[str, int] = {}
    for li in lines:
        wanted[str(li["sku"])] = wanted.get(str(li["sku"]), 0) + int(li["quantity"])  # type: ignore[call-overload]
    return wanted


def _change(
    order_id: int,
    before: OrderStatus | None,
    to: OrderStatus,
    actor: Actor,
    at: dt.datetime,
    note: str,
) -> dict[str, object]:
    return {
        "order_id": order_id,
        "from_status": before,
        "to_status": to,
        "actor_id": actor.user_id,
        "actor_username": actor.username,
        "at": at,
        "note": note,
    }


async def _one(session: AsyncSession, batch: _Batch, checked: _Checked) -> Result:
    """One order in a savepoint of its own: the path for updates and for keys met
    concurrently."""
    actor, channel, now = batch.actor, batch.channel, batch.now
    for _attempt in range(ATTEMPTS):
        try:
            async with session.begin_nested():
                existing = await _existing(session, channel, checked.external_id)
                if existing is None:  # the bulk path, for one order
                    landed = await _land(session, batch, {0: checked})
                    return landed[0]
                outcome = await _resubmitted(session, actor, channel, existing, checked, now)
                return Result(checked.external_id, outcome, existing.id)
        except IntegrityError:
            # Another submission of this key committed first: read it, and decide again.
            continue
        except DomainError as exc:
            return Result.rejected(checked.external_id, exc)
    return Result(
        checked.external_id,
        Outcome.REJECTED,
        code=Conflict.code,
        message="submitted concurrently; send it again",
    )
