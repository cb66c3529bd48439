"""Picking lists: created once when an order becomes PAID (ingested or moved), read by the
warehouse and operations roles only."""

from __future__ import annotations

import pytest

from tests.api.test_intake import channel_order, ingest
from tests.conftest import Api, errors_of
from tests.policy_matrix import OPERATIONS, ROLES

LISTS = """query($w: String, $s: PickingListStatus, $after: String) {
  pickingLists(warehouse: $w, status: $s, first: 100, after: $after) {
  totalCount pageInfo { hasNextPage endCursor } edges { node { id number warehouse status
    createdAt order { id number status } lines { sku productName quantity } } } } }"""


async def _lists(api: Api, variables: dict) -> list[dict]:
    """Every list the warehouse sees, page by page, oldest first (the demo data has many)."""
    found: list[dict] = []
    after = None
    while True:
        page = (await api.gql(LISTS, {**variables, "after": after}, as_="warehouse"))["data"][
            "pickingLists"
        ]
        found += [e["node"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return found
        after = page["pageInfo"]["endCursor"]


async def test_an_ingested_paid_order_has_one_open_picking_list_with_its_lines(
    any_api: Api,
) -> None:
    api = any_api
    [created] = await ingest(api, [channel_order("TB-P-1")])
    await ingest(api, [channel_order("TB-P-1")])  # replayed: no second list

    listed = await _lists(api, {"s": "OPEN"})
    mine = [node for node in listed if node["order"]["id"] == created["order"]["id"]]
    [picking] = mine
    one = await api.gql(
        "query($id: ID!) { pickingList(id: $id) { id number lines { sku quantity } } }",
        {"id": picking["id"]},
        as_="ops",
    )

    assert picking["status"] == "OPEN"
    assert picking["warehouse"] in ("SH-01", "GZ-01")
    assert picking["number"] == f"PK-{created['order']['number']}"
    assert picking["lines"] == [
        {"sku": "SKU-0001", "productName": picking["lines"][0]["productName"], "quantity": 2},
        {"sku": "SKU-0002", "productName": picking["lines"][1]["productName"], "quantity": 1},
    ]
    assert one["data"]["pickingList"]["lines"] == [
        {"sku": "SKU-0001", "quantity": 2},
        {"sku": "SKU-0002", "quantity": 1},
    ]


async def test_moving_an_order_to_paid_opens_its_picking_list(api: Api) -> None:
    [created] = await ingest(api, [channel_order("TB-P-2", status="PENDING_PAYMENT", paidAt=None)])
    before = await api.gql(LISTS, {}, as_="warehouse")
    moved = await api.gql(
        "mutation($id: ID!) { transitionOrder(id: $id, to: PAID) { status } }",
        {"id": created["order"]["id"]},
        as_="ops",
    )
    after = await api.gql(LISTS, {}, as_="warehouse")
    everything = await _lists(api, {})

    assert moved["data"]["transitionOrder"]["status"] == "PAID"
    ids = [node["order"]["id"] for node in everything]
    assert created["order"]["id"] in ids
    assert after["data"]["pickingLists"]["totalCount"] == (
        before["data"]["pickingLists"]["totalCount"] + 1
    )


async def test_a_buyer_cancelling_a_paid_order_cancels_its_open_picking_list(api: Api) -> None:
    [created] = await ingest(api, [channel_order("TB-P-4")])
    [cancelled] = await ingest(api, [channel_order("TB-P-4", status="CANCELLED")])
    listed = await _lists(api, {"s": "CANCELLED"})

    assert cancelled["outcome"] == "UPDATED"
    assert created["order"]["id"] in [node["order"]["id"] for node in listed]
    assert [n["status"] for n in listed if n["order"]["id"] == created["order"]["id"]] == [
        "CANCELLED"
    ]


@pytest.mark.parametrize("role", ROLES)
async def test_who_may_read_picking_lists_follows_the_policy(api: Api, role: str) -> None:
    await ingest(api, [channel_order("TB-P-3")])
    result = await api.gql("{ pickingLists { totalCount } }", as_=role)

    if role in OPERATIONS["picking:read"]:
        assert result["data"]["pickingLists"]["totalCount"] >= 1
    else:
        assert errors_of(result) == [("FORBIDDEN", None)]


async def test_a_bad_picking_list_id_is_bad_user_input(api: Api) -> None:
    result = await api.gql('{ pickingList(id: "nope\\u0000") { id } }', as_="warehouse")
    assert errors_of(result) == [("BAD_USER_INPUT", None)]
