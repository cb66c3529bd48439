"""Moving orders through their lifecycle."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import Api, errors_of, nothing_returned

MOVE = """mutation($id: ID!, $to: OrderStatus!, $note: String, $v: Int) {
  transitionOrder(id: $id, to: $to, note: $note, expectedVersion: $v) {
    status version statusHistory { from to actor note at }
  }
}"""
STATE = "query($id: ID!) { order(id: $id) { status version statusHistory { to } } }"


async def _order_in(api: Api, status: str) -> dict:
    result = await api.gql(
        "query($s: [OrderStatus!]) { orders(first: 1, filter: {status: $s}) "
        "{ edges { node { id version } } } }",
        {"s": [status]},
        as_="ops",
    )
    return result["data"]["orders"]["edges"][0]["node"]


async def test_paid_order_moves_to_picking_and_history_names_the_actor(any_api: Api) -> None:
    order = await _order_in(any_api, "PAID")

    result = await any_api.gql(
        MOVE, {"id": order["id"], "to": "PICKING", "note": "拣货开始"}, as_="warehouse"
    )

    moved = result["data"]["transitionOrder"]
    assert moved["status"] == "PICKING"
    assert moved["version"] == order["version"] + 1
    last = moved["statusHistory"][-1]
    assert (last["from"], last["to"], last["actor"], last["note"]) == (
        "PAID",
        "PICKING",
        "demo-warehouse",
        "拣货开始",
    )


@pytest.mark.parametrize(
    ("start", "to"),
    [
        ("PAID", "SHIPPED"),
        ("SHIPPED", "CANCELLED"),
        ("COMPLETED", "PAID"),
        ("CANCELLED", "PAID"),
        ("PICKING", "PICKING"),
    ],
)
async def test_moves_outside_the_lifecycle_are_invalid_and_change_nothing(
    api: Api, start: str, to: str
) -> None:
    order = await _order_in(api, start)

    result = await api.gql(MOVE, {"id": order["id"], "to": to}, as_="ops")
    after = await api.gql(STATE, {"id": order["id"]}, as_="ops")

    assert errors_of(result) == [("INVALID_TRANSITION", None)]
    assert after["data"]["order"]["status"] == start
    assert after["data"]["order"]["version"] == order["version"]


@pytest.mark.parametrize("start", ["PENDING_PAYMENT", "PAID", "PICKING"])
async def test_an_order_can_be_cancelled_until_it_ships(api: Api, start: str) -> None:
    order = await _order_in(api, start)

    result = await api.gql(MOVE, {"id": order["id"], "to": "CANCELLED"}, as_="ops")

    assert result["data"]["transitionOrder"]["status"] == "CANCELLED"


async def test_a_stale_expected_version_is_a_conflict_and_changes_nothing(api: Api) -> None:
    order = await _order_in(api, "PAID")

    result = await api.gql(
        MOVE, {"id": order["id"], "to": "PICKING", "v": order["version"] - 1}, as_="ops"
    )
    after = await api.gql(STATE, {"id": order["id"]}, as_="ops")

    assert errors_of(result) == [("CONFLICT", None)]
    assert after["data"]["order"]["status"] == "PAID"


async def test_roles_without_order_transition_are_forbidden(api: Api) -> None:
    order = await _order_in(api, "PAID")

    result = await api.gql(MOVE, {"id": order["id"], "to": "PICKING"}, as_="cs")
    after = await api.gql(STATE, {"id": order["id"]}, as_="ops")

    assert errors_of(result) == [("FORBIDDEN", None)]
    assert after["data"]["order"]["status"] == "PAID"


async def test_unknown_order_is_not_found(api: Api) -> None:
    result = await api.gql(MOVE, {"id": "987654", "to": "PAID"}, as_="ops")

    assert errors_of(result) == [("NOT_FOUND", None)]


@pytest.mark.postgres
async def test_two_concurrent_moves_of_one_order_exactly_one_wins(pg_api: Api) -> None:
    order = await _order_in(pg_api, "PAID")
    before = await pg_api.gql(STATE, {"id": order["id"]}, as_="ops")
    await pg_api.token("warehouse")

    results = await asyncio.gather(
        pg_api.gql(MOVE, {"id": order["id"], "to": "PICKING"}, as_="ops"),
        pg_api.gql(MOVE, {"id": order["id"], "to": "PICKING"}, as_="warehouse"),
    )
    after = await pg_api.gql(STATE, {"id": order["id"]}, as_="ops")

    winners = [r for r in results if not nothing_returned(r)]
    losers = [errors_of(r) for r in results if nothing_returned(r)]
    assert len(winners) == 1
    assert losers in ([[("CONFLICT", None)]], [[("INVALID_TRANSITION", None)]])
    assert after["data"]["order"]["version"] == order["version"] + 1
    history = after["data"]["order"]["statusHistory"]
    assert len(history) == len(before["data"]["order"]["statusHistory"]) + 1
