"""The governed object types: orders, their lines and history, customers, addresses, stock.

They reference each other (an order has a customer, a customer has orders), so they live
together. Each is built only through its `Projection`, never field by field elsewhere.
"""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Any

import strawberry
from strawberry.types import Info

from api.graphql.projection import Projection, attr
from api.graphql.scalars import Money
from domain.access import AccessProfile, FieldAccess
from domain.catalog import models as catalog
from domain.customers import models as customers
from domain.money import from_minor
from domain.orders import models as orders
from domain.orders.rules import OrderStatus as DomainOrderStatus

OrderStatus = strawberry.enum(DomainOrderStatus, name="OrderStatus")


@strawberry.enum
class Channel(Enum):
    TAOBAO = "TAOBAO"
    JD = "JD"
    PINDUODUO = "PINDUODUO"
    WEB = "WEB"


def _money(minor_attr: str) -> Any:
    def get(model: Any, _access: AccessProfile) -> Money:
        return Money(from_minor(getattr(model, minor_attr), model.currency))

    return get


def _id(model: Any, _access: AccessProfile) -> strawberry.ID:
    return strawberry.ID(str(model.id))


@strawberry.type(description="Where a parcel goes. Personal parts may come back masked.")
class Address:
    recipient: str | None
    phone: str | None
    province: str | None
    city: str | None
    district: str | None
    street: str | None
    postal_code: str | None

    @classmethod
    def from_model(cls, model: Any, access: AccessProfile) -> Address:
        return cls(**ADDRESS(model, access))


ADDRESS = Projection.of(
    "Address",
    recipient=attr("recipient"),
    phone=attr("phone"),
    province=attr("province"),
    city=attr("city"),
    district=attr("district"),
    street=attr("street"),
    postal_code=attr("postal_code"),
)


class _ShippingAddress:
    """An order's shipping address is stored flat on the order; this adapts it to Address."""

    __slots__ = ("_order",)

    def __init__(self, order: orders.Order) -> None:
        self._order = order

    def __getattr__(self, name: str) -> Any:
        return getattr(self._order, f"ship_{name}")


@strawberry.type(description="One move of an order through its lifecycle.")
class OrderStatusChange:
    from_: OrderStatus | None = strawberry.field(name="from")
    to: OrderStatus | None
    actor: str | None
    at: dt.datetime | None
    note: str | None


STATUS_CHANGE = Projection.of(
    "OrderStatusChange",
    names={"from_": "from"},
    from_=attr("from_status"),
    to=attr("to_status"),
    actor=attr("actor_username"),
    at=attr("at"),
    note=attr("note"),
)


@strawberry.type
class OrderLine:
    id: strawberry.ID | None
    sku: str | None
    name: str | None
    quantity: int | None
    unit_price: Money | None
    line_total: Money | None
    cost_price: Money | None


ORDER_LINE = Projection.of(
    "OrderLine",
    id=_id,
    sku=attr("sku"),
    name=attr("name"),
    quantity=attr("quantity"),
    unit_price=lambda m, _a: Money(from_minor(m.unit_price_minor, m.order.currency)),
    line_total=lambda m, _a: Money(from_minor(m.unit_price_minor * m.quantity, m.order.currency)),
    cost_price=lambda m, _a: Money(from_minor(m.cost_price_minor, m.order.currency)),
)


@strawberry.type(description="An order from one sales channel. Restricted fields are nullable.")
class Order:
    id: strawberry.ID | None
    number: str | None
    channel: Channel | None
    external_id: str | None
    status: OrderStatus | None
    currency: str | None
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    version: int | None
    subtotal: Money | None
    shipping_fee: Money | None
    discount: Money | None
    total: Money | None
    refunded_amount: Money | None = strawberry.field(
        description="Refunds approved so far (each one signed by an approver)."
    )
    gross_margin: Money | None
    customer: Customer | None
    customer_name: str | None
    customer_phone: str | None
    shipping_address: Address | None
    payment_method: str | None
    payment_transaction_id: str | None
    carrier: str | None
    tracking_number: str | None
    internal_note: str | None
    lines: list[OrderLine] | None
    status_history: list[OrderStatusChange] | None

    @classmethod
    def from_model(cls, model: orders.Order, access: AccessProfile) -> Order | None:
        return cls(**ORDER(model, access))


ORDER = Projection.of(
    "Order",
    id=_id,
    number=attr("number"),
    channel=lambda m, _a: Channel(m.channel_code),
    external_id=attr("external_id"),
    status=attr("status"),
    currency=attr("currency"),
    created_at=attr("created_at"),
    updated_at=attr("updated_at"),
    version=attr("version"),
    subtotal=_money("subtotal_minor"),
    shipping_fee=_money("shipping_fee_minor"),
    discount=_money("discount_minor"),
    total=_money("total_minor"),
    refunded_amount=_money("refunded_minor"),
    gross_margin=_money("gross_margin_minor"),
    customer=lambda m, a: Customer.from_model(m.customer, a) if m.customer is not None else None,
    customer_name=attr("customer_name"),
    customer_phone=attr("customer_phone"),
    shipping_address=lambda m, a: Address.from_model(_ShippingAddress(m), a),
    payment_method=attr("payment_method"),
    payment_transaction_id=attr("payment_transaction_id"),
    carrier=attr("carrier"),
    tracking_number=attr("tracking_number"),
    internal_note=attr("internal_note"),
    lines=lambda m, a: [OrderLine(**ORDER_LINE(line, a)) for line in m.lines],
    status_history=lambda m, a: [
        OrderStatusChange(**STATUS_CHANGE(change, a)) for change in m.status_history
    ],
)


@strawberry.type(description="A customer, de-duplicated across channels.")
class Customer:
    id: strawberry.ID | None
    name: str | None
    phone: str | None
    email: str | None
    created_at: dt.datetime | None
    addresses: list[Address] | None
    _model_id: strawberry.Private[int]

    @strawberry.field(description="The customer's latest orders that the caller may see.")
    async def orders(self, info: Info, first: int = 10) -> list[Order] | None:
        from api.graphql.loaders import customer_orders

        ctx = info.context
        access = ctx.access
        if access.field_access("Customer.orders") is FieldAccess.NONE:
            return None
        found = await customer_orders(ctx, first).load(self._model_id)
        return [Order.from_model(o, access) for o in found]

    @classmethod
    def from_model(cls, model: customers.Customer, access: AccessProfile) -> Customer | None:
        return cls(**CUSTOMER(model, access), _model_id=model.id)


CUSTOMER = Projection.of(
    "Customer",
    id=_id,
    name=attr("name"),
    phone=attr("phone"),
    email=attr("email"),
    created_at=attr("created_at"),
    addresses=lambda m, a: [Address.from_model(address, a) for address in m.addresses],
)


@strawberry.type(description="Stock of one SKU in one warehouse.")
class StockItem:
    sku: str | None
    product_name: str | None
    warehouse: str | None
    on_hand: int | None
    reserved: int | None
    available: int | None
    safety_threshold: int | None
    unit_cost: Money | None
    updated_at: dt.datetime | None

    @classmethod
    def from_model(cls, model: catalog.StockItem, access: AccessProfile) -> StockItem | None:
        return cls(**STOCK_ITEM(model, access))


STOCK_ITEM = Projection.of(
    "StockItem",
    sku=attr("sku"),
    product_name=lambda m, _a: m.product.name,
    warehouse=attr("warehouse"),
    on_hand=attr("on_hand"),
    reserved=attr("reserved"),
    available=attr("available"),
    safety_threshold=attr("safety_threshold"),
    unit_cost=_money("unit_cost_minor"),
    updated_at=attr("updated_at"),
)

# Every governed type with its projection; a test checks these against the policy catalogue.
PROJECTIONS = {
    p.type_name: p for p in (ORDER, ORDER_LINE, STATUS_CHANGE, CUSTOMER, ADDRESS, STOCK_ITEM)
}
