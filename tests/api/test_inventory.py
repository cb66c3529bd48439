"""Inventory through the real app: reservations at checkout (all lines or none, replays,
release, confirm, expiry by the worker's job with a frozen clock), receipts and corrections,
and the ledger under the field policy — whose movements always add up to the stock."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select

from api.worker import scheduled_jobs
from domain.audit.models import AuditEvent
from domain.db import utcnow
from domain.events.models import OutboxEvent
from domain.inventory.models import StockMovement
from domain.jobs.scheduler import run_due
from tests.conftest import Api, errors_of, outbox_head

RESERVE = """mutation($i: ReserveStockInput!) { reserveStock(input: $i) {
  id reference status expiresAt lines { sku warehouse quantity } } }"""
RELEASE = "mutation($id: ID!) { releaseReservation(id: $id) { id status expiresAt } }"
CONFIRM = "mutation($id: ID!) { confirmReservation(id: $id) { id status expiresAt } }"
ADJUST = """mutation($i: AdjustStockInput!) { adjustStock(input: $i) {
  sku warehouse onHand reserved available } }"""
ITEM = """query($s: String!, $w: String) { stockItem(sku: $s, warehouse: $w) {
  onHand reserved available } }"""
MOVEMENTS = """query($f: StockMovementFilter, $n: Int) { stockMovements(filter: $f, first: $n) {
  totalCount edges { node { id at sku warehouse onHandDelta reservedDelta reason reference
  actor unitCost } } } }"""


async def _item(api: Api, sku: str, warehouse: str) -> dict[str, int]:
    found = await api.gql(ITEM, {"s": sku, "w": warehouse}, as_="ops")
    return found["data"]["stockItem"]


async def _stocked(api: Api, at_least: int = 20, skip: int = 0) -> tuple[str, str]:
    """A SKU and warehouse with at least `at_least` available (the `skip`+1-th such)."""
    found = await api.gql(
        "{ stockItems(first: 100) { edges { node { sku warehouse available } } } }", as_="ops"
    )
    for edge in found["data"]["stockItems"]["edges"]:
        node = edge["node"]
        if node["available"] >= at_least:
            if skip == 0:
                return node["sku"], node["warehouse"]
            skip -= 1
    raise AssertionError("no demo stock item with enough available")


def _line(sku: str, warehouse: str, quantity: int) -> dict[str, Any]:
    return {"sku": sku, "warehouse": warehouse, "quantity": quantity}


async def _reserve(
    api: Api, reference: str, lines: list[dict[str, Any]], ttl: int | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"reference": reference, "lines": lines}
    if ttl is not None:
        body["ttlSeconds"] = ttl
    return await api.gql(RESERVE, {"i": body}, as_="integration")


async def _ledger_total(api: Api, sku: str, warehouse: str) -> tuple[int, int]:
    async with api.app.state.runtime.sessions() as session:
        row = (
            await session.execute(
                select(
                    func.sum(StockMovement.on_hand_delta), func.sum(StockMovement.reserved_delta)
                ).where(StockMovement.sku == sku, StockMovement.warehouse == warehouse)
            )
        ).one()
    return int(row[0]), int(row[1])


async def test_a_reservation_holds_summed_lines_and_the_ledger_explains_it(any_api: Api) -> None:
    api = any_api
    sku, warehouse = await _stocked(api)
    before = await _item(api, sku, warehouse)
    head = await outbox_head(api)

    made = await _reserve(api, "WEB-1001", [_line(sku, warehouse, 2), _line(sku, warehouse, 3)])

    assert "errors" not in made, made
    reservation = made["data"]["reserveStock"]
    assert reservation["status"] == "ACTIVE"
    assert reservation["lines"] == [_line(sku, warehouse, 5)]
    expires = dt.datetime.fromisoformat(reservation["expiresAt"])
    assert dt.timedelta(minutes=14) < expires - utcnow() <= dt.timedelta(minutes=15)
    after = await _item(api, sku, warehouse)
    assert after == {
        "onHand": before["onHand"],
        "reserved": before["reserved"] + 5,
        "available": before["available"] - 5,
    }
    assert await _ledger_total(api, sku, warehouse) == (after["onHand"], after["reserved"])
    ledger = await api.gql(MOVEMENTS, {"f": {"sku": sku, "warehouse": warehouse}}, as_="ops")
    newest = ledger["data"]["stockMovements"]["edges"][0]["node"]
    assert (newest["reason"], newest["reservedDelta"], newest["onHandDelta"]) == ("RESERVE", 5, 0)
    assert newest["reference"] == "reservation WEB-1001"
    assert newest["actor"] == "demo-integration"
    async with api.app.state.runtime.sessions() as session:
        events = (await session.scalars(select(OutboxEvent).where(OutboxEvent.seq > head))).all()
        audited = await session.scalar(
            select(func.count()).where(AuditEvent.action == "stock.reserve")
        )
    assert [(e.type, e.aggregate_type) for e in events] == [("STOCK_CHANGED", "StockItem")]
    assert '"available":' + str(after["available"]) in events[0].payload
    assert audited == 1


async def test_all_lines_or_none_and_nothing_changes_when_one_is_short(any_api: Api) -> None:
    api = any_api
    sku, warehouse = await _stocked(api)
    other_sku, other_wh = await _stocked(api, skip=1)
    before = await _item(api, sku, warehouse)
    ledger_before = await _ledger_total(api, sku, warehouse)

    refused = await _reserve(
        api,
        "WEB-1002",
        [_line(sku, warehouse, 1), _line(other_sku, other_wh, 999_999)],
    )

    assert errors_of(refused) == [("INSUFFICIENT_STOCK", None)]
    assert refused["data"] == {"reserveStock": None}
    assert await _item(api, sku, warehouse) == before
    assert await _ledger_total(api, sku, warehouse) == ledger_before
    again = await _reserve(api, "WEB-1002", [_line(sku, warehouse, 1)])
    assert "errors" not in again  # the reference was not taken by the refused attempt


async def test_a_retried_checkout_gets_its_reservation_back_and_other_lines_conflict(
    any_api: Api,
) -> None:
    api = any_api
    sku, warehouse = await _stocked(api)
    first = await _reserve(api, "WEB-1003", [_line(sku, warehouse, 2)])
    held = await _item(api, sku, warehouse)

    retried = await _reserve(api, "WEB-1003", [_line(sku, warehouse, 2)])
    other = await _reserve(api, "WEB-1003", [_line(sku, warehouse, 3)])

    assert retried["data"]["reserveStock"]["id"] == first["data"]["reserveStock"]["id"]
    assert errors_of(other) == [("CONFLICT", None)]
    assert await _item(api, sku, warehouse) == held


async def test_release_gives_the_stock_back_once(any_api: Api) -> None:
    api = any_api
    sku, warehouse = await _stocked(api)
    before = await _item(api, sku, warehouse)
    made = await _reserve(api, "WEB-1004", [_line(sku, warehouse, 4)])
    rid = made["data"]["reserveStock"]["id"]

    released = await api.gql(RELEASE, {"id": rid}, as_="integration")
    again = await api.gql(RELEASE, {"id": rid}, as_="integration")
    confirm_after = await api.gql(CONFIRM, {"id": rid}, as_="integration")

    assert released["data"]["releaseReservation"]["status"] == "RELEASED"
    assert again["data"]["releaseReservation"]["status"] == "RELEASED"
    assert errors_of(confirm_after) == [("CONFLICT", None)]
    assert await _item(api, sku, warehouse) == before
    assert await _ledger_total(api, sku, warehouse) == (before["onHand"], before["reserved"])
    # One audit record of the release, by its account, for that reservation (issue #28: the
    # release without its audit record went unnoticed); the repeat changed nothing.
    async with api.app.state.runtime.sessions() as session:
        audited = (
            await session.execute(
                select(AuditEvent.username, AuditEvent.target_id, AuditEvent.outcome).where(
                    AuditEvent.action == "stock.release"
                )
            )
        ).all()
    reservation_id = base64.b64decode(rid).decode().rsplit(":", 1)[1]
    assert [tuple(a) for a in audited] == [("demo-integration", reservation_id, "success")]


def _expiry_job(api: Api) -> Any:
    [job] = [
        j for j in scheduled_jobs(api.app.state.runtime) if j.name == "stock.expire-reservations"
    ]
    return job


async def _run_expiry(api: Api, now: dt.datetime) -> None:
    runtime = api.app.state.runtime
    clock, runtime.clock = runtime.clock, lambda: now
    try:
        await run_due(sessions=runtime.sessions, jobs=[_expiry_job(api)], now=now)
    finally:
        runtime.clock = clock


async def test_an_unpaid_reservation_expires_within_a_minute_and_a_confirmed_one_holds(
    any_api: Api,
) -> None:
    api = any_api
    sku, warehouse = await _stocked(api)
    before = await _item(api, sku, warehouse)
    unpaid = (await _reserve(api, "WEB-1005", [_line(sku, warehouse, 3)], ttl=60))["data"]
    paid = (await _reserve(api, "WEB-1006", [_line(sku, warehouse, 2)], ttl=60))["data"]
    confirmed = await api.gql(CONFIRM, {"id": paid["reserveStock"]["id"]}, as_="integration")
    assert "errors" not in confirmed, confirmed
    assert confirmed["data"]["confirmReservation"] == {
        "id": paid["reserveStock"]["id"],
        "status": "CONFIRMED",
        "expiresAt": None,
    }
    expires = dt.datetime.fromisoformat(unpaid["reserveStock"]["expiresAt"])

    await _run_expiry(api, expires - dt.timedelta(seconds=1))
    still = await _item(api, sku, warehouse)
    await _run_expiry(api, expires + dt.timedelta(seconds=59))
    after = await _item(api, sku, warehouse)
    late_confirm = await api.gql(CONFIRM, {"id": unpaid["reserveStock"]["id"]}, as_="integration")

    assert still["reserved"] == before["reserved"] + 5
    assert after["reserved"] == before["reserved"] + 2  # the confirmed one still holds
    assert errors_of(late_confirm) == [("CONFLICT", None)]
    ledger = await api.gql(MOVEMENTS, {"f": {"sku": sku, "reason": "EXPIRE"}}, as_="ops")
    [expired] = ledger["data"]["stockMovements"]["edges"]
    assert (expired["node"]["reservedDelta"], expired["node"]["actor"]) == (
        -3,
        "system:reservations",
    )
    assert await _ledger_total(api, sku, warehouse) == (after["onHand"], after["reserved"])


async def test_receipts_and_corrections_never_take_on_hand_below_reserved(any_api: Api) -> None:
    api = any_api
    sku, warehouse = await _stocked(api)
    await _reserve(api, "WEB-1007", [_line(sku, warehouse, 5)])
    before = await _item(api, sku, warehouse)

    receipt = await api.gql(
        ADJUST,
        {"i": {"sku": sku, "warehouse": warehouse, "delta": 12, "reason": "PO-77 received"}},
        as_="warehouse",
    )
    too_far = await api.gql(
        ADJUST,
        {
            "i": {
                "sku": sku,
                "warehouse": warehouse,
                "delta": -(before["available"] + 13),
                "reason": "count",
            }
        },
        as_="purchasing",
    )
    to_reserved = await api.gql(
        ADJUST,
        {
            "i": {
                "sku": sku,
                "warehouse": warehouse,
                "delta": -(before["available"] + 12),
                "reason": "damaged in storage",
            }
        },
        as_="purchasing",
    )

    assert receipt["data"]["adjustStock"]["onHand"] == before["onHand"] + 12
    assert errors_of(too_far) == [("INSUFFICIENT_STOCK", None)]
    assert to_reserved["data"]["adjustStock"]["available"] == 0
    assert to_reserved["data"]["adjustStock"]["reserved"] == before["reserved"]
    reasons = await api.gql(MOVEMENTS, {"f": {"sku": sku, "warehouse": warehouse}}, as_="finance")
    nodes = [e["node"] for e in reasons["data"]["stockMovements"]["edges"]]
    assert [(n["reason"], n["onHandDelta"], n["reference"]) for n in nodes[:2]] == [
        ("CORRECTION", -(before["available"] + 12), "damaged in storage"),
        ("RECEIPT", 12, "PO-77 received"),
    ]
    final = await _item(api, sku, warehouse)
    assert await _ledger_total(api, sku, warehouse) == (final["onHand"], final["reserved"])


async def test_the_ledger_shows_unit_cost_to_finance_only(api: Api) -> None:
    finance = await api.gql(MOVEMENTS, {"n": 3}, as_="finance")
    ops = await api.gql(MOVEMENTS, {"n": 3}, as_="ops")
    cs = await api.gql(MOVEMENTS, {"n": 3}, as_="cs")

    assert all(
        e["node"]["unitCost"] is not None for e in finance["data"]["stockMovements"]["edges"]
    )
    assert "errors" not in finance
    assert all(e["node"]["unitCost"] is None for e in ops["data"]["stockMovements"]["edges"])
    assert ("FORBIDDEN", "StockMovement.unitCost") in errors_of(ops)
    assert cs["data"]["stockMovements"] is None
    assert ("FORBIDDEN", None) in errors_of(cs)


ONE = _line("SKU-0001", "SH-01", 1)
PLUS_ONE = {"sku": "SKU-0001", "warehouse": "SH-01", "delta": 1, "reason": "r"}


@pytest.mark.parametrize(
    ("role", "query", "variables"),
    [
        ("cs", RESERVE, {"i": {"reference": "X", "lines": [_line("SKU-0001", "SH-01", 1)]}}),
        ("warehouse", RESERVE, {"i": {"reference": "X", "lines": [_line("SKU-0001", "SH-01", 1)]}}),
        ("cs", ADJUST, {"i": {"sku": "SKU-0001", "warehouse": "SH-01", "delta": 1, "reason": "r"}}),
        (
            "ops",
            ADJUST,
            {"i": {"sku": "SKU-0001", "warehouse": "SH-01", "delta": 1, "reason": "r"}},
        ),
    ],
)
async def test_roles_without_the_operation_are_refused(
    api: Api, role: str, query: str, variables: dict[str, Any]
) -> None:
    before = await _item(api, "SKU-0001", "SH-01")
    refused = await api.gql(query, variables, as_=role)
    assert ("FORBIDDEN", None) in errors_of(refused)
    assert await _item(api, "SKU-0001", "SH-01") == before


BAD_LINES = {
    "zero": _line("SKU-0001", "SH-01", 0),
    "negative": _line("SKU-0001", "SH-01", -1),
    "too many": _line("SKU-0001", "SH-01", 1_000_001),
    "NUL in sku": _line("SKU-0001\x00", "SH-01", 1),
    "control in warehouse": _line("SKU-0001", "SH\x1b-01", 1),
    "empty sku": _line("", "SH-01", 1),
}


@pytest.mark.parametrize("name", sorted(BAD_LINES))
async def test_bad_lines_are_bad_user_input_and_change_nothing(api: Api, name: str) -> None:
    before = await _item(api, "SKU-0001", "SH-01")
    refused = await _reserve(api, f"BAD-{name}", [BAD_LINES[name]])
    assert [code for code, _ in errors_of(refused)] == ["BAD_USER_INPUT"]
    assert await _item(api, "SKU-0001", "SH-01") == before


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("no lines", {"reference": "R", "lines": []}),
        ("ttl too short", {"reference": "R", "lines": [ONE], "ttlSeconds": 5}),
        ("huge ttl", {"reference": "R", "lines": [ONE], "ttlSeconds": 2**40}),
        ("exotic digits", {"reference": "R", "lines": [{**ONE, "quantity": "٣"}]}),
        ("reference with NUL", {"reference": "R\x00", "lines": [ONE]}),
        ("float quantity", {"reference": "R", "lines": [{**ONE, "quantity": 1.5}]}),
    ],
)  # fmt: skip
async def test_bad_reservations_are_bad_user_input(
    api: Api, name: str, body: dict[str, Any]
) -> None:
    refused = await api.gql(RESERVE, {"i": body}, as_="integration")
    assert [code for code, _ in errors_of(refused)] == ["BAD_USER_INPUT"], refused


@pytest.mark.parametrize(
    "change",
    [
        {"delta": 0, "reason": "r"},
        {"delta": 2**31, "reason": "r"},
        {"delta": 1, "reason": ""},
        {"delta": 1, "reason": '=HYPERLINK("x")\x00'},
    ],
)
async def test_bad_adjustments_are_bad_user_input(api: Api, change: dict[str, Any]) -> None:
    before = await _item(api, "SKU-0001", "SH-01")
    refused = await api.gql(
        ADJUST, {"i": {"sku": "SKU-0001", "warehouse": "SH-01", **change}}, as_="warehouse"
    )
    assert [code for code, _ in errors_of(refused)] == ["BAD_USER_INPUT"], refused
    assert await _item(api, "SKU-0001", "SH-01") == before


async def test_an_unknown_stock_item_is_not_found(api: Api) -> None:
    refused = await _reserve(api, "WEB-404", [_line("SKU-0001", "NOWHERE", 1)])
    assert errors_of(refused) == [("NOT_FOUND", None)]


# ---- whose hold it is (issue #30: H3, L5) ----------------------------------------------------


async def _second_integration_account(api: Api) -> dict[str, str]:
    from tests.api.test_approvals import login_as_new_user

    token = await login_as_new_user(api, "jd-shop-service", ["integration"])
    return {"authorization": f"Bearer {token}"}


async def test_another_accounts_checkout_hold_cannot_be_released_or_confirmed(
    api: Api,
) -> None:
    sku, warehouse = await _stocked(api)
    made = await _reserve(api, "WEB-OWN-1", [_line(sku, warehouse, 3)])
    rid = made["data"]["reserveStock"]["id"]
    held = await _item(api, sku, warehouse)
    other = await _second_integration_account(api)

    released = await api.gql(RELEASE, {"id": rid}, **other)
    confirmed = await api.gql(CONFIRM, {"id": rid}, **other)
    taken = await api.gql(
        RESERVE, {"i": {"reference": "WEB-OWN-1", "lines": [_line(sku, warehouse, 3)]}}, **other
    )

    assert errors_of(released) == [("NOT_FOUND", None)]
    assert errors_of(confirmed) == [("NOT_FOUND", None)]
    assert errors_of(taken) == [("CONFLICT", None)]
    assert await _item(api, sku, warehouse) == held
    mine = await api.gql(RELEASE, {"id": rid}, as_="integration")
    assert mine["data"]["releaseReservation"]["status"] == "RELEASED"


async def test_an_orders_hold_moves_only_with_its_order(api: Api) -> None:
    """Even the account that ingested the order cannot release its hold by hand: the units
    would be sold again and the paid order ship with nothing behind it."""
    from domain.inventory.models import StockReservation
    from tests.api.test_intake import channel_order, ingest

    [landed] = await ingest(api, [channel_order("TB-HOLD-1")])
    async with api.app.state.runtime.sessions() as session:
        hold = await session.scalar(
            select(StockReservation)
            .where(StockReservation.order_id.is_not(None))
            .order_by(StockReservation.id.desc())
        )
    assert hold is not None
    assert hold.reference.startswith("order ")
    from api.graphql.relay import global_id

    rid = global_id("Reservation", hold.id)

    released = await api.gql(RELEASE, {"id": rid}, as_="integration")
    confirmed = await api.gql(CONFIRM, {"id": rid}, as_="integration")

    assert landed["outcome"] == "CREATED"
    assert errors_of(released) == [("CONFLICT", None)]
    assert errors_of(confirmed) == [("CONFLICT", None)]
    async with api.app.state.runtime.sessions() as session:
        again = await session.get(StockReservation, hold.id)
        assert again is not None
        assert again.status == hold.status


async def test_a_checkout_may_not_take_an_orders_hold_reference(api: Api) -> None:
    sku, warehouse = await _stocked(api)
    before = await _item(api, sku, warehouse)

    squatted = await _reserve(api, "order OG20261207000001", [_line(sku, warehouse, 1)])
    shouting = await _reserve(api, "ORDER OG1", [_line(sku, warehouse, 1)])

    assert errors_of(squatted) == [("BAD_USER_INPUT", None)]
    assert errors_of(shouting) == [("BAD_USER_INPUT", None)]
    assert await _item(api, sku, warehouse) == before
