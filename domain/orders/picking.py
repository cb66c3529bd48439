"""Picking lists: what the warehouse picks for an order once it is paid.

An order gets its picking list in the transaction that makes it PAID — ingested paid, or
moved to PAID — and only once (a unique order id; a replayed PAID finds it there). The list
names one warehouse: the one holding the most of the order's lines, so the fewest items need
moving between warehouses. An event (`PICKING_LIST_CREATED`) tells the warehouse's system.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, Select, String, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column, relationship

from domain.access import Action
from domain.actor import Actor
from domain.catalog.models import StockItem
from domain.db import Base, UTCDateTime, utcnow
from domain.errors import NotFound
from domain.events import service as events
from domain.inventory.models import ReservationStatus, StockReservation, StockReservationLine
from domain.orders import views
from domain.orders.models import Order, OrderLine
from domain.values import clean_text

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


def choose_warehouse(wanted: dict[str, int], stock: list[tuple[str, str, int]]) -> str:
    """The warehouse covering most of `wanted` (sku -> quantity) from `stock` rows of
    (warehouse, sku, available); ties go to the first by name, no stock to the default."""
    covered: dict[str, int] = {}
    for warehouse, sku, available in stock:
        if sku in wanted:
            covered[warehouse] = covered.get(warehouse, 0) + min(max(available, 0), wanted[sku])
    if not covered:
        return DEFAULT_WAREHOUSE
    return max(sorted(covered), key=lambda w: covered[w])


def stock_query(skus: Iterable[str]) -> Select[Any]:
    """The (warehouse, sku, available) rows `choose_warehouse` weighs."""
    return (
        select(StockItem.warehouse, StockItem.sku, StockItem.on_hand - StockItem.reserved)
        .where(StockItem.sku.in_(list(skus)))
        .order_by(StockItem.warehouse)
    )


async def _warehouse_for(session: AsyncSession, lines: list[OrderLine]) -> str:
    wanted: dict[str, int] = {}
    for line in lines:
        wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
    rows = (await session.execute(stock_query(wanted))).all()
    return choose_warehouse(wanted, [tuple(r) for r in rows])


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
    # Picked where the order's stock is held; an order that holds nothing, where it can best be.
    warehouse = await session.scalar(
        select(StockReservationLine.warehouse)
        .join(StockReservation, StockReservation.id == StockReservationLine.reservation_id)
        .where(
            StockReservation.order_id == order.id,
            StockReservation.status.in_([ReservationStatus.ACTIVE, ReservationStatus.CONFIRMED]),
        )
        .limit(1)
    ) or await _warehouse_for(session, lines)
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


async def cancel_for(*, session: AsyncSession, order_id: int) -> None:
    """An order cancelled before it was picked: its open list is cancelled too."""
    await session.execute(
        update(PickingList)
        .where(PickingList.order_id == order_id, PickingList.status == PickingStatus.OPEN.value)
        .values(status=PickingStatus.CANCELLED.value)
    )


# ---- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    picking: PickingList
    lines: list[PickingLine]
    order: Any  # a read-only view of the order (domain/orders/views.py)


def lists_query(
    *, actor: Actor, warehouse: str | None, status: PickingStatus | None
) -> Select[Any]:
    """Picking lists the caller may read (`picking:read`, and the order's row scope)."""
    from domain.orders.service import in_scope

    actor.access.require(Action.PICKING_READ)
    stmt = select(PickingList).join(Order, Order.id == PickingList.order_id)
    if warehouse is not None:
        stmt = stmt.where(
            PickingList.warehouse == clean_text(warehouse, what="warehouse", max_length=32)
        )
    if status is not None:
        stmt = stmt.where(PickingList.status == status.value)
    scope = in_scope(actor)
    return stmt if scope is None else stmt.where(scope)


async def with_contents(
    *, session: AsyncSession, lists: list[PickingList], include: frozenset[str]
) -> list[Found]:
    """The lists with their lines and orders (one statement each)."""
    if not lists:
        return []
    ids = [p.id for p in lists]
    lines: dict[int, list[PickingLine]] = {i: [] for i in ids}
    for line in (
        await session.scalars(
            select(PickingLine).where(PickingLine.picking_list_id.in_(ids)).order_by(PickingLine.id)
        )
    ).all():
        lines[line.picking_list_id].append(line)
    orders = {
        o.id: o
        for o in await views.load_orders(
            session, select(Order).where(Order.id.in_({p.order_id for p in lists})), include
        )
    }
    return [Found(p, lines[p.id], orders.get(p.order_id)) for p in lists]


async def get(
    *, session: AsyncSession, actor: Actor, picking_id: int, include: frozenset[str]
) -> Found:
    found = await session.scalar(
        lists_query(actor=actor, warehouse=None, status=None).where(PickingList.id == picking_id)
    )
    if found is None:
        raise NotFound("no such picking list")
    [result] = await with_contents(session=session, lists=[found], include=include)
    return result
