"""Returns through the real app: the warehouse registers what came back after inspection;
RESTOCK lines go back on hand (once per order line, however often the registration is sent),
DAMAGED lines are recorded only, and a registration more than two hours after the inspection
is flagged as breaching the SLA."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from domain.db import utcnow
from domain.orders.picking import PickingList
from tests.conftest import Api, db_id, errors_of

REGISTER = """mutation($i: ReturnInput!) { registerReturn(input: $i) { id slaBreached
  inspectedAt order { id number status } lines { orderLineId sku warehouse quantity
  disposition } } }"""
RETURNS = """query($f: ReturnFilter) { returns(filter: $f) { totalCount edges { node { id
  slaBreached order { number } } } } }"""
MOVE = "mutation($id: ID!, $to: OrderStatus!) { transitionOrder(id: $id, to: $to) { status } }"
ITEM = """query($s: String!, $w: String) { stockItem(sku: $s, warehouse: $w) { onHand } }"""
PICKING = """query($id: ID!) { order(id: $id) { lines { id sku quantity } } }"""


async def _shipped(api: Api, n: int = 0) -> dict[str, Any]:
    """A paid demo order (with two lines or more), moved on to SHIPPED by the warehouse."""
    found = await api.gql(
        "{ orders(first: 50, filter: {status: [PAID]}) { edges { node { id number "
        "lines { id sku quantity } } } } }",
        as_="ops",
    )
    orders = [e["node"] for e in found["data"]["orders"]["edges"] if len(e["node"]["lines"]) >= 2]
    order = orders[n]
    for step in ("PICKING", "SHIPPED"):
        moved = await api.gql(MOVE, {"id": order["id"], "to": step}, as_="warehouse")
        assert "errors" not in moved, moved
    return order


async def _warehouse_of(api: Api, order: dict) -> str:
    """The warehouse the order was picked from (its picking list's)."""
    async with api.app.state.runtime.sessions() as session:
        return await session.scalar(
            select(PickingList.warehouse).where(PickingList.order_id == db_id(order["id"]))
        )


async def _on_hand(api: Api, sku: str, warehouse: str) -> int:
    return (await api.gql(ITEM, {"s": sku, "w": warehouse}, as_="ops"))["data"]["stockItem"][
        "onHand"
    ]


def _input(order: dict, inspected: dt.datetime, lines: list[tuple[int, int, str]]) -> dict:
    return {
        "orderId": order["id"],
        "inspectedAt": inspected.isoformat(),
        "lines": [
            {"orderLineId": order["lines"][k]["id"], "quantity": q, "disposition": d}
            for k, q, d in lines
        ],
    }


async def test_restocked_lines_go_back_on_hand_once_and_damaged_ones_do_not(
    any_api: Api,
) -> None:
    api = any_api
    order = await _shipped(api)
    home = await _warehouse_of(api, order)
    first, second = order["lines"][0], order["lines"][1]
    before = {li["sku"]: await _on_hand(api, li["sku"], home) for li in (first, second)}
    body = _input(
        order, utcnow() - dt.timedelta(minutes=30), [(0, 1, "RESTOCK"), (1, 1, "DAMAGED")]
    )

    registered = await api.gql(REGISTER, {"i": body}, as_="warehouse")
    retried = await api.gql(REGISTER, {"i": body}, as_="warehouse")
    changed = await api.gql(
        REGISTER,
        {"i": _input(order, utcnow(), [(0, first["quantity"], "RESTOCK")])},
        as_="warehouse",
    )

    assert "errors" not in registered, registered
    made = registered["data"]["registerReturn"]
    assert made["slaBreached"] is False
    assert made["order"]["status"] == "SHIPPED"
    lines = [
        (li["sku"], li["quantity"], li["disposition"], li["warehouse"]) for li in made["lines"]
    ]
    assert lines == [(first["sku"], 1, "RESTOCK", home), (second["sku"], 1, "DAMAGED", home)]
    assert retried["data"]["registerReturn"]["id"] == made["id"]
    assert errors_of(changed) == [("CONFLICT", None)]
    expected_first = before[first["sku"]] + 1
    expected_second = before[second["sku"]] + (1 if second["sku"] == first["sku"] else 0)
    assert await _on_hand(api, first["sku"], home) == expected_first
    assert await _on_hand(api, second["sku"], home) == expected_second
    ledger = await api.gql(
        "query($s: String!) { stockMovements(filter: {sku: $s, reason: RETURN}) { edges { node "
        "{ onHandDelta reference actor } } } }",
        {"s": first["sku"]},
        as_="ops",
    )
    [moved] = ledger["data"]["stockMovements"]["edges"]
    assert moved["node"] == {
        "onHandDelta": 1,
        "reference": f"return of order {order['number']}",
        "actor": "demo-warehouse",
    }


async def test_a_return_registered_more_than_two_hours_after_inspection_breaches_the_sla(
    api: Api,
) -> None:
    late_order, on_time_order = await _shipped(api, 0), await _shipped(api, 1)
    two_hours_ago = utcnow() - dt.timedelta(hours=2)
    late_body = _input(late_order, two_hours_ago - dt.timedelta(minutes=1), [(0, 1, "DAMAGED")])
    on_time_body = _input(
        on_time_order, two_hours_ago + dt.timedelta(minutes=1), [(0, 1, "DAMAGED")]
    )
    late = await api.gql(REGISTER, {"i": late_body}, as_="warehouse")
    on_time = await api.gql(REGISTER, {"i": on_time_body}, as_="warehouse")

    assert late["data"]["registerReturn"]["slaBreached"] is True
    assert on_time["data"]["registerReturn"]["slaBreached"] is False
    breached = await api.gql(RETURNS, {"f": {"slaBreached": True}}, as_="warehouse")
    assert [e["node"]["order"]["number"] for e in breached["data"]["returns"]["edges"]] == [
        late_order["number"]
    ]


async def test_only_shipped_orders_and_their_own_lines_come_back(api: Api) -> None:
    shipped, other = await _shipped(api, 0), await _shipped(api, 1)
    paid = await api.gql(
        "{ orders(first: 1, filter: {status: [PAID]}) { edges { node { id number "
        "lines { id sku quantity } } } } }",
        as_="ops",
    )
    unshipped = paid["data"]["orders"]["edges"][0]["node"]
    now = utcnow()

    not_yet = await api.gql(
        REGISTER, {"i": _input(unshipped, now, [(0, 1, "RESTOCK")])}, as_="warehouse"
    )
    too_many = await api.gql(
        REGISTER,
        {"i": _input(shipped, now, [(0, shipped["lines"][0]["quantity"] + 1, "RESTOCK")])},
        as_="warehouse",
    )
    foreign = _input(shipped, now, [(0, 1, "RESTOCK")])
    foreign["lines"][0]["orderLineId"] = other["lines"][0]["id"]
    not_its_line = await api.gql(REGISTER, {"i": foreign}, as_="warehouse")

    assert errors_of(not_yet) == [("INVALID_TRANSITION", None)]
    assert errors_of(too_many) == [("BAD_USER_INPUT", None)]
    assert errors_of(not_its_line) == [("NOT_FOUND", None)]
    assert (await api.gql(RETURNS, as_="warehouse"))["data"]["returns"]["totalCount"] == 0


@pytest.mark.parametrize(
    "change",
    [
        {"inspectedAt": "2026-11-27T10:00:00"},
        {"inspectedAt": "2999-01-01T00:00:00Z"},
        {"lines": []},
        {"quantity": 0},
        {"quantity": 2**31},
    ],
)
async def test_bad_returns_are_bad_user_input(api: Api, change: dict[str, Any]) -> None:
    order = await _shipped(api)
    body = _input(order, utcnow(), [(0, 1, "RESTOCK")])
    if "quantity" in change:
        body["lines"][0]["quantity"] = change.pop("quantity")
    body.update(change)
    refused = await api.gql(REGISTER, {"i": body}, as_="warehouse")
    assert [code for code, _ in errors_of(refused)] == ["BAD_USER_INPUT"], refused


@pytest.mark.parametrize("role", ["cs", "ops", "integration", "purchasing"])
async def test_only_the_warehouse_registers_and_lists_returns(api: Api, role: str) -> None:
    order = await _shipped(api)
    refused = await api.gql(REGISTER, {"i": _input(order, utcnow(), [(0, 1, "RESTOCK")])}, as_=role)
    listed = await api.gql(RETURNS, as_=role)
    assert ("FORBIDDEN", None) in errors_of(refused)
    assert ("FORBIDDEN", None) in errors_of(listed)


INSPECT = """mutation($o: ID!, $at: DateTime!) { recordReturnInspection(orderId: $o,
  inspectedAt: $at) { id orderId inspectedAt recordedBy registered } }"""


async def _overdue_tasks(api: Api) -> list[dict]:
    found = await api.gql(
        "{ tasks(status: OPEN, first: 50) { edges { node { kind title assignee details } } } }",
        as_="warehouse",
    )
    return [
        e["node"] for e in found["data"]["tasks"]["edges"] if e["node"]["kind"] == "RETURN_OVERDUE"
    ]


async def _job(api: Api, now: dt.datetime) -> None:
    from api.worker import scheduled_jobs
    from domain.jobs.scheduler import run_due

    runtime = api.app.state.runtime
    [job] = [j for j in scheduled_jobs(runtime) if j.name == "stock.expire-reservations"]
    clock, runtime.clock = runtime.clock, lambda: now
    try:
        await run_due(sessions=runtime.sessions, jobs=[job], now=now)
    finally:
        runtime.clock = clock


async def test_an_inspected_parcel_unregistered_after_two_hours_raises_one_task(
    any_api: Api,
) -> None:
    api = any_api
    late, prompt = await _shipped(api, 0), await _shipped(api, 1)
    inspected = utcnow().replace(microsecond=0) - dt.timedelta(minutes=30)
    for order in (late, prompt):
        recorded = await api.gql(
            INSPECT, {"o": order["id"], "at": inspected.isoformat()}, as_="warehouse"
        )
        assert recorded["data"]["recordReturnInspection"]["registered"] is False, recorded
    # One of the two is registered in time; its clock stops.
    on_time = await api.gql(
        REGISTER, {"i": _input(prompt, inspected, [(0, 1, "RESTOCK")])}, as_="warehouse"
    )
    assert on_time["data"]["registerReturn"]["slaBreached"] is False

    await _job(api, inspected + dt.timedelta(hours=1, minutes=59))
    before = await _overdue_tasks(api)
    await _job(api, inspected + dt.timedelta(hours=2, minutes=1))
    await _job(api, inspected + dt.timedelta(hours=2, minutes=5))
    after = await _overdue_tasks(api)

    assert before == []
    [task] = after
    assert task["assignee"] == "warehouse"
    assert task["details"]["number"] == late["number"]
    again = await api.gql(
        INSPECT, {"o": prompt["id"], "at": inspected.isoformat()}, as_="warehouse"
    )
    assert again["data"]["recordReturnInspection"]["registered"] is False  # a new parcel
