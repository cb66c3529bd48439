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
    # First the bound: the last seq of the window to look at. Then the events up to it. Two
    # statements, and on PostgreSQL (READ COMMITTED) each sees the commits made before it
    # started, so the bound comes first: the events read are those of a snapshot at least as
    # new, and because seq follows commit order (the head row is locked until COMMIT), every
    # seq up to the bound had committed when the bound was read. Read the other way round, an
    # event committed between the two statements would be passed over by the next page.
    window = (
        select(OutboxEvent.seq)
        .where(OutboxEvent.seq > after, OutboxEvent.aggregate_type == "Order")
        .order_by(OutboxEvent.seq)
        .limit(MAX_SCAN)
    )
    if order_id is not None:
        window = window.where(OutboxEvent.aggregate_id == str(order_id))
    scanned = window.subquery()
    bound = int(
        await session.scalar(select(func.coalesce(func.max(scanned.c.seq), after))) or after
    )
    if bound == after:
        return FeedPage([], after)
    stmt = (
        select(
            OutboxEvent.seq,
            OutboxEvent.event_id,
            OutboxEvent.type,
            OutboxEvent.at,
            OutboxEvent.version,
            Order.id,
        )
        .join(Order, Order.id == order_key)
        .where(
            OutboxEvent.seq > after,
            OutboxEvent.seq <= bound,
            OutboxEvent.aggregate_type == "Order",
        )
        .order_by(OutboxEvent.seq)
        .limit(first)
    )
    if order_id is not None:
        stmt = stmt.where(OutboxEvent.aggregate_id == str(order_id))
    scope = orders_service.in_scope(actor)
    if scope is not None:
        stmt = stmt.where(scope)
    rows = (await session.execute(stmt)).all()
    # A full page resumes after its last event; otherwise everything up to the bound was seen.
    position = rows[-1].seq if len(rows) == first else bound
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
