"""Reading stock levels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain import pagination
from domain.actor import Actor
from domain.catalog.models import StockItem
from domain.errors import NotFound

ORDERING = "stock:ID:ASC"


@dataclass(frozen=True)
class StockFilter:
    sku: str | None = None
    warehouse: str | None = None
    below_safety_threshold: bool | None = None


def matching(actor: Actor, flt: StockFilter | None = None) -> Select[Any]:
    """Stock items matching the filter, which may only use fields the caller reads in full."""
    actor.access.require_full("StockItem.sku")
    flt = flt or StockFilter()
    stmt = select(StockItem)
    if flt.sku is not None:
        stmt = stmt.where(StockItem.sku == flt.sku)
    if flt.warehouse is not None:
        actor.access.require_full("StockItem.warehouse")
        stmt = stmt.where(StockItem.warehouse == flt.warehouse)
    if flt.below_safety_threshold is not None:
        actor.access.require_full("StockItem.available")
        actor.access.require_full("StockItem.safetyThreshold")
        below = (StockItem.on_hand - StockItem.reserved) < StockItem.safety_threshold
        stmt = stmt.where(below if flt.below_safety_threshold else ~below)
    return stmt


async def list_stock(
    *,
    session: AsyncSession,
    actor: Actor,
    flt: StockFilter | None = None,
    first: int | None = None,
    after: str | None = None,
    want_total: bool = True,
) -> pagination.Page[StockItem]:
    return await pagination.by_id(
        session,
        matching(actor, flt),
        StockItem.id,
        ordering=ORDERING,
        first=first,
        after=after,
        want_total=want_total,
    )


async def get_stock_item(
    *, session: AsyncSession, actor: Actor, sku: str, warehouse: str | None = None
) -> StockItem:
    """The stock of a SKU; with several warehouses and none named, the one with most on hand."""
    actor.access.require_full("StockItem.sku")
    stmt = select(StockItem).where(StockItem.sku == sku)
    if warehouse is not None:
        stmt = stmt.where(StockItem.warehouse == warehouse)
    item = await session.scalar(stmt.order_by(StockItem.on_hand.desc(), StockItem.id).limit(1))
    if item is None:
        raise NotFound("no such stock item")
    return item


async def get_stock_item_by_id(*, session: AsyncSession, actor: Actor, item_id: int) -> StockItem:
    """One stock item by its id (a `node(id:)` lookup)."""
    actor.access.require_full("StockItem.sku")
    item = await session.scalar(select(StockItem).where(StockItem.id == item_id))
    if item is None:
        raise NotFound("no such stock item")
    return item
