"""`orderEvents` over a real websocket (graphql-transport-ws) against a live uvicorn: field
policy and row scope per subscriber, resuming, and disconnection when access ends."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy.exc
import uvicorn
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from api.app import create_app
from domain.audit.models import AuditEvent
from tests.conftest import DEMO_PASSWORD, outbox_head, settings_for

SUBSCRIBE = """subscription($after: Int) { orderEvents(after: $after) {
  seq eventId type order { id channel status customerPhone } } }"""
MOVE = "mutation($id: ID!) { transitionOrder(id: $id, to: PICKING) { status } }"
PROTOCOL = "graphql-transport-ws"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Live:
    def __init__(self, base: str, app: Any) -> None:
        self.base = base
        self.app = app
        self.http = httpx.AsyncClient(base_url=f"http://{base}", timeout=30)
        self.tokens: dict[str, str] = {}

    async def token(self, role: str) -> str:
        if role not in self.tokens:
            result = (
                await self.http.post(
                    "/graphql",
                    json={
                        "query": "mutation($u: String!, $p: String!) { login(username: $u, "
                        "password: $p) { accessToken } }",
                        "variables": {"u": f"demo-{role}", "p": DEMO_PASSWORD},
                    },
                )
            ).json()
            self.tokens[role] = result["data"]["login"]["accessToken"]
        return self.tokens[role]

    async def gql(self, query: str, variables: dict | None = None, *, as_: str) -> dict:
        response = await self.http.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"authorization": f"Bearer {await self.token(as_)}"},
        )
        return response.json()

    async def paid(self, channel: str, n: int = 0) -> str:
        found = await self.gql(
            "query($c: [Channel!]) { orders(first: 5, filter: {status: [PAID], channel: $c}) "
            "{ edges { node { id } } } }",
            {"c": [channel]},
            as_="ops",
        )
        return found["data"]["orders"]["edges"][n]["node"]["id"]

    @asynccontextmanager
    async def socket(
        self, role: str | None, *, token: str | None = None
    ) -> AsyncIterator[ClientConnection]:
        async with connect(f"ws://{self.base}/graphql", subprotocols=[PROTOCOL]) as ws:
            if role is not None or token is not None:
                bearer = token if token is not None else await self.token(role or "")
                await ws.send(
                    json.dumps(
                        {
                            "type": "connection_init",
                            "payload": {"Authorization": f"Bearer {bearer}"},
                        }
                    )
                )
            yield ws


@asynccontextmanager
async def live_server(database_url: str, tmp_path: Path, **env: str) -> AsyncIterator[Live]:
    settings = settings_for(
        database_url,
        tmp_path,
        ORDERGATE_WORKER_IN_SERVER="0",
        ORDERGATE_EVENT_POLL_SECONDS="0.05",
        **env,
    )
    app = create_app(settings)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="auto")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(600):
        if server.started:
            break
        await asyncio.sleep(0.05)
    live = Live(f"127.0.0.1:{port}", app)
    try:
        yield live
    finally:
        await live.http.aclose()
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@pytest.fixture
async def live(any_database_url: str, tmp_path: Path) -> AsyncIterator[Live]:
    async with live_server(any_database_url, tmp_path) as server:
        yield server


async def _ack(ws: ClientConnection) -> None:
    assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "connection_ack"}


async def _subscribe(ws: ClientConnection, after: int | None, id_: str = "1") -> None:
    await ws.send(
        json.dumps(
            {
                "id": id_,
                "type": "subscribe",
                "payload": {"query": SUBSCRIBE, "variables": {"after": after}},
            }
        )
    )


async def _next(ws: ClientConnection, wait: float = 10) -> dict:
    message = json.loads(await asyncio.wait_for(ws.recv(), wait))
    assert message["type"] == "next", message
    return message["payload"]


async def _nothing_within(ws: ClientConnection, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), seconds)


async def test_sales_receives_its_channels_events_masked_and_cs_receives_all(
    live: Live,
) -> None:
    taobao, pdd, jd = await live.paid("TAOBAO"), await live.paid("PINDUODUO"), await live.paid("JD")
    async with live.socket("sales") as sales, live.socket("cs") as cs:
        await _ack(sales)
        await _ack(cs)
        await _subscribe(sales, after=await outbox_head(live))
        await _subscribe(cs, after=await outbox_head(live))
        for order in (taobao, pdd, jd):
            assert "errors" not in await live.gql(MOVE, {"id": order}, as_="ops")

        seen_by_cs = [(await _next(cs))["data"]["orderEvents"] for _ in range(3)]
        seen_by_sales = [(await _next(sales))["data"]["orderEvents"] for _ in range(2)]
        await _nothing_within(sales, 1.0)  # the Pinduoduo order never arrives

    assert [e["order"]["id"] for e in seen_by_cs] == [taobao, pdd, jd]
    assert [e["order"]["id"] for e in seen_by_sales] == [taobao, jd]
    assert [e["seq"] for e in seen_by_sales] == [seen_by_cs[0]["seq"], seen_by_cs[2]["seq"]]
    for mine, full in zip(seen_by_sales, (seen_by_cs[0], seen_by_cs[2]), strict=True):
        assert mine["eventId"] == full["eventId"]
        assert mine["type"] == "ORDER_STATUS_CHANGED"
        assert mine["order"]["status"] == "PICKING"
        assert "****" in mine["order"]["customerPhone"]
        assert "****" not in full["order"]["customerPhone"]
        assert mine["order"]["customerPhone"][:3] == full["order"]["customerPhone"][:3]


async def test_a_dropped_subscriber_resumes_after_its_last_seq_without_gaps(live: Live) -> None:
    first, second, third = [await live.paid("TAOBAO", n) for n in range(3)]
    async with live.socket("ops") as ws:
        await _ack(ws)
        await _subscribe(ws, after=None)  # from now on
        await asyncio.sleep(0.5)  # the subscription has read where "now" is
        await live.gql(MOVE, {"id": first}, as_="ops")
        got = (await _next(ws))["data"]["orderEvents"]
    # While nobody listens, two more changes commit.
    await live.gql(MOVE, {"id": second}, as_="ops")
    await live.gql(MOVE, {"id": third}, as_="ops")
    async with live.socket("ops") as ws:
        await _ack(ws)
        await _subscribe(ws, after=got["seq"])
        resumed = [(await _next(ws))["data"]["orderEvents"] for _ in range(2)]
        await _nothing_within(ws, 0.5)

    assert [e["seq"] for e in resumed] == [got["seq"] + 1, got["seq"] + 2]


async def test_denied_fields_are_null_with_a_forbidden_error_on_each_event(live: Live) -> None:
    order = await live.paid("TAOBAO")
    async with live.socket("warehouse") as ws:  # no customer phone for the warehouse
        await _ack(ws)
        await _subscribe(ws, after=await outbox_head(live))
        await live.gql(MOVE, {"id": order}, as_="ops")
        payload = await _next(ws)

    assert payload["data"]["orderEvents"]["order"]["customerPhone"] is None
    assert [(e["extensions"]["code"], e["path"]) for e in payload["errors"]] == [
        ("FORBIDDEN", ["orderEvents", "order", "customerPhone"])
    ]


async def test_the_socket_is_refused_without_a_valid_token(live: Live) -> None:
    async with live.socket(None, token="not-a-token") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403

    async with live.socket(None) as ws:  # no connection_init: a subscribe is unauthorized
        await _subscribe(ws, after=await outbox_head(live))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401


async def test_a_busy_database_closes_the_socket_with_try_again_later_not_bad_token(
    pg_database: str, tmp_path: Path
) -> None:
    """Issue #29: re-connecting subscribers were closed with 4403 ("bad token") while the pool
    was exhausted, and a client following the README threw its token away. Now 1013 (RFC 6455
    "Try Again Later"), and the same token connects once the database has room."""
    async with live_server(
        pg_database, tmp_path, ORDERGATE_DB_POOL_SIZE="2", ORDERGATE_DB_POOL_TIMEOUT_SECONDS="1"
    ) as server:
        token = await server.token("ops")
        engine = server.app.state.runtime.engine
        async with contextlib.AsyncExitStack() as held:
            while True:  # every pooled connection (the event watcher may hold one a moment)
                try:
                    taken = await held.enter_async_context(engine.connect())
                except sqlalchemy.exc.TimeoutError:
                    break
                await taken.exec_driver_sql("SELECT 1")
            async with server.socket(None, token=token) as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 10)
        async with server.socket(None, token=token) as ws:
            await _ack(ws)

    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1013
    assert "try again" in closed.value.rcvd.reason


async def test_a_page_on_a_foreign_origin_may_not_open_the_socket(live: Live) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            f"ws://{live.base}/graphql",
            subprotocols=[PROTOCOL],
            origin="https://evil.example",  # type: ignore[arg-type]
        ):
            pass
    assert refused.value.response.status_code == 403


async def test_queries_belong_on_http_and_subscriptions_on_the_socket(live: Live) -> None:
    over_http = await live.gql(SUBSCRIBE, {"after": 0}, as_="ops")
    async with live.socket("ops") as ws:
        await _ack(ws)
        await ws.send(
            json.dumps(
                {"id": "q", "type": "subscribe", "payload": {"query": "{ viewer { username } }"}}
            )
        )
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))

    assert [e["extensions"]["code"] for e in over_http["errors"]] == ["BAD_USER_INPUT"]
    assert message["type"] in ("next", "error")
    errors = message["payload"]["errors"] if message["type"] == "next" else message["payload"]
    assert [e["extensions"]["code"] for e in errors] == ["BAD_USER_INPUT"]


async def test_deliveries_are_audited_with_account_and_address(live: Live) -> None:
    order = await live.paid("JD")
    async with live.socket("sales") as ws:
        await _ack(ws)
        await _subscribe(ws, after=await outbox_head(live))
        await live.gql(MOVE, {"id": order}, as_="ops")
        event = (await _next(ws))["data"]["orderEvents"]
        await asyncio.sleep(0.5)  # the delivery record commits right after the batch

    async with live.app.state.runtime.sessions() as session:
        records = (
            await session.scalars(select(AuditEvent).where(AuditEvent.action == "events.delivered"))
        ).all()
    [record] = records
    details = json.loads(record.details)
    assert record.username == "demo-sales"
    assert record.client_ip == "127.0.0.1"
    assert details["via"] == "subscription"
    assert details["fromSeq"] == details["toSeq"] == event["seq"]
    assert details["returned"]["Order.customerPhone"]["access"] == "MASKED"


async def test_a_subscriber_whose_token_expires_is_disconnected(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        # Long enough to log in and connect on a loaded machine (3 s was not: the token had
        # expired before `connection_init`, a different refusal), short enough to wait out.
        live_server(database_url, tmp_path, ORDERGATE_TOKEN_TTL_SECONDS="8") as live,
        live.socket("ops") as ws,
    ):
        await _ack(ws)
        await _subscribe(ws, after=None)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 30)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4401, "token expired")


async def test_a_disabled_account_is_disconnected(database_url: str, tmp_path: Path) -> None:
    async with (
        live_server(database_url, tmp_path, ORDERGATE_SUBSCRIPTION_RECHECK_SECONDS="0.5") as live,
        live.socket("sales") as ws,
    ):
        await _ack(ws)
        await _subscribe(ws, after=None)
        await asyncio.sleep(0.3)
        disabled = await live.gql(
            'mutation { disableUser(username: "demo-sales") { username } }', as_="admin"
        )
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert "errors" not in disabled, disabled
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401
