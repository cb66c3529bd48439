"""Webhook delivery (domain/events/webhooks.py) to a real HTTP receiver on loopback: signed,
in order per URL, payloads as the registrant may see them, retried with backoff, FAILED after
24 hours and sent again on request, and never sent twice at once by two workers."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from domain.actor import Actor
from domain.audit.models import AuditEvent
from domain.db import utcnow
from domain.errors import BadInput
from domain.events import webhooks
from domain.events.webhooks import DeliveryStatus, Webhook, WebhookDelivery
from domain.users.models import User
from tests.conftest import TOKEN_KEYS, Api

SECRET = "s3cret-shared-with-the-receiver"
MOVE = "mutation($id: ID!) { transitionOrder(id: $id, to: PICKING) { status } }"


class Receiver:
    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []  # answers to give, in turn; then 200
        self.hold_first = threading.Event()  # set: the first request waits until released
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                if outer.hold_first.is_set() and len(outer.received) == 1:
                    outer.release.wait(60)
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    yield r
    r.release.set()
    r.server.shutdown()
    r.server.server_close()


async def _actor(api: Api, username: str) -> Actor:
    runtime = api.app.state.runtime
    async with runtime.sessions() as session:
        user = await session.scalar(select(User).where(User.username == username))
        assert user is not None
        roles = frozenset(user.roles)
        return Actor(
            user_id=user.id,
            username=user.username,
            roles=roles,
            channels=frozenset(user.channels),
            access=runtime.pdp.profile(roles),
        )


async def _register(
    api: Api,
    url: str,
    username: str = "demo-integration",
    events: tuple[str, ...] = ("ORDER_STATUS_CHANGED",),
) -> int:
    actor = await _actor(api, username)
    async with api.app.state.runtime.sessions() as session:
        hook = await webhooks.register(
            session=session,
            actor=actor,
            url=url,
            events=list(events),
            secret=SECRET,
            allow_private=True,
            sealer=api.app.state.runtime.sealer,
        )
        await session.commit()
        return hook.id


async def _move_paid_orders(api: Api, n: int) -> list[str]:
    result = await api.gql(
        "query($n: Int) { orders(first: $n, filter: {status: [PAID]}, "
        "orderBy: {field: CREATED_AT, direction: ASC}) { edges { node { id number } } } }",
        {"n": n},
        as_="ops",
    )
    nodes = [e["node"] for e in result["data"]["orders"]["edges"]]
    for node in nodes:
        assert "errors" not in await api.gql(MOVE, {"id": node["id"]}, as_="ops")
    return [node["number"] for node in nodes]


async def fan_out_everything(runtime: Any, now: dt.datetime | None = None) -> None:
    """Fan out every event committed so far, a round at a time as the worker does (the demo
    data's events come first)."""
    while True:
        async with runtime.sessions() as session:
            read = await webhooks.fan_out(session=session, pdp=runtime.pdp, now=now)
            await session.commit()
        if not read:
            return


async def _work(api: Api, now: dt.datetime | None = None) -> int:
    runtime = api.app.state.runtime
    await fan_out_everything(runtime, now)
    async with httpx.AsyncClient() as http:
        return await webhooks.deliver_due(
            sessions=runtime.sessions, http=http, sealer=runtime.sealer, now=now
        )


async def _deliveries(api: Api) -> list[WebhookDelivery]:
    async with api.app.state.runtime.sessions() as session:
        return list(
            (await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))).all()
        )


async def test_events_arrive_signed_in_order_as_the_registrant_may_see_them(
    any_api: Api, receiver: Receiver
) -> None:
    await _register(any_api, receiver.url)
    numbers = await _move_paid_orders(any_api, 3)

    for _ in range(3):  # one delivery per webhook per round: the next waits for the one before
        await _work(any_api)

    bodies = receiver.bodies()
    assert [b["order"]["number"] for b in bodies] == numbers
    assert [b["order"]["status"] for b in bodies] == ["PICKING"] * 3
    assert [b["seq"] for b in bodies] == sorted(b["seq"] for b in bodies)
    for headers, raw in receiver.received:
        expected = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        assert headers["x-ordergate-signature"] == f"sha256={expected}"
        assert headers["x-ordergate-event-id"] == json.loads(raw)["id"]
    # integration reads the order's identity, not its money or its customer
    assert "total" not in bodies[0]["order"]
    assert "customerPhone" not in bodies[0]["order"]
    assert [d.status for d in await _deliveries(any_api)] == ["DELIVERED"] * 3


REGISTER = """mutation($i: WebhookInput!) { registerWebhook(input: $i) { id } }"""


async def _stored_secrets(api: Api) -> list[str]:
    async with api.app.state.runtime.sessions() as session:
        return list((await session.scalars(select(Webhook.secret).order_by(Webhook.id))).all())


def _signed_with(receiver: Receiver, secret: str) -> bool:
    return bool(receiver.received) and all(
        headers["x-ordergate-signature"]
        == "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        for headers, raw in receiver.received
    )


async def test_a_webhook_secret_is_kept_sealed_and_still_signs(
    any_api: Api, receiver: Receiver
) -> None:
    """Issue #30: webhook secrets were stored as given, so a copy of the database (a backup,
    a replica, a dump) held every receiver's HMAC key. Registered through the API, the secret
    is stored sealed under the secrets key; deliveries are signed with the secret itself."""
    secret = "shared-with-the-receiver-7Qx!"
    made = await any_api.gql(
        REGISTER,
        {"i": {"url": receiver.url, "events": ["ORDER_STATUS_CHANGED"], "secret": secret}},
        as_="integration",
    )
    assert "errors" not in made, made
    await _move_paid_orders(any_api, 1)
    await _work(any_api)

    [stored] = await _stored_secrets(any_api)
    assert secret not in stored
    assert stored.startswith("sealed:v1:")
    assert _signed_with(receiver, secret)


async def test_migrate_seals_a_secret_stored_before_sealing_and_it_still_signs(
    any_api: Api, receiver: Receiver
) -> None:
    """A webhook registered before sealing existed keeps its secret as given until `ordergate
    migrate` runs; then it is sealed, and deliveries go on signed with the same secret."""
    hook_id = await _register(any_api, receiver.url)
    async with any_api.app.state.runtime.sessions() as session:
        await session.execute(update(Webhook).where(Webhook.id == hook_id).values(secret=SECRET))
        await session.commit()
    settings = any_api.app.state.runtime.settings

    migrated = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "api.cli", "migrate"],
        env={
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "ORDERGATE_DATA_DIR": str(settings.data_dir),
            "ORDERGATE_SECRETS_KEY_FILE": str(settings.secrets_key_file),
            "ORDERGATE_TOKEN_KEYS": TOKEN_KEYS,
        },
        capture_output=True,
        text=True,
        check=False,
    )
    await _move_paid_orders(any_api, 1)
    await _work(any_api)

    assert migrated.returncode == 0, migrated.stderr
    assert "sealed 1 webhook secret(s)" in migrated.stdout
    [stored] = await _stored_secrets(any_api)
    assert stored.startswith("sealed:v1:")
    assert SECRET not in stored
    assert _signed_with(receiver, SECRET)
    async with any_api.app.state.runtime.sessions() as session:
        [sealing] = (
            await session.scalars(
                select(AuditEvent).where(AuditEvent.action == "webhook.seal_secrets")
            )
        ).all()
    assert json.loads(sealing.details) == {"webhooks": 1}


async def test_a_new_webhook_receives_what_commits_after_it_not_the_history(
    any_api: Api, receiver: Receiver
) -> None:
    # The fan-out has not run yet: the demo's events and one change before the registration
    # are still ahead of its cursor, and they are not the new webhook's to receive.
    [before] = await _move_paid_orders(any_api, 1)
    await _register(any_api, receiver.url)
    [after] = await _move_paid_orders(any_api, 1)

    await _work(any_api)

    assert [b["order"]["number"] for b in receiver.bodies()] == [after]
    assert before != after


async def test_webhooks_with_nothing_to_send_do_not_take_a_rounds_places(
    any_api: Api, receiver: Receiver
) -> None:
    """A round claims at most 20 webhooks; those are the ones with a delivery due, oldest
    first, not the first 20 registered (which here never receive a status change)."""
    for _ in range(20):
        await _register(any_api, receiver.url, events=("ORDER_REFUNDED",))
    for _ in range(5):
        await _register(any_api, receiver.url)
    await _move_paid_orders(any_api, 1)

    sent = await _work(any_api)

    assert sent == 5
    assert len(receiver.bodies()) == 5


async def test_deliveries_are_in_the_audit_chain_under_the_registrant(
    any_api: Api, receiver: Receiver
) -> None:
    await _register(any_api, receiver.url)
    await _move_paid_orders(any_api, 2)
    await _work(any_api)

    async with any_api.app.state.runtime.sessions() as session:
        records = (
            await session.scalars(
                select(AuditEvent).where(AuditEvent.action == "webhook.delivered")
            )
        ).all()
    bodies = receiver.bodies()
    assert len(bodies) == 2
    # Each record lists the deliveries committed with it (one, or a group that arrived while
    # the previous commit was in flight); together, every delivery, once, in order.
    listed = []
    for record in sorted(records, key=lambda r: r.seq):
        details = json.loads(record.details)
        assert record.username == "demo-integration"
        assert record.target_type == "Webhook"
        assert details["deliveries"] == len(details["eventIds"]) >= 1
        seqs = [b["seq"] for b in bodies if b["id"] in details["eventIds"]]
        assert (details["fromSeq"], details["toSeq"]) == (seqs[0], seqs[-1])
        listed += details["eventIds"]
    assert listed == [b["id"] for b in bodies]


async def test_a_failing_receiver_is_retried_with_backoff_then_failed_then_redelivered(
    any_api: Api, receiver: Receiver
) -> None:
    await _register(any_api, receiver.url)
    await _move_paid_orders(any_api, 2)
    receiver.statuses = [500]
    now = utcnow()

    assert await _work(any_api, now) == 1
    first, _ = await _deliveries(any_api)
    assert (first.status, first.attempts, first.last_status) == ("PENDING", 1, 500)
    assert dt.timedelta(seconds=5) <= first.next_attempt_at - now <= dt.timedelta(seconds=15)
    # not due yet, and the next event waits behind it (order per URL)
    assert await _work(any_api, now + dt.timedelta(seconds=1)) == 0
    assert len(receiver.received) == 1

    receiver.statuses = [503]
    await _work(any_api, now + dt.timedelta(hours=25))  # a day has passed: give up
    first = (await _deliveries(any_api))[0]
    assert first.status == DeliveryStatus.FAILED
    assert first.attempts == 2

    await _work(any_api, now + dt.timedelta(hours=25, seconds=1))  # the next one goes now
    async with any_api.app.state.runtime.sessions() as session:
        await webhooks.redeliver(
            session=session, actor=await _actor(any_api, "demo-integration"), delivery_id=first.id
        )
        await session.commit()
    await _work(any_api)

    statuses = [d.status for d in await _deliveries(any_api)]
    assert statuses == ["DELIVERED", "DELIVERED"]
    sent = [raw for _, raw in receiver.received]
    assert sent[0] == sent[1] == sent[-1]  # the same bytes, and so the same signature
    assert len(sent) == 4


async def test_only_account_that_may_manage_webhooks_registers_one(any_api: Api) -> None:
    from domain.errors import Forbidden

    with pytest.raises(Forbidden):
        await _register(any_api, "http://127.0.0.1:9/hook", username="demo-cs")


@pytest.mark.parametrize(
    ("url", "allow_private", "ok"),
    [
        ("https://93.184.216.34/hook", False, True),
        ("http://127.0.0.1:8080/hook", False, False),
        ("http://10.1.2.3/hook", False, False),
        ("http://[::1]/hook", False, False),
        ("http://169.254.169.254/latest/meta-data", False, False),
        ("http://127.0.0.1:8080/hook", True, True),
        ("ftp://example.com/hook", True, False),
        ("file:///etc/passwd", True, False),
        ("javascript:alert(1)", True, False),
    ],
)
def test_webhook_urls_are_checked(url: str, allow_private: bool, ok: bool) -> None:
    if ok:
        assert webhooks.check_url(url, allow_private=allow_private) == url
    else:
        with pytest.raises(BadInput):
            webhooks.check_url(url, allow_private=allow_private)


async def test_two_workers_never_send_one_delivery_twice(pg_api: Api, receiver: Receiver) -> None:
    for _ in range(3):
        await _register(pg_api, receiver.url)
    await _move_paid_orders(pg_api, 10)
    runtime = pg_api.app.state.runtime
    await fan_out_everything(runtime)

    async def worker() -> None:
        async with httpx.AsyncClient() as http:
            for _ in range(15):
                await webhooks.deliver_due(
                    sessions=runtime.sessions, http=http, sealer=runtime.sealer
                )

    await asyncio.gather(worker(), worker())

    sent = [
        (json.loads(raw)["id"], headers["content-length"]) for headers, raw in receiver.received
    ]
    assert len(sent) == 30
    by_event: dict[str, int] = {}
    for event_id, _ in sent:
        by_event[event_id] = by_event.get(event_id, 0) + 1
    assert set(by_event.values()) == {3}  # each event once to each of the three webhooks
    assert [d.status for d in await _deliveries(pg_api)] == ["DELIVERED"] * 30


async def test_a_worker_killed_mid_delivery_loses_nothing(any_api: Api, receiver: Receiver) -> None:
    """A real `ordergate worker` is SIGKILLed while a receiver holds its first delivery; the
    next worker sends that one again (same event id) and the rest: at least once, nothing lost."""
    settings = any_api.app.state.runtime.settings
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "ORDERGATE_DATA_DIR": str(settings.data_dir),
        "ORDERGATE_TOKEN_KEYS": TOKEN_KEYS,
        # The dead worker's lease runs out one timeout and 5 s after its last news.
        "ORDERGATE_WEBHOOK_TIMEOUT_SECONDS": "2",
    }
    await _register(any_api, receiver.url)
    numbers = await _move_paid_orders(any_api, 3)

    async def until(condition, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        # Polls what another thread and process change: there is no event to wait on.
        while not condition() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        assert condition(), "timed out"

    def start() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "api.cli", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    receiver.hold_first.set()
    first = start()
    try:
        await until(lambda: bool(receiver.received))
        first.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait, 10)
    finally:
        if first.poll() is None:
            first.kill()
    receiver.release.set()
    receiver.hold_first.clear()

    second = start()
    try:
        await until(lambda: len({b["id"] for b in receiver.bodies()}) == 3)
    finally:
        second.send_signal(signal.SIGTERM)
        await asyncio.to_thread(second.wait, 30)

    ids = [b["id"] for b in receiver.bodies()]
    assert sorted({b["order"]["number"] for b in receiver.bodies()}) == sorted(numbers)
    assert ids[0] == ids[1]  # the one in flight when the worker died, sent again
    assert len(set(ids)) == 3
    assert second.returncode == 0  # SIGTERM: a clean stop


async def test_serve_delivers_by_itself_in_development(any_api: Api, receiver: Receiver) -> None:
    """`make run` is one command: outside production the server runs the worker's rounds."""
    from tests.integration.test_live_server import _serve

    settings = any_api.app.state.runtime.settings
    await _register(any_api, receiver.url)
    with _serve(settings.database_url, settings.data_dir, settings.policy_dir, "0"):
        numbers = await _move_paid_orders(any_api, 2)
        deadline = time.monotonic() + 30
        while len(receiver.received) < 2 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)

    assert [b["order"]["number"] for b in receiver.bodies()] == numbers


async def test_stock_changes_reach_a_channels_webhook_with_the_levels_they_left(
    any_api: Api, receiver: Receiver
) -> None:
    """The livestream back-end keeps its displayed stock current: each reservation and
    adjustment arrives as STOCK_CHANGED with on hand, reserved and available as that change
    left them, in order, and without the unit cost the integration account may not read."""
    await _register(any_api, receiver.url, events=("STOCK_CHANGED",))
    line = {"sku": "SKU-0002", "warehouse": "SH-01", "quantity": 2}
    reserve = "mutation($i: ReserveStockInput!) { reserveStock(input: $i) { id } }"
    for n in range(2):
        made = await any_api.gql(
            reserve, {"i": {"reference": f"LIVE-{n}", "lines": [line]}}, as_="integration"
        )
        assert "errors" not in made, made
    adjusted = await any_api.gql(
        'mutation { adjustStock(input: {sku: "SKU-0002", warehouse: "SH-01", delta: 50, '
        'reason: "restock"}) { onHand reserved available } }',
        as_="warehouse",
    )
    moves = 0
    for _ in range(3):
        moves += await _work(any_api)

    final = adjusted["data"]["adjustStock"]
    bodies = receiver.bodies()
    assert moves == 3
    assert [b["type"] for b in bodies] == ["STOCK_CHANGED"] * 3
    levels = [
        (b["stock"]["onHand"], b["stock"]["reserved"], b["stock"]["available"]) for b in bodies
    ]
    on_hand, reserved = final["onHand"] - 50, final["reserved"]
    assert levels == [
        (on_hand, reserved - 2, on_hand - reserved + 2),
        (on_hand, reserved, on_hand - reserved),
        (on_hand + 50, reserved, final["available"]),
    ]
    assert {b["stock"]["sku"] for b in bodies} == {"SKU-0002"}
    assert all("unitCost" not in b["stock"] for b in bodies)
    assert all("order" not in b for b in bodies)


async def test_a_receiver_that_hangs_delays_only_its_own_queue(
    any_api: Api, receiver: Receiver
) -> None:
    """Issue #29: a slow receiver's deliveries kept a fast receiver's rows locked and
    uncommitted for minutes. Here the slow one never answers its first delivery while the
    worker's rounds go on; the fast one gets every event, in order, each committed as
    DELIVERED as soon as it answered."""
    fast = Receiver()
    thread = threading.Thread(target=fast.server.serve_forever, daemon=True)
    thread.start()
    runtime = any_api.app.state.runtime
    try:
        receiver.hold_first.set()  # `receiver` is the slow one: it holds what it gets
        slow_id = await _register(any_api, receiver.url)
        fast_id = await _register(any_api, fast.url)
        numbers = await _move_paid_orders(any_api, 4)
        await fan_out_everything(runtime)
        async with httpx.AsyncClient() as http:
            deliverer = webhooks.Deliverer(
                sessions=runtime.sessions, http=http, sealer=runtime.sealer, timeout_seconds=30
            )
            deadline = time.monotonic() + 30
            delivered: list[WebhookDelivery] = []
            # Rounds as the worker runs them, until the fast receiver's four are committed as
            # delivered (what the receivers get arrives on other threads).
            while len(delivered) < 4 and time.monotonic() < deadline:
                await deliverer.round()
                await asyncio.sleep(0.05)
                delivered = [d for d in await _deliveries(any_api) if d.status == "DELIVERED"]
            held = len(receiver.received)
            receiver.release.set()
            await deliverer.aclose()
    finally:
        fast.server.shutdown()
        fast.server.server_close()

    assert [b["order"]["number"] for b in fast.bodies()] == numbers
    assert held == 1  # the slow one is still on its first, and nothing else waited for it
    assert {d.webhook_id for d in delivered} == {fast_id}
    assert len(delivered) == 4
    assert slow_id != fast_id


async def test_a_name_that_rebinds_to_loopback_is_refused_at_delivery_time(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #30, M2: the URL was checked at registration only; a name that later resolved to
    127.0.0.1 reached it. In production every delivery resolves the name again, checks every
    address and connects to the address it checked."""
    port = int(receiver.url.rsplit(":", 1)[1].split("/")[0])
    loop = asyncio.get_running_loop()

    async def rebound(host: str, *args: Any, **kwargs: Any) -> list:
        assert host == "hooks.partner.example"
        return [(2, 1, 6, "", ("127.0.0.1", port))]  # what the attacker's DNS now answers

    monkeypatch.setattr(loop, "getaddrinfo", rebound)
    async with httpx.AsyncClient() as http:
        outcome = await webhooks._post(
            http,
            f"http://hooks.partner.example:{port}/hook",
            SECRET,
            "event-1",
            b"{}",
            2,
            allow_private=False,
        )

    assert outcome.status is None
    assert outcome.error == "refused: the host resolves to an internal address"
    assert receiver.received == []


async def test_a_failed_delivery_says_what_kind_of_failure_not_where() -> None:
    """lastError was the library's text (addresses, ports): a port-scan oracle."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens once the socket is closed
    async with httpx.AsyncClient() as http:
        outcome = await webhooks._post(
            http, f"http://127.0.0.1:{closed}/hook", SECRET, "event-1", b"{}", 2
        )

    assert outcome.error == "could not connect"
    assert str(closed) not in (outcome.error or "")


US = dt.timedelta(microseconds=1)


async def _deliver_at(api: Api, at: dt.datetime) -> int:
    async with httpx.AsyncClient() as http:
        return await webhooks.deliver_due(
            sessions=api.app.state.runtime.sessions,
            http=http,
            sealer=api.app.state.runtime.sealer,
            now=at,
        )


@pytest.mark.parametrize(
    ("tried_after", "status"),
    [
        (dt.timedelta(hours=24) - US, DeliveryStatus.PENDING),  # still within its day
        (dt.timedelta(hours=24), DeliveryStatus.FAILED),  # a full day: given up
    ],
)
async def test_a_failing_delivery_is_given_up_exactly_24_hours_after_it_was_made(
    any_api: Api, receiver: Receiver, tried_after: dt.timedelta, status: str
) -> None:
    await _register(any_api, receiver.url)
    await _move_paid_orders(any_api, 1)
    receiver.statuses = [500]
    made = utcnow()
    await fan_out_everything(any_api.app.state.runtime, made)

    sent = await _deliver_at(any_api, made + tried_after)

    [delivery] = await _deliveries(any_api)
    assert (sent, delivery.attempts, delivery.last_status) == (1, 1, 500)
    assert delivery.status == status


async def test_five_failures_in_a_row_rest_a_webhook_five_minutes_and_a_success_resets_it(
    any_api: Api, receiver: Receiver
) -> None:
    """The circuit breaker: after the fifth failure in a row the webhook is not tried for five
    minutes, though its delivery's own retry falls due sooner; then it is tried again, and a
    success starts the count afresh."""
    await _register(any_api, receiver.url)
    await _move_paid_orders(any_api, 1)
    receiver.statuses = [500] * 5
    at = utcnow()
    await fan_out_everything(any_api.app.state.runtime, at)
    tried = []
    for _ in range(5):  # each retry as soon as it is due
        tried.append(await _deliver_at(any_api, at))
        failed_at = at
        [delivery] = await _deliveries(any_api)
        at = delivery.next_attempt_at
    assert tried == [1, 1, 1, 1, 1]  # four failures do not rest it
    assert delivery.next_attempt_at < failed_at + dt.timedelta(minutes=5)

    resting = await _deliver_at(any_api, failed_at + dt.timedelta(minutes=5) - US)
    rested = await _deliver_at(any_api, failed_at + dt.timedelta(minutes=5))

    assert (resting, rested) == (0, 1)
    [delivery] = await _deliveries(any_api)
    assert delivery.status == DeliveryStatus.DELIVERED
    # Counted afresh: four more failures in a row leave it untouched.
    await _move_paid_orders(any_api, 1)  # the next paid order (the first one moved on)
    receiver.statuses = [500] * 4
    at = failed_at + dt.timedelta(minutes=6)
    await fan_out_everything(any_api.app.state.runtime, at)
    again = []
    for _ in range(4):
        again.append(await _deliver_at(any_api, at))
        pending = [d for d in await _deliveries(any_api) if d.status == DeliveryStatus.PENDING]
        at = pending[0].next_attempt_at
    assert again == [1, 1, 1, 1]
    assert await _deliver_at(any_api, at) == 1  # the fifth try is not held back
