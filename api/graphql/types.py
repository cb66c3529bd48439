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

from api.graphql.projection import Projection
from api.graphql.relay import Node, global_id
from api.graphql.scalars import Money
from domain.access import AccessProfile, FieldAccess
from domain.catalog import models as catalog
from domain.customers import models as customers
from domain.orders import models as orders
from domain.orders.rules import OrderStatus as DomainOrderStatus
from domain.readers import READERS

OrderStatus = strawberry.enum(DomainOrderStatus, name="OrderStatus")


@strawberry.enum
class Channel(Enum):
    TAOBAO = "TAOBAO"
    JD = "JD"
    PINDUODUO = "PINDUODUO"
    WEB = "WEB"


def read(coordinate: str) -> Any:
    """A projection getter for a scalar field, reading through the domain's reader."""
    reader = READERS[coordinate]
    return lambda model, _access: reader(model)


def _id(type_name: str) -> Any:
    """A projection getter for a node's global ID."""
    return lambda model, _access: global_id(type_name, model.id)


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
    recipient=read("Address.recipient"),
    phone=read("Address.phone"),
    province=read("Address.province"),
    city=read("Address.city"),
    district=read("Address.district"),
    street=read("Address.street"),
    postal_code=read("Address.postalCode"),
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
    from_=read("OrderStatusChange.from"),
    to=read("OrderStatusChange.to"),
    actor=read("OrderStatusChange.actor"),
    at=read("OrderStatusChange.at"),
    note=read("OrderStatusChange.note"),
)


@strawberry.type
class OrderLine(Node):
    sku: str | None
    name: str | None
    quantity: int | None
    unit_price: Money | None
    line_total: Money | None
    cost_price: Money | None


ORDER_LINE = Projection.of(
    "OrderLine",
    id=_id("OrderLine"),
    sku=read("OrderLine.sku"),
    name=read("OrderLine.name"),
    quantity=read("OrderLine.quantity"),
    unit_price=read("OrderLine.unitPrice"),
    line_total=read("OrderLine.lineTotal"),
    cost_price=read("OrderLine.costPrice"),
)


@strawberry.type(description="An order from one sales channel. Restricted fields are nullable.")
class Order(Node):
    number: str | None
    channel: Channel | None
    external_id: str | None
    status: OrderStatus | None
    currency: str | None
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    business_day: dt.date | None
    escalated_at: dt.datetime | None
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
    def from_model(cls, model: orders.Order, access: AccessProfile) -> Order:
        return cls(**ORDER(model, access))


ORDER = Projection.of(
    "Order",
    id=_id("Order"),
    number=read("Order.number"),
    channel=lambda m, _a: Channel(m.channel_code),
    external_id=read("Order.externalId"),
    status=read("Order.status"),
    currency=read("Order.currency"),
    created_at=read("Order.createdAt"),
    updated_at=read("Order.updatedAt"),
    business_day=read("Order.businessDay"),
    escalated_at=read("Order.escalatedAt"),
    version=read("Order.version"),
    subtotal=read("Order.subtotal"),
    shipping_fee=read("Order.shippingFee"),
    discount=read("Order.discount"),
    total=read("Order.total"),
    refunded_amount=read("Order.refundedAmount"),
    gross_margin=read("Order.grossMargin"),
    customer=lambda m, a: Customer.from_model(m.customer, a) if m.customer is not None else None,
    customer_name=read("Order.customerName"),
    customer_phone=read("Order.customerPhone"),
    shipping_address=lambda m, a: Address.from_model(_ShippingAddress(m), a),
    payment_method=read("Order.paymentMethod"),
    payment_transaction_id=read("Order.paymentTransactionId"),
    carrier=read("Order.carrier"),
    tracking_number=read("Order.trackingNumber"),
    internal_note=read("Order.internalNote"),
    lines=lambda m, a: [OrderLine(**ORDER_LINE(line, a)) for line in m.lines],
    status_history=lambda m, a: [
        OrderStatusChange(**STATUS_CHANGE(change, a)) for change in m.status_history
    ],
)


@strawberry.type(description="A customer, de-duplicated across channels.")
class Customer(Node):
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
        from api.graphql.orders import relations_read

        found = await customer_orders(ctx, first, relations_read(ctx.require_actor())).load(
            self._model_id
        )
        return [Order.from_model(o, access) for o in found]

    @classmethod
    def from_model(cls, model: customers.Customer, access: AccessProfile) -> Customer:
        return cls(**CUSTOMER(model, access), _model_id=model.id)


CUSTOMER = Projection.of(
    "Customer",
    id=_id("Customer"),
    name=read("Customer.name"),
    phone=read("Customer.phone"),
    email=read("Customer.email"),
    created_at=read("Customer.createdAt"),
    addresses=lambda m, a: [Address.from_model(address, a) for address in m.addresses],
)


@strawberry.type(description="Stock of one SKU in one warehouse.")
class StockItem(Node):
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
    def from_model(cls, model: catalog.StockItem, access: AccessProfile) -> StockItem:
        return cls(**STOCK_ITEM(model, access))


STOCK_ITEM = Projection.of(
    "StockItem",
    id=_id("StockItem"),
    sku=read("StockItem.sku"),
    product_name=read("StockItem.productName"),
    warehouse=read("StockItem.warehouse"),
    on_hand=read("StockItem.onHand"),
    reserved=read("StockItem.reserved"),
    available=read("StockItem.available"),
    safety_threshold=read("StockItem.safetyThreshold"),
    unit_cost=read("StockItem.unitCost"),
    updated_at=read("StockItem.updatedAt"),
)

# Every governed type with its projection; a test checks these against the policy catalogue.
PROJECTIONS = {
    p.type_name: p for p in (ORDER, ORDER_LINE, STATUS_CHANGE, CUSTOMER, ADDRESS, STOCK_ITEM)
}
