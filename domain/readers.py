"""How each scalar field's value is read from its model, as plain values (Decimal money, str,
int, aware datetimes, enums). The GraphQL types and exports both read through this table, and
both pass the result through the caller's AccessProfile — so a field shows the same value, or
the same mask, whichever path shows it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from operator import attrgetter
from typing import Any

from domain.money import from_minor

Reader = Callable[[Any], Any]


def _money(minor_attr: str) -> Reader:
    get = attrgetter(minor_attr)
    return lambda model: from_minor(get(model), model.currency)


def _line_money(minor_of: Callable[[Any], int]) -> Reader:
    return lambda line: from_minor(minor_of(line), line.order.currency)


def _fields(type_name: str, **readers: Reader | str) -> dict[str, Reader]:
    return {
        f"{type_name}.{name}": attrgetter(reader) if isinstance(reader, str) else reader
        for name, reader in readers.items()
    }


READERS: Mapping[str, Reader] = {
    **_fields(
        "Order",
        id="id",
        number="number",
        channel="channel_code",
        externalId="external_id",
        status="status",
        currency="currency",
        createdAt="created_at",
        updatedAt="updated_at",
        businessDay="business_day",
        escalatedAt="escalated_at",
        version="version",
        subtotal=_money("subtotal_minor"),
        shippingFee=_money("shipping_fee_minor"),
        discount=_money("discount_minor"),
        total=_money("total_minor"),
        refundedAmount=_money("refunded_minor"),
        grossMargin=_money("gross_margin_minor"),
        customerName="customer_name",
        customerPhone="customer_phone",
        paymentMethod="payment_method",
        paymentTransactionId="payment_transaction_id",
        carrier="carrier",
        trackingNumber="tracking_number",
        internalNote="internal_note",
    ),
    **_fields(
        "OrderLine",
        id="id",
        sku="sku",
        name="name",
        quantity="quantity",
        unitPrice=_line_money(attrgetter("unit_price_minor")),
        lineTotal=_line_money(lambda line: line.unit_price_minor * line.quantity),
        costPrice=_line_money(attrgetter("cost_price_minor")),
    ),
    **_fields(
        "OrderStatusChange",
        **{"from": "from_status"},
        to="to_status",
        actor="actor_username",
        at="at",
        note="note",
    ),
    **_fields(
        "Customer",
        id="id",
        name="name",
        phone="phone",
        email="email",
        createdAt="created_at",
        version="version",
        phoneValid="phone_valid",
        mergedInto="merged_into_id",
    ),
    **_fields(
        "Address",
        recipient="recipient",
        phone="phone",
        province="province",
        city="city",
        district="district",
        street="street",
        postalCode="postal_code",
    ),
    **_fields(
        "StockItem",
        id="id",
        sku="sku",
        productName=lambda item: item.product.name,
        warehouse="warehouse",
        onHand="on_hand",
        reserved="reserved",
        available="available",
        safetyThreshold="safety_threshold",
        unitCost=_money("unit_cost_minor"),
        updatedAt="updated_at",
    ),
    **_fields(
        "StockMovement",
        id="id",
        at="at",
        sku="sku",
        warehouse="warehouse",
        onHandDelta="on_hand_delta",
        reservedDelta="reserved_delta",
        reason="reason",
        reference="reference",
        actor="actor_username",
        unitCost=_money("unit_cost_minor"),
    ),
}
