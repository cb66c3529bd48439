"""Changing where an order ships, before it ships: with a reason, audited before and after.

The seed's incident: a customer-service agent changed delivery addresses to ship goods to
relatives. So every change names its reason, is audited with both addresses and a digest of
the new one (the quarterly access report counts changes per account and spots one address
turning up on many customers' orders), and publishes `ORDER_ADDRESS_CHANGED`. The order's
version moves on, so an approval asked about the old order is void.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict

from sqlalchemy.ext.asyncio import AsyncSession

from domain.access import Action
from domain.actor import Actor
from domain.addresses import PostalAddress
from domain.audit import service as audit
from domain.db import utcnow
from domain.errors import BadInput, Conflict
from domain.events import service as events
from domain.orders import service as orders_service
from domain.orders.models import Order
from domain.orders.rules import OrderStatus
from domain.values import clean_text

# Until it ships; after that the parcel is on its way and only the carrier can redirect it.
CHANGEABLE = frozenset({OrderStatus.PENDING_PAYMENT, OrderStatus.PAID, OrderStatus.PICKING})
MAX_REASON = 500


def shipping_address_of(order: Order) -> PostalAddress:
    return PostalAddress(
        recipient=order.ship_recipient,
        phone=order.ship_phone,
        province=order.ship_province,
        city=order.ship_city,
        district=order.ship_district,
        street=order.ship_street,
        postal_code=order.ship_postal_code,
    )


def _camel(address: PostalAddress) -> dict[str, str | None]:
    values = asdict(address)
    values["postalCode"] = values.pop("postal_code")
    return values


async def change_shipping_address(
    *,
    session: AsyncSession,
    actor: Actor,
    order_id: int,
    address: PostalAddress,
    reason: str,
    now: dt.datetime | None = None,
    include: frozenset[str] = frozenset(),
) -> Order:
    """`include`: the relations the caller will read of the changed order."""
    actor.access.require(Action.ORDER_CHANGE_ADDRESS)
    reason = clean_text(reason, what="reason", max_length=MAX_REASON, required=True)
    new = address.checked()
    now = now or utcnow()
    order = await orders_service.get_order(
        session=session, actor=actor, order_id=order_id, include=include
    )
    if order.status not in CHANGEABLE:
        raise Conflict(
            f"order {order.number} is {order.status}; its address changes only before it ships"
        )
    old = shipping_address_of(order)
    if new == old:
        raise BadInput("that is the order's shipping address already")
    before_version = order.version
    order.ship_recipient = new.recipient
    order.ship_phone = new.phone
    order.ship_province = new.province
    order.ship_city = new.city
    order.ship_district = new.district
    order.ship_street = new.street
    order.ship_postal_code = new.postal_code
    order.updated_at = now
    await orders_service.flush_versioned(session, order)
    events.publish(
        session=session,
        type=events.EventType.ORDER_ADDRESS_CHANGED,
        aggregate_type="Order",
        aggregate_id=order.id,
        version=order.version,
        at=now,
        payload={"orderId": order.id},
    )
    await audit.record(
        session=session,
        who=actor,
        action="order.change_address",
        operation="changeShippingAddress",
        target_type="Order",
        target_id=order.id,
        at=now,
        details={
            "number": order.number,
            "customerId": order.customer_id,
            "reason": reason,
            "before": {"shippingAddress": _camel(old), "version": before_version},
            "after": {"shippingAddress": _camel(new), "version": order.version},
            "addressDigest": new.digest(),
        },
    )
    return order
