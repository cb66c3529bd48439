"""Stock reservations and the stock ledger.

`stock_items.on_hand` and `stock_items.reserved` are only ever changed together with a
`StockMovement` row in the same transaction, so the movements of a SKU in a warehouse always
add up to its stock (migration 0018 opened the ledger with each item's stock at the time).
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from domain.db import Base, UTCDateTime, utcnow


class ReservationStatus(StrEnum):
    ACTIVE = "ACTIVE"  # holding stock until paid, released or expired
    CONFIRMED = "CONFIRMED"  # paid: holds its stock until it ships or is released
    RELEASED = "RELEASED"
    EXPIRED = "EXPIRED"
    SHIPPED = "SHIPPED"  # its stock left the warehouse with the order


class MovementReason(StrEnum):
    OPENING = "OPENING"  # the stock when the ledger began
    RESERVE = "RESERVE"
    RELEASE = "RELEASE"
    EXPIRE = "EXPIRE"
    RECEIPT = "RECEIPT"
    CORRECTION = "CORRECTION"
    SHIP = "SHIP"  # a reserved quantity left with its order
    POOL = "POOL"  # carved out of available stock for a promotion pool
    POOL_RETURN = "POOL_RETURN"  # what a closed pool had left, back to available stock
    RETURN = "RETURN"  # a customer's return, inspected and sellable again


class StockReservation(Base):
    __tablename__ = "stock_reservations"
    __table_args__ = (Index("ix_stock_reservations_status_expires", "status", "expires_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    # The order it holds stock for (an unpaid channel order), or none (a web shop checkout).
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), unique=True)
    status: Mapped[ReservationStatus] = mapped_column(
        Enum(ReservationStatus, native_enum=False, length=16, validate_strings=True)
    )
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    digest: Mapped[str] = mapped_column(String(64))  # of the lines, for replays
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    lines: Mapped[list[StockReservationLine]] = relationship(
        order_by="StockReservationLine.id", cascade="all, delete-orphan", lazy="selectin"
    )


class StockReservationLine(Base):
    __tablename__ = "stock_reservation_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reservation_id: Mapped[int] = mapped_column(ForeignKey("stock_reservations.id"), index=True)
    sku: Mapped[str] = mapped_column(String(64))
    warehouse: Mapped[str] = mapped_column(String(32))
    quantity: Mapped[int] = mapped_column(Integer)
    # Drawn from this promotion pool rather than the main stock.
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("stock_pools.id"))


class StockPool(Base):
    """Stock set aside for a campaign window: counted in the item's `reserved` from creation
    until it closes, drawn down by the campaign's reservations only."""

    __tablename__ = "stock_pools"
    __table_args__ = (
        CheckConstraint("remaining >= 0 AND remaining <= quantity", name="remaining_within"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    sku: Mapped[str] = mapped_column(String(64))
    warehouse: Mapped[str] = mapped_column(String(32))
    quantity: Mapped[int] = mapped_column(Integer)
    remaining: Mapped[int] = mapped_column(Integer)
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    returned: Mapped[int | None] = mapped_column(Integer)  # what went back when it closed


class StockMovement(Base):
    """One change of a stock item's on-hand or reserved quantity, and why."""

    __tablename__ = "stock_movements"
    __table_args__ = (Index("ix_stock_movements_sku_warehouse_id", "sku", "warehouse", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    sku: Mapped[str] = mapped_column(String(64))
    warehouse: Mapped[str] = mapped_column(String(32))
    on_hand_delta: Mapped[int] = mapped_column(Integer)
    reserved_delta: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str] = mapped_column(String(100))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor_username: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    unit_cost_minor: Mapped[int] = mapped_column(Integer)


class ReturnDisposition(StrEnum):
    RESTOCK = "RESTOCK"  # sellable again: back to on hand
    DAMAGED = "DAMAGED"  # not sellable: recorded, stock unchanged


class StockReturn(Base):
    """Goods a customer sent back, as registered by the warehouse after inspection."""

    __tablename__ = "stock_returns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    inspected_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    registered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    sla_breached: Mapped[bool] = mapped_column(Boolean)
    registered_by: Mapped[str] = mapped_column(String(64))

    lines: Mapped[list[StockReturnLine]] = relationship(
        order_by="StockReturnLine.id", cascade="all, delete-orphan", lazy="selectin"
    )


class StockReturnLine(Base):
    __tablename__ = "stock_return_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    return_id: Mapped[int] = mapped_column(ForeignKey("stock_returns.id"), index=True)
    # One registration per order line: registering it again is a replay, not a second restock.
    order_line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id"), unique=True)
    sku: Mapped[str] = mapped_column(String(64))
    warehouse: Mapped[str] = mapped_column(String(32))
    quantity: Mapped[int] = mapped_column(Integer)
    disposition: Mapped[ReturnDisposition] = mapped_column(
        Enum(ReturnDisposition, native_enum=False, length=16, validate_strings=True)
    )


class StockCount(Base):
    """A physical count of a warehouse, compared with the system's quantities as of the time
    it was counted."""

    __tablename__ = "stock_counts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    warehouse: Mapped[str] = mapped_column(String(32))
    counted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    submitted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    submitted_by: Mapped[str] = mapped_column(String(64))

    lines: Mapped[list[StockCountLine]] = relationship(
        order_by="StockCountLine.id", cascade="all, delete-orphan", lazy="selectin"
    )


class StockCountLine(Base):
    __tablename__ = "stock_count_lines"
    __table_args__ = (Index("ix_stock_count_lines_sku_count", "sku", "count_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    count_id: Mapped[int] = mapped_column(ForeignKey("stock_counts.id"), index=True)
    sku: Mapped[str] = mapped_column(String(64))
    system: Mapped[int] = mapped_column(Integer)  # on hand as of counted_at
    counted: Mapped[int] = mapped_column(Integer)
    # (counted - system) / system in hundredths of a percent; 10000 = +100% (system 0).
    delta_basis_points: Mapped[int] = mapped_column(Integer)
    traced: Mapped[bool] = mapped_column(Boolean)


class StockAlert(Base):
    """Available stock of a SKU in a warehouse fell below its safety threshold: raised once
    per crossing (in the transaction of the change), mailed by the worker."""

    __tablename__ = "stock_alerts"
    __table_args__ = (Index("ix_stock_alerts_pending", "notified_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(String(64))
    warehouse: Mapped[str] = mapped_column(String(32))
    available: Mapped[int] = mapped_column(Integer)
    threshold: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    notified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    recipients: Mapped[int] = mapped_column(Integer, default=0)  # how many were written to
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))


class ReturnInspection(Base):
    """A returned parcel the warehouse has inspected, before its return is registered: the
    two-hour clock for registering it runs from `inspected_at`."""

    __tablename__ = "return_inspections"
    __table_args__ = (Index("ix_return_inspections_open", "return_id", "inspected_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    inspected_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    recorded_by: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # The registration that followed (None while the parcel waits to be registered).
    return_id: Mapped[int | None] = mapped_column(ForeignKey("stock_returns.id"))
    overdue_task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"))
