"""Subscription sockets are bounded (issue #30, M3): per process, per address until logged in,
per account (sockets and running subscriptions), over time (idle sockets close), and logging
in over the socket spends budget. Each against a live uvicorn over real websockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import event
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.conftest import outbox_head
from tests.integration.test_subscriptions import MOVE, _ack, _next, _subscribe, live_server


async def _closed(ws: ClientConnection, wait: float = 10) -> tuple[int, str]:
    """The close frame the server sent (messages before it are read past)."""

    async def drain() -> None:
        while True:
            await ws.recv()

    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(drain(), wait)
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def _complete(ws: ClientConnection, id_: str) -> None:
    await ws.send(json.dumps({"id": id_, "type": "complete"}))


async def test_an_account_holds_a_bounded_number_of_sockets_and_others_are_not_affected(
    database_url: str, tmp_path: Path
) -> None:
    async with live_server(database_url, tmp_path, ORDERGATE_WS_SOCKETS_PER_ACCOUNT="2") as live:
        async with live.socket("cs") as one, live.socket("cs") as two:
            await _ack(one)
            await _ack(two)
            async with live.socket("cs") as three:
                code, reason = await _closed(three)
            async with live.socket("ops") as other:  # another account is not affected
                await _ack(other)
        # Once a socket has closed, the account may open another.
        await asyncio.wait_for(_open(live, 0), 10)
        async with live.socket("cs") as again:
            await _ack(again)

    assert code == 4429
    assert "2 open sockets" in reason


async def _events(live, sockets, count: int) -> dict[str, str]:
    """The next `count` events over `sockets`: subscription id -> order id."""
    got: dict[str, str] = {}
    while len(got) < count:
        for ws in sockets:
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), 0.2))
            except TimeoutError:
                continue
            assert message["type"] == "next", message
            got[message["id"]] = message["payload"]["data"]["orderEvents"]["order"]["id"]
    return got


async def test_an_account_runs_a_bounded_number_of_subscriptions_and_the_socket_stays(
    database_url: str, tmp_path: Path
) -> None:
    async with live_server(database_url, tmp_path, ORDERGATE_SUBSCRIPTIONS_PER_ACCOUNT="3") as live:
        first, second_order = await live.paid("TAOBAO"), await live.paid("TAOBAO", 1)
        head = await outbox_head(live)
        async with live.socket("cs") as ws, live.socket("cs") as second:
            await _ack(ws)
            await _ack(second)
            for n in ("1", "2"):
                await _subscribe(ws, after=head, id_=n)
            await _subscribe(second, after=head, id_="3")  # the bound is the account's
            assert "errors" not in await live.gql(MOVE, {"id": first}, as_="ops")
            running = await _events(live, (ws, second), 3)
            await _subscribe(second, after=head, id_="4")
            refused = json.loads(await asyncio.wait_for(second.recv(), 10))
            completed = json.loads(await asyncio.wait_for(second.recv(), 10))
            # The refused one leaves the others running, and ending one makes room.
            await _complete(ws, "1")
            await asyncio.wait_for(_started(live, 2), 10)
            await _subscribe(second, after=None, id_="5")
            await asyncio.wait_for(_started(live, 3), 10)
            assert "errors" not in await live.gql(MOVE, {"id": second_order}, as_="ops")
            after = await _events(live, (ws, second), 3)

    assert running == {"1": first, "2": first, "3": first}
    assert refused["id"] == "4"
    assert completed == {"id": "4", "type": "complete"}
    errors = refused["payload"] if refused["type"] == "error" else refused["payload"]["errors"]
    assert [e["extensions"]["code"] for e in errors] == ["RATE_LIMITED"]
    assert after == {"2": second_order, "3": second_order, "5": second_order}


async def _until(condition: Callable[[], bool]) -> None:
    """Poll a condition of the server's socket bounds every 20 ms (a counter has no event to
    wait on); the caller's `wait_for` is the deadline."""
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.02)


async def _open(live, sockets: int) -> None:
    """Until the server counts `sockets` open sockets."""
    await _until(lambda: live.app.state.runtime.sockets.open == sockets)


async def _started(live, running: int) -> None:
    """Until the server counts `running` subscriptions."""
    await _until(lambda: sum(live.app.state.runtime.sockets.subscriptions.values()) == running)


async def test_logging_in_over_the_socket_spends_the_accounts_budget(
    database_url: str, tmp_path: Path
) -> None:
    async with live_server(
        database_url, tmp_path, ORDERGATE_QUERIES_PER_ACCOUNT_PER_MINUTE="3"
    ) as live:
        await live.token("cs")  # logging in over HTTP is not the account's budget
        codes: list[object] = []
        for _ in range(3):
            async with live.socket("cs") as ws:
                await _ack(ws)
                codes.append("ack")
        async with live.socket("cs") as ws:
            codes.append((await _closed(ws))[0])

    assert codes == ["ack", "ack", "ack", 4429]


async def test_failed_socket_logins_are_counted_against_the_address(
    database_url: str, tmp_path: Path
) -> None:
    async with live_server(database_url, tmp_path, ORDERGATE_REFUSED_PER_IP_PER_MINUTE="2") as live:
        codes = []
        for token in ("not-a-token", "still-not", "again-not"):
            async with live.socket(None, token=token) as ws:
                codes.append((await _closed(ws))[0])
        async with live.socket(None) as ws:  # no Authorization at all counts the same
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            codes.append((await _closed(ws))[0])

    assert codes == [4403, 4403, 4429, 4429]


async def test_an_idle_socket_is_closed_and_a_subscribed_one_stays(
    database_url: str, tmp_path: Path
) -> None:
    async with live_server(database_url, tmp_path, ORDERGATE_WS_IDLE_SECONDS="0.5") as live:
        order = await live.paid("JD")
        async with live.socket("ops") as idle, live.socket("ops") as busy:
            await _ack(idle)
            await _ack(busy)
            await _subscribe(busy, after=await outbox_head(live))
            code, reason = await _closed(idle)  # waits for the close, not the clock
            assert "errors" not in await live.gql(MOVE, {"id": order}, as_="ops")
            event_ = (await _next(busy))["data"]["orderEvents"]

    assert (code, reason) == (1000, "idle")
    assert event_["order"]["id"] == order


async def test_sockets_waiting_to_log_in_are_bounded_per_address_and_per_process(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        live_server(database_url, tmp_path, ORDERGATE_WS_PENDING_PER_IP="2") as live,
        live.socket(None) as a,
        live.socket(None) as b,
        live.socket(None) as c,
    ):
        code, reason = await _closed(c)
        # The two waiting may still log in.
        for ws in (a, b):
            await ws.send(
                json.dumps(
                    {
                        "type": "connection_init",
                        "payload": {"Authorization": f"Bearer {await live.token('ops')}"},
                    }
                )
            )
            await _ack(ws)
        async with live.socket("cs") as d:  # logged-in sockets no longer wait
            await _ack(d)
    assert code == 1013
    assert "waiting to log in" in reason

    async with live_server(database_url, tmp_path, ORDERGATE_WS_MAX_SOCKETS="2") as live:
        async with live.socket("ops") as a, live.socket("cs") as b:
            await _ack(a)
            await _ack(b)
            async with live.socket(None) as c:  # refused as it opens
                full = await _closed(c)
        await asyncio.wait_for(_open(live, 0), 10)  # the server has seen both close
        async with live.socket("sales") as c:
            await _ack(c)
    assert full[0] == 1013
    assert "too many open sockets" in full[1]

    # Sockets that never log in, from any number of addresses, hold a quarter of it at most.
    async with (
        live_server(database_url, tmp_path, ORDERGATE_WS_MAX_SOCKETS="8") as live,
        live.socket(None) as a,
        live.socket(None),
    ):
        async with live.socket(None) as c:
            waiting = await _closed(c)
        await live.token("ops")
        await a.send(
            json.dumps(
                {
                    "type": "connection_init",
                    "payload": {"Authorization": f"Bearer {await live.token('ops')}"},
                }
            )
        )
        await _ack(a)  # one of them logs in: room for another to wait
        async with live.socket("cs") as d:
            await _ack(d)
    assert waiting == (1013, "too many sockets are waiting to log in; try again shortly")


async def test_subscribers_of_one_account_share_one_read_per_wake_up(
    database_url: str, tmp_path: Path
) -> None:
    """400 subscriptions of one token made everyone's reads 14x slower: each woke and read
    the same page on its own. Ten subscriptions of one account now read once per event."""
    async with live_server(database_url, tmp_path) as live:
        order, other = await live.paid("TAOBAO"), await live.paid("TAOBAO", 1)
        head = await outbox_head(live)
        reads: list[str] = []

        def count(conn, cursor, statement, parameters, context, executemany) -> None:
            if "FROM outbox_events JOIN orders" in " ".join(statement.split()):
                reads.append(statement)

        engine = live.app.state.runtime.engine.sync_engine
        async with live.socket("cs") as ws:
            await _ack(ws)
            for n in range(10):
                await _subscribe(ws, after=head, id_=str(n))
            assert "errors" not in await live.gql(MOVE, {"id": order}, as_="ops")
            seen = set()
            while len(seen) < 10:
                message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert message["type"] == "next", message
                seen.add(message["id"])
            event.listen(engine, "before_cursor_execute", count)
            try:
                assert "errors" not in await live.gql(MOVE, {"id": other}, as_="ops")
                seen = set()
                while len(seen) < 10:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    assert message["type"] == "next", message
                    seen.add(message["id"])
            finally:
                event.remove(engine, "before_cursor_execute", count)

    assert 1 <= len(reads) <= 3, len(reads)
