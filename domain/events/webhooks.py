"""Webhooks: every committed order event, delivered to the URLs that asked for it.

`fan_out` turns outbox events into one delivery per subscribed webhook, rendering the order as
the webhook's registrant may see it (field policy, row scope: an order outside their scope is
not delivered), and stores the exact body so every retry sends the same bytes. Deliveries go
out per webhook, in order: a worker leases a webhook (`claim`, a short transaction; PostgreSQL
`FOR UPDATE SKIP LOCKED`, so two workers never serve one URL at once), sends its due
deliveries one after another with no transaction open while the receiver answers, and commits
each outcome as soon as it is known (`serve`). A worker that dies mid-send leaves a lease that
runs out after LEASE; the delivery is then sent again — consumers de-duplicate on the event id.
`ordergate worker` serves each leased webhook in a task of its own (`Deliverer`), so a slow
receiver delays only its own queue. Failures back off exponentially with jitter; after
GIVE_UP_AFTER (24 h) a delivery is FAILED and `redeliver` sends it again. A webhook that keeps
failing is paused for a while (circuit breaker) so it cannot hold up the others.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum, StrEnum
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from domain.access import Action, FieldAccess, PolicyDecisionPoint, RowScope
from domain.actor import Actor, Origin
from domain.audit import service as audit
from domain.audit.service import Subject
from domain.catalog.models import StockItem
from domain.db import Base, UTCDateTime, utcnow
from domain.errors import BadInput, NotFound
from domain.events.models import OutboxEvent, OutboxHead
from domain.events.service import EventType
from domain.orders.models import Order
from domain.readers import READERS
from domain.sealed import Sealer
from domain.users.models import User
from domain.values import clean_text

GIVE_UP_AFTER = dt.timedelta(hours=24)
FIRST_RETRY = dt.timedelta(seconds=10)
LONGEST_RETRY = dt.timedelta(hours=1)
BREAK_AFTER = 5  # consecutive failures
PAUSE = dt.timedelta(minutes=5)
TIMEOUT_SECONDS = 10  # a receiver's answer (ORDERGATE_WEBHOOK_TIMEOUT_SECONDS)
GATHER_SECONDS = 0.05  # outcomes known within this are committed together
READ_BATCH = 50  # deliveries a webhook's server reads at a time


def lease_for(timeout_seconds: float) -> dt.timedelta:
    """How long a claimed webhook stays its worker's without news: renewed with every outcome
    (no send outlasts the timeout), so a live worker keeps it through a long queue, and one
    that died gives it up within one timeout and five seconds."""
    return dt.timedelta(seconds=timeout_seconds + 5)


log = logging.getLogger("ordergate.webhooks")
WORKER_ORIGIN = Origin(client_ip="local", peer_ip="local", user_agent="ordergate-worker")
_ORDER_FIELDS = tuple(c for c in READERS if c.startswith("Order."))
_STOCK_FIELDS = tuple(c for c in READERS if c.startswith("StockItem."))


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


class Webhook(Base):
    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[str] = mapped_column(Text)  # JSON list of event types
    # The HMAC key shared with the receiver, sealed (domain/sealed.py): needed to sign, so
    # kept, but never as given (issue #30).
    secret: Mapped[str] = mapped_column(Text)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    paused_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Which worker serves it until when (`claim`); null while no worker does.
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The last event committed when it was registered: it receives the events after it, not
    # the history before it (however far the fan-out cursor lags).
    starts_after_seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), default=0, server_default="0"
    )


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    # A webhook's queue in order: what each round reads.
    __table_args__ = (Index("ix_webhook_deliveries_queue", "webhook_id", "status", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id"))
    event_id: Mapped[str] = mapped_column(String(36))
    seq: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)  # the exact bytes sent (UTF-8), signed as they are
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))


class OutboxCursor(Base):
    """How far a consumer of the outbox has read (one row per consumer)."""

    __tablename__ = "outbox_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)


# ---- registering ------------------------------------------------------------------------------


def check_url(url: str, *, allow_private: bool) -> str:
    """http(s) only; in production (`allow_private=False`) no loopback, private, link-local or
    otherwise internal target, by literal address or by what the name resolves to (SSRF)."""
    url = clean_text(url, what="url", max_length=2000)
    try:
        # urllib raises for a broken bracketed host (`http://[::1/x`) and a port out of range
        # (`:99999`) only when asked: ask here, so either is bad input, not INTERNAL.
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise BadInput("the webhook URL cannot be parsed (host or port)") from None
    if parts.scheme not in ("http", "https") or not host:
        raise BadInput("a webhook URL must be http:// or https:// with a host")
    if allow_private:
        return url
    try:
        infos = socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise BadInput("the webhook URL's host does not resolve") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise BadInput("webhook URLs may not point at internal addresses")
    return url


def _events(requested: Sequence[str]) -> list[str]:
    known = {e.value for e in EventType}
    chosen = sorted(set(requested))
    if not chosen or not set(chosen) <= known:
        raise BadInput(f"events must be one or more of {', '.join(sorted(known))}")
    return chosen


async def register(
    *,
    session: AsyncSession,
    actor: Actor,
    url: str,
    events: Sequence[str],
    secret: str,
    allow_private: bool,
    sealer: Sealer,
) -> Webhook:
    actor.access.require(Action.WEBHOOK_MANAGE)
    url = check_url(url, allow_private=allow_private)
    chosen = _events(events)
    secret = clean_text(secret, what="secret", max_length=256)
    if len(secret) < 16:
        raise BadInput("a webhook secret needs at least 16 characters")
    now = utcnow()
    hook = Webhook(
        url=url,
        events=json.dumps(chosen),
        secret=sealer.seal(secret),
        owner_id=actor.user_id,
        created_at=now,
        consecutive_failures=0,
        starts_after_seq=await session.scalar(select(OutboxHead.seq).where(OutboxHead.id == 1)),
    )
    session.add(hook)
    await session.flush()
    await audit.record(
        session=session,
        who=actor,
        action="webhook.register",
        operation="registerWebhook",
        target_type="Webhook",
        target_id=hook.id,
        at=now,
        details={"url": url, "events": chosen},
    )
    return hook


async def list_webhooks(*, session: AsyncSession, actor: Actor) -> list[Webhook]:
    actor.access.require(Action.WEBHOOK_MANAGE)
    return list((await session.scalars(select(Webhook).order_by(Webhook.id))).all())


def deliveries_query(actor: Actor, status: DeliveryStatus | None) -> Any:
    actor.access.require(Action.WEBHOOK_MANAGE)
    stmt = select(WebhookDelivery)
    if status is not None:
        stmt = stmt.where(WebhookDelivery.status == status)
    return stmt


async def disable(*, session: AsyncSession, actor: Actor, webhook_id: int) -> Webhook:
    """Stop a webhook: nothing more is delivered to it (pending deliveries stay, unsent)."""
    actor.access.require(Action.WEBHOOK_MANAGE)
    hook = await session.get(Webhook, webhook_id)
    if hook is None:
        raise NotFound("no such webhook")
    now = utcnow()
    if hook.disabled_at is None:
        hook.disabled_at = now
    await audit.record(
        session=session,
        who=actor,
        action="webhook.disable",
        operation="disableWebhook",
        target_type="Webhook",
        target_id=hook.id,
        at=now,
        details={"url": hook.url},
    )
    return hook


async def redeliver(*, session: AsyncSession, actor: Actor, delivery_id: int) -> WebhookDelivery:
    """Send a delivery again (FAILED, or DELIVERED and lost by the receiver): it becomes the
    next one of its webhook, with a fresh 24 hours."""
    actor.access.require(Action.WEBHOOK_MANAGE)
    delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.status == DeliveryStatus.PENDING:
        raise NotFound("no such finished delivery")
    now = utcnow()
    delivery.status = DeliveryStatus.PENDING
    delivery.attempts = 0
    delivery.next_attempt_at = now
    delivery.created_at = now
    await audit.record(
        session=session,
        who=actor,
        action="webhook.redeliver",
        operation="redeliverWebhook",
        target_type="WebhookDelivery",
        target_id=delivery.id,
        at=now,
        details={"eventId": delivery.event_id},
    )
    return delivery


async def reseal_secrets(*, session: AsyncSession, sealer: Sealer) -> int:
    """Seal every webhook secret kept as given, and re-seal those sealed under an older key
    under the first; returns how many changed (`ordergate migrate`)."""
    changed = 0
    for hook in (await session.scalars(select(Webhook).order_by(Webhook.id))).all():
        if not sealer.sealed_by_first(hook.secret):
            hook.secret = sealer.reseal(hook.secret)
            changed += 1
    return changed


# ---- fan-out ----------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date):  # dates and datetimes
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


@dataclass
class _Registrant:
    actor_access: Any
    channels: frozenset[str]

    def sees(self, order: Order) -> bool:
        scope = self.actor_access.order_rows
        if scope is RowScope.ALL:
            return True
        return scope is RowScope.CHANNELS and order.channel_code in self.channels

    def sees_stock(self) -> bool:
        return self.actor_access.field_access("StockItem.sku") is FieldAccess.FULL

    def render(self, record: Any, fields: tuple[str, ...] = _ORDER_FIELDS) -> dict[str, Any]:
        access = self.actor_access
        shown = {}
        for coordinate in fields:
            value = access.present(coordinate, READERS[coordinate](record))
            if value is not None:
                shown[coordinate.split(".", 1)[1]] = _plain(value)
        return shown


async def _registrants(
    session: AsyncSession, pdp: PolicyDecisionPoint, owner_ids: set[int]
) -> dict[int, _Registrant]:
    found = {}
    for user in (await session.scalars(select(User).where(User.id.in_(owner_ids)))).all():
        access = pdp.profile(user.roles) if not user.disabled else pdp.profile(())
        found[user.id] = _Registrant(access, frozenset(user.channels))
    return found


async def fan_out(
    *,
    session: AsyncSession,
    pdp: PolicyDecisionPoint,
    now: dt.datetime | None = None,
    limit: int = 500,
) -> int:
    """Turn the next committed events into deliveries; returns how many events were read.
    The cursor row is locked while it moves, so two workers never fan one event out twice."""
    # An update of the cursor row first: a row lock on PostgreSQL, the write lock on SQLite.
    position = (
        await session.execute(
            update(OutboxCursor)
            .where(OutboxCursor.name == "webhooks")
            .values(seq=OutboxCursor.seq)
            .returning(OutboxCursor.seq)
        )
    ).scalar_one()
    found = list(
        (
            await session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.seq > position)
                .order_by(OutboxEvent.seq)
                .limit(limit)
            )
        ).all()
    )
    if not found:
        return 0
    hooks = list(
        (await session.scalars(select(Webhook).where(Webhook.disabled_at.is_(None)))).all()
    )
    people = await _registrants(session, pdp, {h.owner_id for h in hooks})
    order_ids = {int(e.aggregate_id) for e in found if e.aggregate_type == "Order"}
    orders = {
        o.id: o for o in (await session.scalars(select(Order).where(Order.id.in_(order_ids)))).all()
    }
    stock_ids = {int(e.aggregate_id) for e in found if e.aggregate_type == "StockItem"}
    stock = {
        s.id: s
        for s in (await session.scalars(select(StockItem).where(StockItem.id.in_(stock_ids)))).all()
    }
    now = now or utcnow()
    rows: list[dict[str, Any]] = []
    for event in found:
        order = orders.get(int(event.aggregate_id)) if event.aggregate_type == "Order" else None
        item = stock.get(int(event.aggregate_id)) if event.aggregate_type == "StockItem" else None
        for hook in hooks:
            person = people.get(hook.owner_id)
            if event.seq <= hook.starts_after_seq:
                continue  # committed before the webhook was registered
            if event.type not in json.loads(hook.events) or person is None:
                continue
            message: dict[str, Any] = {
                "id": event.event_id,
                "seq": event.seq,
                "type": event.type,
                "at": event.at.isoformat(),
            }
            if order is not None and person.sees(order):
                message["order"] = person.render(order)
            elif item is not None and person.sees_stock():
                # The stock as this event left it (the row may have moved on since), with
                # the other fields of the item as they are now, under the owner's policy.
                payload = json.loads(event.payload)
                shown = person.render(item, _STOCK_FIELDS)
                for key in ("onHand", "reserved", "available"):
                    if key in shown:
                        shown[key] = payload[key]
                message["stock"] = shown
            else:
                continue
            body = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
            rows.append(
                {
                    "webhook_id": hook.id,
                    "event_id": event.event_id,
                    "seq": event.seq,
                    "body": body,
                    "status": DeliveryStatus.PENDING.value,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
            )
    if rows:
        await session.execute(insert(WebhookDelivery.__table__), rows)
    await session.execute(
        update(OutboxCursor).where(OutboxCursor.name == "webhooks").values(seq=found[-1].seq)
    )
    return len(found)


# ---- delivering -------------------------------------------------------------------------------


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff(attempts: int) -> dt.timedelta:
    """Exponential from 10 s, capped at an hour, with ±50% jitter."""
    base = min(FIRST_RETRY * (2 ** max(0, attempts - 1)), LONGEST_RETRY)
    return base * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not a secret


async def claim(
    *,
    sessions: async_sessionmaker[AsyncSession],
    now: dt.datetime,
    limit: int,
    timeout_seconds: float = TIMEOUT_SECONDS,
) -> list[int]:
    """Lease up to `limit` webhooks whose head of line is due, the longest-waiting first, in
    one short transaction; returns their ids. A leased webhook is served by its holder only
    (per-URL order); a lease left by a worker that died runs out after LEASE and another
    worker takes the webhook over (its last delivery may be sent again: consumers
    de-duplicate on the event id). LEASE is `lease_for(timeout_seconds)`."""
    # A webhook's head of line: its oldest pending delivery. Only webhooks whose head is due
    # are claimed, so webhooks with nothing to send never take a round's places and a busy
    # one cannot starve the others.
    head = (
        select(WebhookDelivery.id, WebhookDelivery.next_attempt_at)
        .where(
            WebhookDelivery.webhook_id == Webhook.id,
            WebhookDelivery.status == DeliveryStatus.PENDING,
        )
        .order_by(WebhookDelivery.id)
        .limit(1)
    )
    async with sessions() as session:
        hooks = list(
            (
                await session.scalars(
                    select(Webhook)
                    .where(
                        Webhook.disabled_at.is_(None),
                        (Webhook.paused_until.is_(None)) | (Webhook.paused_until <= now),
                        (Webhook.lease_until.is_(None)) | (Webhook.lease_until <= now),
                        head.with_only_columns(WebhookDelivery.next_attempt_at).scalar_subquery()
                        <= now,
                    )
                    .order_by(head.with_only_columns(WebhookDelivery.id).scalar_subquery())
                    .limit(limit)
                    .with_for_update(of=Webhook, skip_locked=True)
                )
            ).all()
        )
        for hook in hooks:
            hook.lease_until = now + lease_for(timeout_seconds)
        await session.commit()
        return [hook.id for hook in hooks]


@dataclass(frozen=True)
class _Outcome:
    status: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class _Sent:
    delivery_id: int
    seq: int
    event_id: str
    outcome: _Outcome
    at: dt.datetime


class _Recorder:
    """Commits a webhook's outcomes as they become known, in the background of its sends: an
    outcome is handed over the moment its answer arrives and committed within GATHER_SECONDS,
    with the outcomes that arrived meanwhile (group commit), each group with one audit record
    listing its events. So a fast receiver's outcomes cost one
    transaction per group, not one per delivery (a transaction and a hash-chained audit record
    per delivery held a worker to ~35 deliveries a second, against 680 before), and nothing
    learnt waits for the next receiver's answer."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        webhook_id: int,
        clock: Callable[[], dt.datetime],
        lease: dt.timedelta,
    ) -> None:
        self.sessions, self.webhook_id, self.clock, self.lease = sessions, webhook_id, clock, lease
        self._waiting: list[_Sent] = []
        self._task: asyncio.Task[None] | None = None
        self.stale = False  # decided elsewhere meanwhile, or the webhook disabled: stop

    def add(self, sent: _Sent) -> None:
        self._waiting.append(sent)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._commit_all())

    @property
    def failed(self) -> bool:
        task = self._task
        if task is None or not task.done():
            return False
        return task.cancelled() or task.exception() is not None

    async def _commit_all(self) -> None:
        while self._waiting and not self.stale:
            # Outcomes arriving within GATHER_SECONDS go in one transaction: at 200 deliveries
            # a second that is ten per commit, not one; no outcome waits longer than that (and
            # the commit) for the next receiver's answer.
            await asyncio.sleep(GATHER_SECONDS)
            group, self._waiting = self._waiting, []
            async with self.sessions() as session:
                go_on = await _record(session, self.webhook_id, group, self.clock() + self.lease)
                await session.commit()
            if not go_on:
                self.stale = True

    async def finish(self) -> None:
        """Wait until everything handed over is committed (or raise why it could not be)."""
        if self._task is not None:
            await self._task


async def serve(
    *,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
    webhook_id: int,
    clock: Callable[[], dt.datetime],
    sealer: Sealer,
    per_webhook: int = 50,
    timeout_seconds: float = TIMEOUT_SECONDS,
    allow_private: bool = True,
) -> int:
    """Send a leased webhook's due deliveries in order, up to `per_webhook`, stopping at the
    first that fails or is not due yet; returns how many were attempted. The lease is given
    back at the end.

    No transaction is open while a receiver is waited for: the due deliveries are read
    READ_BATCH at a time in short transactions, then sent one after another, each outcome
    committed as soon as it is known with its audit record and the lease renewed
    (`_Recorder`), so a slow receiver delays only itself, and what one worker learnt is never
    lost with another's round (issue #29: an 8 s receiver held a fast one's rows for 2
    minutes)."""
    attempted, after = 0, 0
    recorder = _Recorder(sessions, webhook_id, clock, lease_for(timeout_seconds))
    try:
        going = True
        while going and attempted < per_webhook:
            # The next due deliveries after the last one read (those sent but not committed
            # yet are still PENDING in the database): a busy webhook is served batch after
            # batch under one lease, not one batch per worker round.
            async with sessions() as session:
                hook = await session.get(Webhook, webhook_id)
                if hook is None or hook.disabled_at is not None:
                    break
                url, secret = hook.url, sealer.open(hook.secret)
                due = [
                    (d.id, d.seq, d.event_id, d.body, d.next_attempt_at)
                    for d in (
                        await session.scalars(
                            select(WebhookDelivery)
                            .where(
                                WebhookDelivery.webhook_id == webhook_id,
                                WebhookDelivery.status == DeliveryStatus.PENDING,
                                WebhookDelivery.id > after,
                            )
                            .order_by(WebhookDelivery.id)
                            .limit(min(READ_BATCH, per_webhook - attempted))
                        )
                    ).all()
                ]
                await session.commit()
            going = bool(due)
            for delivery_id, seq, event_id, body, next_attempt_at in due:
                if next_attempt_at > clock() or recorder.stale or recorder.failed:
                    going = False  # per-URL order: nothing goes before the head of the line
                    break
                outcome = await _post(
                    http,
                    url,
                    secret,
                    event_id,
                    body.encode(),
                    timeout_seconds,
                    allow_private=allow_private,
                )
                attempted += 1
                after = delivery_id
                recorder.add(_Sent(delivery_id, seq, event_id, outcome, clock()))
                if not outcome.ok:
                    going = False
                    break
        await recorder.finish()
    finally:
        async with sessions() as session:
            await session.execute(
                update(Webhook).where(Webhook.id == webhook_id).values(lease_until=None)
            )
            await session.commit()
    return attempted


async def deliver_due(
    *,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
    sealer: Sealer,
    now: dt.datetime | None = None,
    webhooks_per_round: int = 20,
    per_webhook: int = 50,
    timeout_seconds: float = TIMEOUT_SECONDS,
    allow_private: bool = True,
) -> int:
    """Claim the webhooks that are due and serve them all, concurrently; returns how many
    deliveries were attempted. (`ordergate worker` keeps a `Deliverer` instead, which does not
    wait for one webhook before claiming the next.)"""
    clock = (lambda: now) if now is not None else utcnow
    ids = await claim(
        sessions=sessions, now=clock(), limit=webhooks_per_round, timeout_seconds=timeout_seconds
    )
    sent = await asyncio.gather(
        *(
            serve(
                sessions=sessions,
                http=http,
                webhook_id=i,
                clock=clock,
                sealer=sealer,
                per_webhook=per_webhook,
                timeout_seconds=timeout_seconds,
                allow_private=allow_private,
            )
            for i in ids
        )
    )
    return sum(sent)


class Deliverer:
    """A worker's deliveries: each claimed webhook is served by a task of its own, and a
    round claims more webhooks without waiting for those still sending, up to `concurrency`
    at once. A receiver that answers in 8 s delays its own queue, nobody else's."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        sealer: Sealer,
        clock: Callable[[], dt.datetime] = utcnow,
        concurrency: int = 20,
        per_webhook: int = 500,
        timeout_seconds: float = TIMEOUT_SECONDS,
        allow_private: bool = True,
    ) -> None:
        self.sessions, self.http, self.clock, self.sealer = sessions, http, clock, sealer
        self.concurrency, self.per_webhook = concurrency, per_webhook
        self.timeout_seconds = timeout_seconds
        # Production: every delivery resolves, checks and connects to a public address.
        self.allow_private = allow_private
        self._tasks: dict[int, asyncio.Task[int]] = {}

    async def round(self) -> int:
        """Claim what is due into free places; returns how many webhooks it started."""
        for webhook_id, task in list(self._tasks.items()):
            if task.done():
                del self._tasks[webhook_id]
                if not task.cancelled() and (failed := task.exception()) is not None:
                    log.warning(
                        "webhook delivery task failed; its lease runs out and it is retried",
                        extra={"webhook_id": webhook_id, "error": type(failed).__name__},
                    )
        free = self.concurrency - len(self._tasks)
        if free <= 0:
            return 0
        ids = await claim(
            sessions=self.sessions,
            now=self.clock(),
            limit=free,
            timeout_seconds=self.timeout_seconds,
        )
        for webhook_id in ids:
            self._tasks[webhook_id] = asyncio.create_task(
                serve(
                    sessions=self.sessions,
                    http=self.http,
                    webhook_id=webhook_id,
                    clock=self.clock,
                    sealer=self.sealer,
                    per_webhook=self.per_webhook,
                    timeout_seconds=self.timeout_seconds,
                    allow_private=self.allow_private,
                )
            )
        return len(ids)

    @property
    def busy(self) -> int:
        return sum(1 for task in self._tasks.values() if not task.done())

    async def aclose(self, *, grace_seconds: float = TIMEOUT_SECONDS) -> None:
        """Let sends in flight finish (bounded), then stop; leases left behind run out."""
        tasks = [task for task in self._tasks.values() if not task.done()]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._tasks.clear()


async def _pinned(url: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The URL with its host replaced by an address checked now, the Host header, and the
    TLS name to verify. The name is resolved for every delivery, every address must be a
    public one, and the connection goes to the address that was checked: a name that
    resolved to a public address at registration and to 127.0.0.1 later (DNS rebinding)
    reaches nothing (issue #30, M2)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise _Refused("the host does not resolve") from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses or not all(a.is_global for a in addresses):
        raise _Refused("the host resolves to an internal address")
    address = addresses[0]
    literal = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    pinned = parts._replace(netloc=netloc).geturl()
    host_header = host if not parts.port else f"{host}:{parts.port}"
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return pinned, {"host": host_header}, extensions


class _Refused(Exception):
    pass


def _describe(exc: httpx.HTTPError) -> str:
    """What a registrant may learn of a failed delivery: the kind of failure, never the
    library's text (addresses, ports, resolver answers: a port-scan oracle; issue #30, M2)."""
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "could not connect"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return "the connection broke"
    return "could not deliver"


async def _post(
    http: httpx.AsyncClient,
    url: str,
    secret: str,
    event_id: str,
    body: bytes,
    seconds: float,
    *,
    allow_private: bool = True,
) -> _Outcome:
    headers = {
        "content-type": "application/json",
        "x-ordergate-event-id": event_id,
        "x-ordergate-signature": signature(secret, body),
    }
    extensions: dict[str, Any] = {}
    if not allow_private:
        try:
            async with asyncio.timeout(seconds):  # a resolver that hangs is a timeout too
                url, host, extensions = await _pinned(url)
        except _Refused as refused:
            return _Outcome(None, f"refused: {refused}")
        except TimeoutError:
            return _Outcome(None, "timed out")
        headers |= host
    try:
        response = await http.post(
            url,
            content=body,
            headers=headers,
            timeout=seconds,
            follow_redirects=False,
            extensions=extensions,
        )
    except httpx.HTTPError as exc:
        return _Outcome(None, _describe(exc))
    ok = 200 <= response.status_code < 300
    return _Outcome(response.status_code, None if ok else f"HTTP {response.status_code}")


async def _record(
    session: AsyncSession, webhook_id: int, group: list[_Sent], lease_until: dt.datetime
) -> bool:
    """Outcomes of a webhook's deliveries, in the order sent: each delivery's status, the
    webhook's breaker and lease, and one audit record for those delivered, in the caller's
    transaction. False when sending should stop: a delivery was decided meanwhile (its
    outcome and the later ones are not recorded), or the webhook is gone or disabled."""
    hook = await session.get(Webhook, webhook_id, with_for_update=True)
    if hook is None:
        return False
    rows = {
        d.id: d
        for d in (
            await session.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.id.in_([s.delivery_id for s in group]))
                .with_for_update()
            )
        ).all()
    }
    recorded, delivered = 0, []
    hook.lease_until = lease_until
    for sent in group:
        delivery, outcome, now = rows.get(sent.delivery_id), sent.outcome, sent.at
        if delivery is None or delivery.status != DeliveryStatus.PENDING:
            break
        recorded += 1
        delivery.attempts += 1
        delivery.last_status = outcome.status
        delivery.last_error = outcome.error
        if outcome.ok:
            delivery.status = DeliveryStatus.DELIVERED
            delivery.delivered_at = now
            hook.consecutive_failures = 0
            hook.paused_until = None
            delivered.append(delivery)
            continue
        hook.consecutive_failures += 1
        if hook.consecutive_failures >= BREAK_AFTER:
            hook.paused_until = now + PAUSE
        if now - delivery.created_at >= GIVE_UP_AFTER:
            delivery.status = DeliveryStatus.FAILED
        else:
            delivery.next_attempt_at = now + backoff(delivery.attempts)
    if delivered:
        await _record_delivery(session, hook, delivered, delivered[-1].delivered_at)
    return recorded == len(group) and hook.disabled_at is None


async def _record_delivery(
    session: AsyncSession, hook: Webhook, delivered: list[WebhookDelivery], now: dt.datetime
) -> None:
    """What left the building, in the audit chain with the deliveries' own commit, in the name
    of the account that registered the webhook (the event is audited as a delivery; rendering
    it read nothing on anyone's behalf): one record per group committed together, listing its
    events."""
    owner = await session.get(User, hook.owner_id)
    await audit.record(
        session=session,
        who=Subject(
            hook.owner_id,
            owner.username if owner else None,
            sorted(owner.roles) if owner else (),
            WORKER_ORIGIN,
        ),
        action="webhook.delivered",
        operation="webhookDelivery",
        target_type="Webhook",
        target_id=hook.id,
        details={
            "url": hook.url,
            "deliveries": len(delivered),
            "fromSeq": delivered[0].seq,
            "toSeq": delivered[-1].seq,
            "eventIds": [d.event_id for d in delivered],
        },
        at=now,
    )
