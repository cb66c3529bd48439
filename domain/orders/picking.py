"""Picking lists: what the warehouse picks for an order once it is paid.

An order gets its picking list in the transaction that makes it PAID — ingested paid, or
moved to PAID — and only once (a unique order id; a replayed PAID finds it there). The list
names one warehouse: the one holding the most of the order's lines, so the fewest items need
moving between warehouses. An event (`PICKING_LIST_CREATED`) tells the warehouse's system.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column, relationship

from domain.catalog.models import StockItem
from domain.db import Base, UTCDateTime, utcnow
from domain.events import service as events
from domain.orders.models import Order, OrderLine

DEFAULT_WAREHOUSE = "SH-01"


class PickingStatus(StrEnum):
    OPEN = "OPEN"
    PICKED = "PICKED"
    CANCELLED = "CANCELLED"


class PickingList(Base):
    __tablename__ = "picking_lists"
    __table_args__ = (Index("ix_picking_lists_warehouse_status_id", "warehouse", "status", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), unique=True)
    warehouse: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    order: Mapped[Order] = relationship()
    lines: Mapped[list[PickingLine]] = relationship(
        back_populates="picking_list", order_by="PickingLine.id", cascade="all, delete-orphan"
    )


class PickingLine(Base):
    __tablename__ = "picking_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    picking_list_id: Mapped[int] = mapped_column(ForeignKey("picking_lists.id"), index=True)
    sku: Mapped[str] = mapped_column(String(64))
    product_name: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(Integer)

    picking_list: Mapped[PickingList] = relationship(back_populates="lines")


async def _warehouse_for(session: AsyncSession, lines: list[OrderLine]) -> str:
    wanted: dict[str, int] = {}
    for line in lines:
        wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
    rows = (
        await session.execute(
            select(StockItem.warehouse, StockItem.sku, StockItem.on_hand - StockItem.reserved)
            .where(StockItem.sku.in_(list(wanted)))
            .order_by(StockItem.warehouse)
        )
    ).all()
    covered: dict[str, int] = {}
    for warehouse, sku, available in rows:
        covered[warehouse] = covered.get(warehouse, 0) + min(max(available, 0), wanted[sku])
    if not covered:
        return DEFAULT_WAREHOUSE
    return max(sorted(covered), key=lambda w: covered[w])


async def open_for(*, session: AsyncSession, order: Order, at: dt.datetime) -> PickingList | None:
    """The order's picking list, created now unless it has one; None when it had one."""
    existing = await session.scalar(
        select(func.count()).select_from(PickingList).where(PickingList.order_id == order.id)
    )
    if existing:
        return None
    lines = list(
        (
            await session.scalars(
                select(OrderLine).where(OrderLine.order_id == order.id).order_by(OrderLine.id)
            )
        ).all()
    )
    warehouse = await _warehouse_for(session, lines)
    picking = PickingList(
        number=f"PK-{order.number}",
        order_id=order.id,
        warehouse=warehouse,
        status=PickingStatus.OPEN.value,
        created_at=at,
        lines=[
            PickingLine(sku=line.sku, product_name=line.name, quantity=line.quantity)
            for line in lines
        ],
    )
    session.add(picking)
    await session.flush()
    events.publish(
        session=session,
        type=events.EventType.PICKING_LIST_CREATED,
        aggregate_type="Order",
        aggregate_id=order.id,
        version=order.version,
        at=at,
        payload={"orderId": order.id, "pickingListId": picking.id, "warehouse": warehouse},
    )
    return picking
