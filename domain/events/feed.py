"""Reading order events as a person: the events of the orders the caller may read, in `seq`
order, each with its order loaded for rendering under the caller's field policy.

Serves both the `orderEvents` history query and the `orderEvents` subscription. The row scope
is applied in the query itself (a join on the order), so a page is never emptied by another
channel's events and nothing outside the scope is read at all.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Integer, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.actor import Actor
from domain.errors import BadInput
from domain.events.models import OutboxEvent
from domain.orders import service as orders_service
from domain.orders import views
from domain.orders.models import Order

MAX_PAGE = 200
# A page of history reads at most this many events before answering with what it found, so a
# caller whose scope holds few of the events cannot make one request scan the whole log.
MAX_SCAN = 5000


@dataclass(frozen=True)
class FeedEvent:
    seq: int
    event_id: str
    type: str
    at: dt.datetime
    version: int
    order: Any  # a read-only view of the order (domain/orders/views.py)


@dataclass(frozen=True)
class FeedPage:
    events: list[FeedEvent]
    # The last seq this page looked at: resume after it. Beyond the last event returned when
    # events outside the caller's scope followed it.
    position: int


async def latest_seq(*, session: AsyncSession) -> int:
    """The seq of the newest committed event (0 when there is none)."""
    return int(await session.scalar(select(func.coalesce(func.max(OutboxEvent.seq), 0))) or 0)


async def order_events(
    *,
    session: AsyncSession,
    actor: Actor,
    after: int = 0,
    first: int = 50,
    order_id: int | None = None,
    include: frozenset[str] = orders_service.EVERYTHING,
) -> FeedPage:
    """Up to `first` events after `after` of orders in the caller's row scope, oldest first.

    Readable by whoever may read orders (`Order.id` in full); the order of each event is its
    current state, to be presented with the caller's field policy. `include` names the
    relations to load with each order (see `orders_service.EVERYTHING`)."""
    actor.access.require_full("Order.id")
    if after < 0:
        raise BadInput("`after` is a sequence number: 0 or more")
    if not 1 <= first <= MAX_PAGE:
        raise BadInput(f"`first` must be between 1 and {MAX_PAGE}")
    order_key = cast(OutboxEvent.aggregate_id, BigInteger().with_variant(Integer, "sqlite"))
    window = (
        select(OutboxEvent.seq)
        .where(OutboxEvent.seq > after, OutboxEvent.aggregate_type == "Order")
        .order_by(OutboxEvent.seq)
        .limit(MAX_SCAN)
    )
    if order_id is not None:
        window = window.where(OutboxEvent.aggregate_id == str(order_id))
    scanned = window.subquery()
    stmt = (
        select(
            OutboxEvent.seq,
            OutboxEvent.event_id,
            OutboxEvent.type,
            OutboxEvent.at,
            OutboxEvent.version,
            Order.id,
        )
        .join(scanned, scanned.c.seq == OutboxEvent.seq)
        .join(Order, Order.id == order_key)
        .order_by(OutboxEvent.seq)
        .limit(first)
    )
    scope = orders_service.in_scope(actor)
    if scope is not None:
        stmt = stmt.where(scope)
    rows = (await session.execute(stmt)).all()
    if len(rows) == first:
        position = rows[-1].seq
    else:  # everything up to the end of the scanned window was looked at
        position = int(
            await session.scalar(select(func.coalesce(func.max(scanned.c.seq), after))) or after
        )
    if not rows:
        return FeedPage([], position)
    loaded = await views.load_orders(
        session, select(Order).where(Order.id.in_({r.id for r in rows})), include
    )
    by_id = {o.id: o for o in loaded}
    events = [
        FeedEvent(r.seq, r.event_id, r.type, r.at, r.version, by_id[r.id])
        for r in rows
        if r.id in by_id
    ]
    return FeedPage(events, position)
