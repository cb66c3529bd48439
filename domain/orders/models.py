from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    CheckConstraint,
    Date,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from domain.customers.models import Customer
from domain.db import Base, UTCDateTime, utcnow
from domain.errors import Conflict
from domain.orders.rules import OrderStatus
from domain.values import check_minor

STATUS_ENUM = Enum(OrderStatus, name="order_status", native_enum=False, length=20)


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("channel_code", "external_id"),
        CheckConstraint("version >= 1", name="version_positive"),
        CheckConstraint("total_minor >= 0", name="total_not_negative"),
        CheckConstraint("refunded_minor >= 0", name="refunded_not_negative"),
        # The money invariant (see Order.check_money): never refund more than was paid.
        CheckConstraint("refunded_minor <= paid_minor", name="refunded_within_paid"),
        # Keyset pages: every documented filter and sort has an index that bounds its scan
        # (tests/integration/test_query_plans.py checks each with EXPLAIN on PostgreSQL).
        Index("ix_orders_created_at_id", "created_at", "id"),
        Index("ix_orders_total_minor_id", "total_minor", "id"),
        Index(
            "ix_orders_channel_status_created_at_id", "channel_code", "status", "created_at", "id"
        ),
        Index("ix_orders_status_created_at_id", "status", "created_at", "id"),
        Index("ix_orders_channel_created_at_id", "channel_code", "created_at", "id"),
        Index("ix_orders_customer_created_at_id", "customer_id", "created_at", "id"),
        Index("ix_orders_customer_phone", "customer_phone"),
        Index("ix_orders_channel_business_day", "channel_code", "business_day"),
        # Orders shipped in a time range (KPIs); unshipped orders are not in the index.
        Index(
            "ix_orders_shipped_at",
            "shipped_at",
            postgresql_where=text("shipped_at IS NOT NULL"),
            sqlite_where=text("shipped_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    # channel_code, status and customer_id lead composite indexes above (no single-column ones).
    channel_code: Mapped[str] = mapped_column(ForeignKey("channels.code"))
    external_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[OrderStatus] = mapped_column(STATUS_ENUM)
    currency: Mapped[str] = mapped_column(String(3))
    subtotal_minor: Mapped[int] = mapped_column(Integer)
    shipping_fee_minor: Mapped[int] = mapped_column(Integer, default=0)
    discount_minor: Mapped[int] = mapped_column(Integer, default=0)
    total_minor: Mapped[int] = mapped_column(Integer)
    gross_margin_minor: Mapped[int] = mapped_column(Integer)
    refunded_minor: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # What the customer actually paid, fixed when the order became PAID; refunds are capped by
    # it whatever happens to the total later.
    paid_minor: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    # Snapshot of who ordered, as the channel reported it at the time.
    customer_name: Mapped[str] = mapped_column(String(100))
    customer_phone: Mapped[str | None] = mapped_column(String(32))

    ship_recipient: Mapped[str] = mapped_column(String(100))
    ship_phone: Mapped[str] = mapped_column(String(32))
    ship_province: Mapped[str] = mapped_column(String(50))
    ship_city: Mapped[str] = mapped_column(String(50))
    ship_district: Mapped[str] = mapped_column(String(50))
    ship_street: Mapped[str] = mapped_column(String(200))
    ship_postal_code: Mapped[str | None] = mapped_column(String(12))

    payment_method: Mapped[str | None] = mapped_column(String(32))
    payment_transaction_id: Mapped[str | None] = mapped_column(String(64))
    carrier: Mapped[str | None] = mapped_column(String(32))
    tracking_number: Mapped[str | None] = mapped_column(String(64))
    internal_note: Mapped[str | None] = mapped_column(Text)

    version: Mapped[int] = mapped_column(Integer, default=1)
    # The day the order was created on, in the business timezone (not UTC's day): what daily
    # queues, reports and reconciliation go by. Set by the intake; older rows may lack it.
    business_day: Mapped[dt.date | None] = mapped_column(Date)
    # When the customer paid and when the parcel left: processing time and timeliness KPIs.
    paid_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    shipped_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # When the order was escalated to the manual channel for waiting too long (set once).
    escalated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The SHA-256 of what a channel may never change about an ingested order (lines, money,
    # buyer, address, creation time): a resubmission with another digest is a conflict.
    intake_digest: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    customer: Mapped[Customer | None] = relationship()
    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order", order_by="OrderLine.id", cascade="all, delete-orphan"
    )
    status_history: Mapped[list[OrderStatusChange]] = relationship(
        back_populates="order", order_by="OrderStatusChange.id", cascade="all, delete-orphan"
    )

    __mapper_args__ = {"version_id_col": version}

    def check_money(self) -> None:
        """The order's money invariant, checked by every change that touches money:
        0 ≤ refunded ≤ paid, the total never below what has been refunded, and every amount
        within what its column holds."""
        for what, minor in (
            ("subtotal", self.subtotal_minor),
            ("total", self.total_minor),
            ("paid", self.paid_minor),
            ("refunded", self.refunded_minor),
        ):
            check_minor(minor, what=f"the order's {what}")
        if not 0 <= self.refunded_minor <= self.paid_minor:
            raise Conflict("refunds would exceed the amount paid")
        if self.total_minor < self.refunded_minor:
            raise Conflict("the order's total would fall below what has been refunded")


class OrderLine(Base):
    __tablename__ = "order_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    name: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_minor: Mapped[int] = mapped_column(Integer)
    cost_price_minor: Mapped[int] = mapped_column(Integer)

    order: Mapped[Order] = relationship(back_populates="lines")


class OrderStatusChange(Base):
    __tablename__ = "order_status_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    from_status: Mapped[OrderStatus | None] = mapped_column(STATUS_ENUM)
    to_status: Mapped[OrderStatus] = mapped_column(STATUS_ENUM)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor_username: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    note: Mapped[str | None] = mapped_column(Text)

    order: Mapped[Order] = relationship(back_populates="status_history")
