"""Order events as a person reads them: the `orderEvents` history query and the `orderEvents`
subscription (graphql-transport-ws at /graphql).

Both serve the events of the orders in the caller's row scope, each with the order as it is
now, presented under the caller's field policy exactly as the `order` query would present it.
Events are audited as deliveries (`events.delivered`: how many, which seq range, which
orders, which personal fields) rather than as reads, one record per batch sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncGenerator
from typing import Annotated, Any

import strawberry
from strawberry.types import Info

from api import metrics
from api.auth.authenticate import authenticate
from api.context import RequestContext
from api.graphql.projection import READ_SCOPE, ReadScope
from api.graphql.relay import parse_id
from api.graphql.types import Order
from api.graphql.webhooks import OrderEventType
from domain.access import COORDINATES, FieldAccess
from domain.actor import Actor
from domain.errors import RateLimited, Unauthenticated
from domain.events import feed
from domain.orders import service as orders_service

BATCH = 100
# Close codes (graphql-transport-ws leaves 4xxx to the application; 4401 as for Unauthorized).
TOKEN_EXPIRED = 4401


@strawberry.type(description="One change to an order, in the global order of commits.")
class OrderEvent:
    seq: int = strawberry.field(
        description="Position in the event log: pass the last one seen as `after` to resume."
    )
    event_id: str = strawberry.field(description="Unique per event: de-duplicate on it.")
    type: OrderEventType = strawberry.field(description="What happened.")
    at: dt.datetime = strawberry.field(description="When the change committed.")
    version: int = strawberry.field(description="The order's version after this change.")
    order: Order | None = strawberry.field(
        description="The order as it is now, under the caller's field policy."
    )


def _include(actor: Actor, scope: ReadScope | None) -> frozenset[str]:
    """The relations each order is loaded with: those the operation selects and may read."""
    if scope is None:
        return orders_service.EVERYTHING
    return frozenset(
        c
        for c in orders_service.EVERYTHING & scope.asked
        if actor.access.field_access(c) is not FieldAccess.NONE
    )


def _present(events: list[feed.FeedEvent], actor: Actor, scope: ReadScope) -> list[OrderEvent]:
    token = READ_SCOPE.set(scope)  # the projection reads only the selected fields, and counts
    try:
        return [
            OrderEvent(
                seq=e.seq,
                event_id=e.event_id,
                type=OrderEventType(e.type),
                at=e.at,
                version=e.version,
                order=Order.from_model(e.order, actor.access),
            )
            for e in events
        ]
    finally:
        READ_SCOPE.reset(token)


async def _record_delivery(
    ctx: RequestContext, events: list[feed.FeedEvent], scope: ReadScope, via: str
) -> None:
    access = ctx.require_actor().access.fields
    await ctx.record(
        action="events.delivered",
        operation="orderEvents",
        details={
            "via": via,
            "events": len(events),
            "fromSeq": events[0].seq,
            "toSeq": events[-1].seq,
            "orders": sorted({e.order.id for e in events})[:100],
            "returned": {
                c: {"records": n, "access": str(access[c])} for c, n in sorted(scope.tally.items())
            },
        },
    )


@strawberry.type
class EventQueries:
    @strawberry.field(
        description="Events of the orders the caller may read, oldest first, after `after`."
    )
    async def order_events(
        self,
        info: Info[RequestContext, None],
        after: Annotated[
            int, strawberry.argument(description="A seq; 0 reads from the beginning.")
        ] = 0,
        first: Annotated[
            int, strawberry.argument(description=f"At most this many (1 to {feed.MAX_PAGE}).")
        ] = 50,
        order_id: Annotated[
            strawberry.ID | None, strawberry.argument(description="Only this order's events.")
        ] = None,
    ) -> list[OrderEvent]:
        ctx = info.context
        actor = ctx.require_actor()
        # The operation's own scope counts what it returns for the read audit; these fields
        # are counted apart, for the delivery record.
        outer = READ_SCOPE.get()
        scope = ReadScope(asked=outer.asked if outer is not None else frozenset(COORDINATES))
        async with ctx.read(replica=True) as session:
            page = await feed.order_events(
                session=session,
                actor=actor,
                after=after,
                first=first,
                order_id=parse_id(order_id, "order") if order_id is not None else None,
                include=_include(actor, scope),
            )
        events = _present(page.events, actor, scope)
        if events:
            await _record_delivery(ctx, page.events, scope, via="query")
        return events


@strawberry.type
class EventSubscriptions:
    @strawberry.subscription(
        description=(
            "Events of the orders the caller may read, as they commit. With `after`, first "
            "the events since that seq (resume where a dropped connection stopped); without "
            "it, from now on. The socket closes (4401) when the token expires or the account "
            "is disabled or logged out."
        )
    )
    async def order_events(
        self,
        info: Info[RequestContext, None],
        after: Annotated[
            int | None, strawberry.argument(description="Resume after this seq.")
        ] = None,
    ) -> AsyncGenerator[OrderEvent, None]:
        ctx = info.context
        actor = ctx.require_actor()
        # Each running subscription counts against its account's bound and keeps the socket
        # from being closed as idle (api/sockets.py).
        try:
            with ctx.runtime.sockets.subscription(ctx.socket_account or str(actor.user_id)):
                ctx.subscriptions += 1
                try:
                    async for event in _follow(ctx, actor, after):
                        yield event
                finally:
                    ctx.subscriptions -= 1
                    if not ctx.subscriptions:
                        ctx.idle_since = time.monotonic()
        except RateLimited:
            metrics.SOCKET_BOUNDS.labels(bound="subscriptions").inc()
            raise


async def _follow(
    ctx: RequestContext, actor: Actor, after: int | None
) -> AsyncGenerator[OrderEvent, None]:
    """The events of one subscription, from `after` (or from now) for as long as its token
    and account last."""
    asked = ctx.read_scope.asked if ctx.read_scope is not None else frozenset()
    settings = ctx.runtime.settings
    include = _include(actor, ctx.read_scope)
    async with ctx.read() as session:
        actor.access.require_full("Order.id")
        position = after if after is not None else await feed.latest_seq(session=session)
        await session.commit()
    checked = time.monotonic()
    while True:
        left = (ctx.token_expires or float("inf")) - time.time()
        if left <= 0:
            await _disconnect(ctx, "token expired")
            return
        if time.monotonic() - checked >= settings.subscription_recheck_seconds:
            try:
                actor = await _recheck(ctx)
            except Unauthenticated as exc:
                await _disconnect(ctx, exc.message)
                return
            include = _include(actor, ctx.read_scope)
            checked = time.monotonic()
        page = await _next_page(ctx, actor, position, include)
        scope = ReadScope(asked=asked)
        sent = _present(page.events, actor, scope)
        for event in sent:
            yield event
        if sent:
            await _record_delivery(ctx, page.events, scope, via="subscription")
        moved = page.position > position
        position = page.position
        if not moved or len(page.events) < BATCH:
            recheck_in = settings.subscription_recheck_seconds - (time.monotonic() - checked)
            await ctx.runtime.feed.wait_beyond(
                position, seconds=max(0.05, min(left, recheck_in, 30.0))
            )


# Subscribers woken by the same commit that would read the same page (same account, access,
# position and relations) share one read: 400 subscriptions of one account cost one query per
# wake-up, not 400 (issue #30, M3). Only reads in flight are kept, so this holds at most one
# entry per distinct running read.
_READING: dict[tuple[Any, ...], asyncio.Future[feed.FeedPage | None]] = {}


async def _next_page(
    ctx: RequestContext, actor: Actor, position: int, include: frozenset[str]
) -> feed.FeedPage:
    key = (
        id(ctx.runtime),
        actor.user_id,
        actor.roles,
        actor.channels,
        id(actor.access),
        position,
        include,
    )
    shared = _READING.get(key)
    if shared is not None:
        page = await asyncio.shield(shared)
        if page is not None:
            return page
        # The reader failed or was closed: read for ourselves.
    future: asyncio.Future[feed.FeedPage | None] = asyncio.get_running_loop().create_future()
    _READING[key] = future
    page = None
    try:
        async with ctx.read() as session:
            page = await feed.order_events(
                session=session, actor=actor, after=position, first=BATCH, include=include
            )
            await session.commit()  # the connection goes back to the pool between batches
    finally:
        if _READING.get(key) is future:
            del _READING[key]
        future.set_result(page)
    return page


async def _recheck(ctx: RequestContext) -> Actor:
    """The account again, as on every HTTP request: disabled, logged out everywhere or given
    other roles since the socket opened."""
    async with ctx.read() as session:
        try:
            actor = await authenticate(
                ctx.token_header, session=session, runtime=ctx.runtime, origin=ctx.origin
            )
        finally:
            await session.commit()
    ctx.actor = actor
    return actor


async def _disconnect(ctx: RequestContext, reason: str) -> None:
    """Close the socket, then wait for the protocol handler to end this operation."""
    socket: Any = ctx.request
    with contextlib.suppress(RuntimeError):  # already closed by the client
        await socket.close(code=TOKEN_EXPIRED, reason=reason)
    await asyncio.sleep(30)
