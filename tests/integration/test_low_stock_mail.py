"""Low-stock alerts by mail, to a real SMTP server on loopback (aiosmtpd): edge-triggered —
a hundred decrements below the safety threshold send one mail, none again until the stock
recovers above it — to the purchasing and operations accounts that have an address; a mail
server that is down delays the mail, loses nothing; without an SMTP URL (development) the
message is kept as a file."""

from __future__ import annotations

import contextlib
import email
import socket
from collections.abc import AsyncIterator, Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from api.worker import deliver_round
from domain.catalog.models import StockItem
from domain.inventory.models import StockAlert
from tests.conftest import Api, _api_for, errors_of, settings_for

SKU, WAREHOUSE, THRESHOLD = "SKU-0016", "GZ-01", 200
RESERVE = "mutation($i: ReserveStockInput!) { reserveStock(input: $i) { id } }"
ADJUST = "mutation($i: AdjustStockInput!) { adjustStock(input: $i) { available } }"
ALERTS = (
    "{ stockAlerts(first: 10) { edges { node { sku warehouse available threshold notifiedAt } } } }"
)


class Inbox:
    def __init__(self) -> None:
        self.received: list[tuple[list[str], Message]] = []

    @property
    def messages(self) -> list[tuple[list[str], Message]]:
        """The mails about this test's SKU (the demo data may leave other SKUs below their
        threshold, and those are mailed too)."""
        return [(to, m) for to, m in self.received if f"Low stock: {SKU} " in m["Subject"]]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(
            (list(envelope.rcpt_tos), email.message_from_bytes(envelope.original_content))
        )
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, Controller]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield inbox, controller
    with contextlib.suppress(RuntimeError, AssertionError):  # a test may have stopped it
        controller.stop()


@pytest.fixture
async def mail_api(
    any_database_url: str, tmp_path: Path, smtp: tuple[Inbox, Controller]
) -> AsyncIterator[Api]:
    _, controller = smtp
    settings = settings_for(
        any_database_url,
        tmp_path,
        ORDERGATE_SMTP_URL=f"smtp://127.0.0.1:{controller.port}",
        ORDERGATE_MAIL_FROM="stock@ordergate.test",
    )
    async for api in _api_for(settings):
        yield api


async def _at_threshold(api: Api) -> None:
    """Give the SKU a threshold of 200 and exactly 200 available (nothing alerted yet)."""
    async with api.app.state.runtime.sessions() as session:
        await session.execute(
            update(StockItem)
            .where(StockItem.sku == SKU, StockItem.warehouse == WAREHOUSE)
            .values(safety_threshold=THRESHOLD)
        )
        available = await session.scalar(
            select(StockItem.on_hand - StockItem.reserved).where(
                StockItem.sku == SKU, StockItem.warehouse == WAREHOUSE
            )
        )
        await session.commit()
    done = await _adjust(api, THRESHOLD - available)
    assert done["data"]["adjustStock"]["available"] == THRESHOLD, done


async def _adjust(api: Api, delta: int) -> dict:
    change = {"sku": SKU, "warehouse": WAREHOUSE, "delta": delta, "reason": "test setup"}
    return await api.gql(ADJUST, {"i": change}, as_="warehouse")


async def _take(api: Api, n: int, prefix: str) -> None:
    for k in range(n):
        line = {"sku": SKU, "warehouse": WAREHOUSE, "quantity": 1}
        made = await api.gql(
            RESERVE, {"i": {"reference": f"{prefix}-{k}", "lines": [line]}}, as_="integration"
        )
        assert "errors" not in made, made


async def _round(api: Api) -> None:
    import httpx

    runtime = api.app.state.runtime
    async with httpx.AsyncClient() as http:
        await deliver_round(runtime, http, [])


async def test_a_hundred_decrements_below_the_threshold_send_one_mail(
    mail_api: Api, smtp: tuple[Inbox, Controller]
) -> None:
    api, (inbox, _) = mail_api, smtp
    await _at_threshold(api)
    await _round(api)
    assert inbox.messages == []  # at the threshold is not below it

    await _take(api, 100, "LOW")
    await _round(api)
    await _round(api)

    [(recipients, message)] = inbox.messages
    assert sorted(recipients) == ["demo-ops@example.com", "demo-purchasing@example.com"]
    assert message["From"] == "stock@ordergate.test"
    assert message["Subject"] == (
        f"Low stock: {SKU} in {WAREHOUSE} ({THRESHOLD - 1} available, threshold {THRESHOLD})"
    )
    assert "Available: 199" in message.get_payload()
    alerts = await api.gql(ALERTS, as_="purchasing")
    [alert] = [e["node"] for e in alerts["data"]["stockAlerts"]["edges"] if e["node"]["sku"] == SKU]
    assert alert["available"] == THRESHOLD - 1
    assert alert["notifiedAt"] is not None

    # Back above the threshold, then below again: a second crossing, a second mail.
    await _adjust(api, 150)
    await _take(api, 60, "AGAIN")
    await _round(api)
    assert len(inbox.messages) == 2
    assert f"({THRESHOLD + 49} available" not in inbox.messages[1][1]["Subject"]
    assert f"({THRESHOLD - 1} available" in inbox.messages[1][1]["Subject"]


async def test_a_mail_server_that_is_down_delays_the_alert_and_loses_nothing(
    mail_api: Api, smtp: tuple[Inbox, Controller]
) -> None:
    api, (inbox, controller) = mail_api, smtp
    await _at_threshold(api)
    controller.stop()
    await _take(api, 1, "DOWN")
    await _round(api)
    async with api.app.state.runtime.sessions() as session:
        [pending] = (await session.scalars(select(StockAlert).where(StockAlert.sku == SKU))).all()
    assert (pending.notified_at, pending.attempts) == (None, 1)
    assert pending.last_error

    again = Controller(inbox, hostname="127.0.0.1", port=controller.port)
    again.start()
    try:
        await _round(api)
    finally:
        again.stop()
    assert len(inbox.messages) == 1


async def test_only_purchasing_and_operations_read_alerts(api: Api) -> None:
    for role in ("warehouse", "cs", "finance", "integration"):
        assert ("FORBIDDEN", None) in errors_of(await api.gql(ALERTS, as_=role))


async def test_without_an_smtp_url_the_mail_is_kept_as_a_file(api: Api, tmp_path: Path) -> None:
    await _at_threshold(api)
    await _take(api, 1, "DEV")
    await _round(api)
    kept = [
        message
        for path in (tmp_path / "mail").glob("*.eml")
        if (message := email.message_from_bytes(path.read_bytes()))["Subject"].startswith(
            f"Low stock: {SKU} "
        )
    ]
    [message] = kept
