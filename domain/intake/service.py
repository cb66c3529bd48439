"""Channel intake: orders from Taobao, JD, Pinduoduo and the web shop, landing exactly once.

`ingest` takes a batch (up to `MAX_BATCH`) from one channel's service account. Each order is
keyed by `(channel, externalId)` and handled in a savepoint of its own, so one bad order is
REJECTED with its code while the rest of the batch lands:

- new key: CREATED, with its customer (matched on phone or email, else created), its
  `businessDay` in the business timezone, and — if it arrives paid — its picking list;
- same key, same content: REPLAYED, the original order, nothing written;
- same key, a later channel status (paid, cancelled by the buyer, shipped with carrier and
  tracking): UPDATED, moved along the lifecycle rules step by step, each step recorded;
- same key, different immutable content (lines, money, buyer, address, creation time):
  REJECTED with CONFLICT.

Two submissions of one key racing (fifty at once at a peak) meet at the unique constraint:
the loser's savepoint rolls back and it reads the winner's order, so there is one order.
The batch is audited as one event listing every order's outcome (`order.ingest`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from domain.access import Action
from domain.actor import Actor
from domain.audit import service as audit
from domain.audit.chain import canonical_json
from domain.catalog.models import Product, StockItem
from domain.customers.models import Customer
from domain.db import utcnow
from domain.errors import BadInput, Conflict, DomainError, InvalidTransition, NotFound
from domain.events import service as events
from domain.events.models import OutboxHead
from domain.money import to_minor
from domain.orders import service as orders_service
from domain.orders.models import Order, OrderLine, OrderStatusChange
from domain.orders.rules import OrderStatus, allowed_next
from domain.values import clean_text, parse_time

MAX_BATCH = 500
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


@dataclass(frozen=True)
class ShippingAddress:
    recipient: str
    phone: str
    province: str
    city: str
    district: str
    street: str
    postal_code: str | None = None


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
    order: Order | None = None
    code: str | None = None
    message: str | None = None


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


def normalise_phone(phone: str | None) -> str | None:
    """Digits only, without a leading +86/0086 (mainland numbers as the channels send them)."""
    if not phone:
        return None
    digits = "".join(c for c in phone if c.isascii() and c.isdigit())
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
        "buyer": asdict(buyer),
        "address": asdict(address),
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


async def _customer_for(session: AsyncSession, buyer: Buyer, at: dt.datetime) -> Customer:
    """The buyer's customer record: the one whose phone or email matches (normalised), else a
    new one. The one place intake links buyers; the customer work refines the matching."""
    phone, email = normalise_phone(buyer.phone), normalise_email(buyer.email)
    conditions = []
    if phone:
        conditions.append(Customer.phone == phone)
    if email:
        conditions.append(func.lower(Customer.email) == email)
    if conditions:
        found = await session.scalar(
            select(Customer).where(or_(*conditions)).order_by(Customer.id).limit(1)
        )
        if found is not None:
            return found
    customer = Customer(name=buyer.name, phone=phone, email=email, created_at=at)
    session.add(customer)
    await session.flush()
    return customer


async def _create(
    session: AsyncSession,
    actor: Actor,
    channel: str,
    checked: _Checked,
    products: dict[str, Product],
    costs: dict[str, int],
    zone: ZoneInfo,
    now: dt.datetime,
) -> Order:
    source = checked.source
    missing = sorted({sku for sku, _, _ in checked.lines if sku not in products})
    if missing:
        raise NotFound(f"unknown SKU {', '.join(missing)}")
    created = checked.created_at
    if created > now + dt.timedelta(minutes=5):
        raise BadInput("createdAt is in the future")
    day = business_day(created, zone)
    lines = [
        OrderLine(
            sku=sku,
            name=products[sku].name,
            quantity=quantity,
            unit_price_minor=price,
            cost_price_minor=costs.get(sku, 0),
        )
        for sku, quantity, price in checked.lines
    ]
    subtotal = sum(line.unit_price_minor * line.quantity for line in lines)
    total = subtotal + checked.shipping_minor - checked.discount_minor
    if total < 0:
        raise BadInput("the discount exceeds the order's amount")
    cost_total = sum(line.cost_price_minor * line.quantity for line in lines)
    customer = await _customer_for(session, checked.buyer, now)  # after every check
    key = hashlib.sha256(f"{channel}\x1f{checked.external_id}".encode()).hexdigest()[:16]
    order = Order(
        number=f"OG{day:%Y%m%d}{key.upper()}",
        channel_code=channel,
        external_id=checked.external_id,
        status=OrderStatus.PENDING_PAYMENT,
        currency=source.currency,
        subtotal_minor=subtotal,
        shipping_fee_minor=checked.shipping_minor,
        discount_minor=checked.discount_minor,
        total_minor=total,
        gross_margin_minor=total - cost_total - checked.shipping_minor,
        paid_minor=0,
        refunded_minor=0,
        customer_id=customer.id,
        customer_name=checked.buyer.name,
        customer_phone=normalise_phone(checked.buyer.phone),
        ship_recipient=checked.address.recipient,
        ship_phone=checked.address.phone,
        ship_province=checked.address.province,
        ship_city=checked.address.city,
        ship_district=checked.address.district,
        ship_street=checked.address.street,
        ship_postal_code=checked.address.postal_code,
        payment_method=checked.mutable["paymentMethod"],
        payment_transaction_id=checked.mutable["paymentTransactionId"],
        carrier=checked.mutable["carrier"],
        tracking_number=checked.mutable["trackingNumber"],
        business_day=day,
        intake_digest=checked.digest,
        created_at=created,
        updated_at=now,
        lines=lines,
        status_history=[
            OrderStatusChange(
                from_status=None,
                to_status=OrderStatus.PENDING_PAYMENT,
                actor_id=actor.user_id,
                actor_username=actor.username,
                at=created,
                note=f"received from {channel}",
            )
        ],
    )
    order.check_money()
    session.add(order)
    await session.flush()
    for line in order.lines:
        line.order = order
    events.publish(
        session=session,
        type=events.EventType.ORDER_CREATED,
        aggregate_type="Order",
        aggregate_id=order.id,
        version=order.version,
        at=now,
        payload={"orderId": order.id, "channel": channel, "externalId": order.external_id},
    )
    await _advance(session, actor, order, source.status, now, source=channel)
    return order


async def _advance(
    session: AsyncSession,
    actor: Actor,
    order: Order,
    reported: OrderStatus,
    now: dt.datetime,
    *,
    source: str,
) -> bool:
    """Move the order along the lifecycle to where the channel says it is, one recorded step
    at a time; False when the channel is not ahead of us (nothing to do)."""
    if reported is OrderStatus.CANCELLED:
        if order.status is OrderStatus.CANCELLED:
            return False
        if OrderStatus.CANCELLED not in allowed_next(order.status):
            raise InvalidTransition(
                f"order {order.number} is {order.status}; the channel's cancellation cannot apply",
                current=str(order.status),
            )
        path = [OrderStatus.CANCELLED]
    else:
        if order.status is OrderStatus.CANCELLED:
            raise InvalidTransition(
                f"order {order.number} is CANCELLED; the channel reports {reported}",
                current=str(order.status),
            )
        if _RANK[reported] <= _RANK[order.status]:
            return False  # the channel is behind us, or level: nothing to change
        path = [s for s, rank in _RANK.items() if _RANK[order.status] < rank <= _RANK[reported]]
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
        raise Conflict(
            f"{channel} order {checked.external_id} was received before with other content "
            "(lines, amounts, buyer, address or creation time)",
            order_number=order.number,
        )
    moved = await _advance(session, actor, order, checked.source.status, now, source=channel)
    if not moved:
        return Outcome.REPLAYED
    for attribute, key in (
        ("payment_method", "paymentMethod"),
        ("payment_transaction_id", "paymentTransactionId"),
        ("carrier", "carrier"),
        ("tracking_number", "trackingNumber"),
    ):
        if checked.mutable[key]:
            setattr(order, attribute, checked.mutable[key])
    await session.flush()
    return Outcome.UPDATED


async def ingest(
    *,
    session: AsyncSession,
    actor: Actor,
    channel: str,
    orders: Sequence[ChannelOrder],
    timezone: ZoneInfo,
    now: dt.datetime | None = None,
) -> list[Result]:
    """Land a channel's batch; one result per order, in input order. The caller commits."""
    actor.access.require(Action.ORDER_INGEST)
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
    keys = [o.external_id for o in orders]
    if len(set(keys)) != len(keys):
        raise BadInput("an externalId appears twice in the batch")
    skus = {line.sku for o in orders for line in o.lines if isinstance(line.sku, str)}
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
    results: list[Result] = []
    for source in orders:
        results.append(await _one(session, actor, channel, source, products, costs, timezone, now))
    await audit.record(
        session=session,
        who=actor,
        action="order.ingest",
        operation="ingestOrders",
        target_type="Channel",
        target_id=channel,
        at=now,
        details={
            "orders": len(results),
            "outcomes": {
                o.value: sum(1 for r in results if r.outcome is o)
                for o in Outcome
                if any(r.outcome is o for r in results)
            },
            "results": [
                {
                    "externalId": r.external_id[:64],
                    "outcome": r.outcome.value,
                    **({"orderId": r.order.id} if r.order is not None else {}),
                    **({"code": r.code} if r.code else {}),
                }
                for r in results
            ],
        },
    )
    return results


async def _one(
    session: AsyncSession,
    actor: Actor,
    channel: str,
    source: ChannelOrder,
    products: dict[str, Product],
    costs: dict[str, int],
    zone: ZoneInfo,
    now: dt.datetime,
) -> Result:
    label = source.external_id if isinstance(source.external_id, str) else ""
    try:
        checked = _check(source)
    except DomainError as exc:
        return Result(label, Outcome.REJECTED, code=exc.code, message=exc.message)
    for _attempt in range(2):
        mark = events.pending_mark(session)
        try:
            async with session.begin_nested():
                existing = await _existing(session, channel, checked.external_id)
                if existing is None:
                    order = await _create(
                        session, actor, channel, checked, products, costs, zone, now
                    )
                    return Result(checked.external_id, Outcome.CREATED, order)
                outcome = await _resubmitted(session, actor, channel, existing, checked, now)
                return Result(checked.external_id, outcome, existing)
        except IntegrityError:
            # Another submission of this key committed first: read it, and decide again.
            events.forget_since(session, mark)
            continue
        except DomainError as exc:
            events.forget_since(session, mark)  # its savepoint rolled back; so do its events
            return Result(checked.external_id, Outcome.REJECTED, code=exc.code, message=exc.message)
    return Result(
        checked.external_id,
        Outcome.REJECTED,
        code=Conflict.code,
        message="submitted concurrently; send it again",
    )
