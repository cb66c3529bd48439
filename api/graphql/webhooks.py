"""Webhooks for holders of `webhook:manage` (admin, integration): register, list, disable,
and the delivery log with redelivery. Delivery itself is `ordergate worker`'s
(domain/events/webhooks.py). A webhook's secret is never returned."""

from __future__ import annotations

import datetime as dt
import json
from enum import Enum

import strawberry
from strawberry.types import Info

from api.context import RequestContext
from api.graphql.relay import Connection, global_id, parse_id, selects
from domain import pagination
from domain.events import webhooks
from domain.events.service import EventType


@strawberry.enum(
    description=(
        "What happened, as events name it: to an order, or (`STOCK_CHANGED`, webhooks only) "
        "to the stock of a SKU in a warehouse."
    )
)
class OrderEventType(Enum):
    ORDER_CREATED = "ORDER_CREATED"
    ORDER_STATUS_CHANGED = "ORDER_STATUS_CHANGED"
    ORDER_PRICE_CHANGED = "ORDER_PRICE_CHANGED"
    ORDER_REFUNDED = "ORDER_REFUNDED"
    PICKING_LIST_CREATED = "PICKING_LIST_CREATED"
    ORDER_ESCALATED = "ORDER_ESCALATED"
    ORDER_ADDRESS_CHANGED = "ORDER_ADDRESS_CHANGED"
    STOCK_CHANGED = "STOCK_CHANGED"


# Every event a webhook can carry. Task events are read through `tasks`, and customer events
# through `customer` (their consumers are the salesperson's mail and the audit), not sent out.
assert {e.value for e in OrderEventType} == {
    e.value for e in EventType if not e.value.startswith(("TASK_", "CUSTOMER"))
}


@strawberry.enum(description="Where a delivery stands.")
class WebhookDeliveryStatus(Enum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


@strawberry.input(description="A URL to POST order events to.")
class WebhookInput:
    url: str
    events: list[OrderEventType]
    secret: str


@strawberry.type(description="A URL that receives order events.")
class Webhook:
    id: strawberry.ID
    url: str
    events: list[OrderEventType]
    created_at: dt.datetime
    disabled_at: dt.datetime | None

    @classmethod
    def from_model(cls, hook: webhooks.Webhook) -> Webhook:
        return cls(
            id=global_id("Webhook", hook.id),
            url=hook.url,
            events=[OrderEventType(e) for e in json.loads(hook.events)],
            created_at=hook.created_at,
            disabled_at=hook.disabled_at,
        )


@strawberry.type(description="One event sent, or to be sent, to one webhook.")
class WebhookDelivery:
    id: strawberry.ID
    webhook_id: strawberry.ID
    event_id: str
    seq: int
    status: WebhookDeliveryStatus
    attempts: int
    next_attempt_at: dt.datetime
    created_at: dt.datetime
    delivered_at: dt.datetime | None
    last_status: int | None
    last_error: str | None

    @classmethod
    def from_model(cls, d: webhooks.WebhookDelivery) -> WebhookDelivery:
        return cls(
            id=global_id("WebhookDelivery", d.id),
            webhook_id=global_id("Webhook", d.webhook_id),
            event_id=d.event_id,
            seq=d.seq,
            status=WebhookDeliveryStatus(d.status),
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at,
            created_at=d.created_at,
            delivered_at=d.delivered_at,
            last_status=d.last_status,
            last_error=d.last_error,
        )


@strawberry.type
class WebhookQueries:
    @strawberry.field(description="Every webhook. Holders of webhook:manage.")
    async def webhooks(self, info: Info[RequestContext, None]) -> list[Webhook] | None:
        ctx = info.context
        async with ctx.read() as session:
            found = await webhooks.list_webhooks(session=session, actor=ctx.require_actor())
        return [Webhook.from_model(h) for h in found]

    @strawberry.field(description="Deliveries, newest first. Holders of webhook:manage.")
    async def webhook_deliveries(
        self,
        info: Info[RequestContext, None],
        status: WebhookDeliveryStatus | None = None,
        first: int | None = 20,
        after: str | None = None,
    ) -> Connection[WebhookDelivery] | None:
        ctx = info.context
        stmt = webhooks.deliveries_query(
            ctx.require_actor(),
            webhooks.DeliveryStatus(status.value) if status is not None else None,
        )
        async with ctx.read() as session:
            page = await pagination.by_id(
                session,
                stmt,
                webhooks.WebhookDelivery.id,
                ordering=f"webhookDeliveries:{status.value if status else 'ALL'}:DESC",
                first=first,
                after=after,
                descending=True,
                want_total=selects(info, "totalCount"),
            )
        return Connection.from_page(page, WebhookDelivery.from_model)


@strawberry.type
class WebhookMutations:
    @strawberry.mutation(description="Register a URL for order events (http or https).")
    async def register_webhook(
        self, info: Info[RequestContext, None], input: WebhookInput
    ) -> Webhook | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="webhook.register", operation="registerWebhook", target_type="Webhook"
        ) as session:
            hook = await webhooks.register(
                session=session,
                actor=actor,
                url=input.url,
                events=[e.value for e in input.events],
                secret=input.secret,
                allow_private=not ctx.runtime.settings.production,
                sealer=ctx.runtime.sealer,
            )
            return Webhook.from_model(hook)

    @strawberry.mutation(description="Stop delivering to a webhook.")
    async def disable_webhook(
        self, info: Info[RequestContext, None], id: strawberry.ID
    ) -> Webhook | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="webhook.disable",
            operation="disableWebhook",
            target_type="Webhook",
            target_id=id,
        ) as session:
            hook = await webhooks.disable(
                session=session, actor=actor, webhook_id=parse_id(id, "webhook")
            )
            return Webhook.from_model(hook)

    @strawberry.mutation(description="Send a finished (FAILED or DELIVERED) delivery again.")
    async def redeliver_webhook(
        self, info: Info[RequestContext, None], id: strawberry.ID
    ) -> WebhookDelivery | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="webhook.redeliver",
            operation="redeliverWebhook",
            target_type="WebhookDelivery",
            target_id=id,
        ) as session:
            delivery = await webhooks.redeliver(
                session=session, actor=actor, delivery_id=parse_id(id, "webhook delivery")
            )
            return WebhookDelivery.from_model(delivery)
