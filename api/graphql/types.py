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

from api.graphql.projection import Projection, note_read
from api.graphql.relay import Node, global_id
from api.graphql.scalars import Money
from domain.access import AccessProfile, FieldAccess
from domain.catalog import models as catalog
from domain.customers import models as customers
from domain.money import from_minor
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
    version: int | None = strawberry.field(
        description="Pass it as `expectedVersion` to `updateCustomerContact`."
    )
    phone_valid: bool | None = strawberry.field(
        description="Whether the phone is a valid number (E.164); null without a phone."
    )
    merged_into: strawberry.ID | None = strawberry.field(
        description=(
            "Set when this record was merged into another: the survivor's global ID (asking "
            "for a merged customer by its old ID answers with the survivor)."
        )
    )
    _model_id: strawberry.Private[int]

    async def _stats(self, info: Info, coordinate: str) -> Any:
        from api.graphql.loaders import customer_stats

        ctx = info.context
        if ctx.access.field_access(coordinate) is FieldAccess.NONE:
            return None
        return await customer_stats(ctx).load(self._model_id)

    @strawberry.field(description="How many of the customer's orders you may see.")
    async def order_count(self, info: Info) -> int | None:
        stats = await self._stats(info, "Customer.orderCount")
        return None if stats is None else stats.order_count

    @strawberry.field(
        description=(
            "Paid less refunded over those orders, in the currency most was spent in (see "
            "`totalSpentCurrency`)."
        )
    )
    async def total_spent(self, info: Info) -> Money | None:
        stats = await self._stats(info, "Customer.totalSpent")
        if stats is None:
            return None
        currency = stats.currency or "CNY"
        return from_minor(stats.spent_minor.get(currency, 0), currency)

    @strawberry.field(description="ISO 4217 code of `totalSpent`.")
    async def total_spent_currency(self, info: Info) -> str | None:
        stats = await self._stats(info, "Customer.totalSpentCurrency")
        return None if stats is None else (stats.currency or "CNY")

    @strawberry.field(description="When the latest of those orders was placed.")
    async def last_order_at(self, info: Info) -> dt.datetime | None:
        stats = await self._stats(info, "Customer.lastOrderAt")
        return None if stats is None else stats.last_order_at

    @strawberry.field(description="The channels the customer ordered on.")
    async def channels(self, info: Info) -> list[str] | None:
        stats = await self._stats(info, "Customer.channels")
        return None if stats is None else list(stats.channels)

    @strawberry.field(description="Returns registered against those orders.")
    async def returns(self, info: Info) -> int | None:
        stats = await self._stats(info, "Customer.returns")
        return None if stats is None else stats.returns

    @strawberry.field(description="Earlier values of name, phone, email and default address.")
    async def contact_history(self, info: Info) -> list[CustomerContactChange] | None:
        from api.graphql.loaders import customer_history

        ctx = info.context
        access = ctx.access
        if access.field_access("Customer.contactHistory") is FieldAccess.NONE:
            return None
        changes = await customer_history(ctx).load(self._model_id)
        return [CustomerContactChange.from_model(c, access) for c in changes]

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
    version=read("Customer.version"),
    phone_valid=read("Customer.phoneValid"),
    merged_into=lambda m, _a: (
        global_id("Customer", m.merged_into_id) if m.merged_into_id is not None else None
    ),
)

# The contact fields whose policy governs the values in a customer's history.
_HISTORY_FIELDS = {
    "name": "Customer.name",
    "phone": "Customer.phone",
    "email": "Customer.email",
    # A default address's earlier value is a street address: shown and audited as one.
    "defaultAddress": "Address.street",
}


@strawberry.type(description="One earlier value of a customer's contact field.")
class CustomerContactChange:
    field: str = strawberry.field(description="name, phone, email or defaultAddress.")
    before: str | None = strawberry.field(description="The value before (masked by policy).")
    after: str | None = strawberry.field(description="The value after (masked by policy).")
    source: str = strawberry.field(description="update, address, merge or unmerge.")
    at: dt.datetime = strawberry.field(description="When (ISO 8601 with offset).")

    @classmethod
    def from_model(cls, model: Any, access: AccessProfile) -> CustomerContactChange:
        coordinate = _HISTORY_FIELDS.get(model.field, "Customer.contactHistory")

        def shown(value: str | None) -> str | None:
            if value is None:
                return None
            return note_read(coordinate, access.present(coordinate, value))

        return cls(
            field=model.field,
            before=shown(model.before),
            after=shown(model.after),
            source=model.source,
            at=model.changed_at,
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
