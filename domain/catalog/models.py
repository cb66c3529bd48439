from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from domain.db import Base, UTCDateTime, utcnow


class Product(Base):
    """A sellable SKU."""

    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    list_price_minor: Mapped[int] = mapped_column(Integer)
    # The product category KPIs are sliced by (BEAUTY, FOOD, APPAREL, HOME, DIGITAL, …).
    category: Mapped[str] = mapped_column(String(32), default="GENERAL", server_default="GENERAL")


class StockItem(Base):
    """Stock of one SKU in one warehouse."""

    __tablename__ = "stock_items"
    __table_args__ = (
        UniqueConstraint("sku", "warehouse"),
        CheckConstraint("on_hand >= 0", name="on_hand_not_negative"),
        CheckConstraint("reserved >= 0 AND reserved <= on_hand", name="reserved_within_on_hand"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), index=True)
    warehouse: Mapped[str] = mapped_column(String(32))
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    safety_threshold: Mapped[int] = mapped_column(Integer, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    unit_cost_minor: Mapped[int] = mapped_column(Integer)
    # Since when available stock has been below the safety threshold (None: it is not): the
    # edge a low-stock alert is raised on, once per crossing.
    low_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    product: Mapped[Product] = relationship(lazy="joined")

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved
