"""Merging duplicate customers: previewed, audited, old ids resolving to the survivor, and
undone exactly — on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.test_audit import events
from tests.api.test_customer_master import CUSTOMER, UPDATE, buyer_order, customer_of
from tests.api.test_intake import ingest
from tests.conftest import Api, db_id, errors_of
from tests.policy_matrix import OPERATIONS, ROLES

PREVIEW = """query($s: ID!, $m: ID!) { customerMergePreview(survivorId: $s, mergedId: $m) {
  survivor { id } merged { id } name phone email addresses { street } orderCount totalSpent
  channels movingOrders movingAddresses } }"""
MERGE = """mutation($s: ID!, $m: ID!, $r: String!) {
  mergeCustomers(survivorId: $s, mergedId: $m, reason: $r) {
    id at reason reversedAt survivor { id } merged { id mergedInto } } }"""
UNMERGE = """mutation($id: ID!) { unmergeCustomers(mergeId: $id) {
  id reversedAt survivor { id } merged { id mergedInto } } }"""
ORDERS = """{ orders(first: 100, filter: {}) { totalCount edges { node { id total
  customer { id } } } } }"""


async def two_customers(api: Api) -> tuple[str, str]:
    """The same person twice: two orders from one phone, one (on JD, with an email and another
    address) from another phone."""
    a_results = await ingest(
        api,
        [
            buyer_order("TB-MG-1", "陈小红", "13810002000"),
            buyer_order("TB-MG-2", "陈小红", "13810002000"),
        ],
    )
    b_results = await ingest(
        api,
        [
            buyer_order(
                "JD-MG-3", "陈小红", "13910003000", "Chen.XH@example.com", street="张江路 88 号"
            )
        ],
        channel="JD",
    )
    [a] = set(await customer_of(api, a_results))
    [b] = await customer_of(api, b_results)
    return a, b


async def view(api: Api, customer_id: str) -> dict[str, Any]:
    shown = (await api.gql(CUSTOMER, {"id": customer_id}, as_="cs"))["data"]["customer"]
    return {k: v for k, v in shown.items() if k not in {"version", "contactHistory"}}


async def orders_by_customer(api: Api) -> dict[str, str]:
    page = (await api.gql(ORDERS, as_="cs"))["data"]["orders"]
    return {e["node"]["id"]: e["node"]["customer"]["id"] for e in page["edges"]}


async def test_merge_then_unmerge_round_trip(any_api: Api) -> None:
    api = any_api
    a, b = await two_customers(api)
    before_a, before_b = await view(api, a), await view(api, b)
    links_before = await orders_by_customer(api)

    preview = await api.gql(PREVIEW, {"s": a, "m": b}, as_="ops")
    merged = await api.gql(MERGE, {"s": a, "m": b, "r": "同一人，两个手机号"}, as_="ops")  # noqa: RUF001

    assert "errors" not in preview, preview
    shown = preview["data"]["customerMergePreview"]
    assert shown["survivor"]["id"] == a
    assert shown["phone"] == "138****2000"  # ops reads contacts masked
    assert shown["email"] == "c***@example.com"  # the survivor had none: it takes b's
    assert shown["orderCount"] == 3
    assert shown["totalSpent"] == "728.40"
    assert shown["channels"] == ["JD", "TAOBAO"]
    assert (shown["movingOrders"], shown["movingAddresses"]) == (1, 1)
    assert "errors" not in merged, merged
    record = merged["data"]["mergeCustomers"]
    assert record["survivor"]["id"] == a
    assert record["merged"]["mergedInto"] == a
    assert record["reversedAt"] is None
    # The survivor holds what the preview said; the old id answers with the survivor.
    after = await view(api, a)
    assert after["orderCount"] == 3
    assert after["totalSpent"] == "728.40"
    assert after["email"] == "chen.xh@example.com"
    assert [x["street"] for x in after["addresses"]] == ["世纪大道 100 号", "张江路 88 号"]
    assert (await view(api, b))["id"] == a
    links_merged = await orders_by_customer(api)
    assert set(links_merged) == set(links_before)  # no order lost or added
    assert [o for o, c in links_merged.items() if c == a] == [
        o for o, c in links_before.items() if c in {a, b}
    ]
    [audited] = await events(api, action="customer.merge")
    assert audited["details"]["mergedId"] == db_id(b)
    assert audited["details"]["reason"] == "同一人，两个手机号"  # noqa: RUF001

    undone = await api.gql(UNMERGE, {"id": record["id"]}, as_="ops")

    assert "errors" not in undone, undone
    assert undone["data"]["unmergeCustomers"]["reversedAt"] is not None
    assert undone["data"]["unmergeCustomers"]["merged"]["mergedInto"] is None
    assert await view(api, a) == before_a
    assert await view(api, b) == before_b
    assert await orders_by_customer(api) == links_before
    again = await api.gql(UNMERGE, {"id": record["id"]}, as_="ops")
    assert errors_of(again) == [("CONFLICT", None)]


async def test_a_merged_record_cannot_be_merged_or_edited_and_a_later_edit_blocks_undo(
    api: Api,
) -> None:
    a, b = await two_customers(api)
    merged = await api.gql(MERGE, {"s": a, "m": b, "r": "重复"}, as_="ops")
    merge_id = merged["data"]["mergeCustomers"]["id"]

    into_tombstone = await api.gql(MERGE, {"s": b, "m": a, "r": "x"}, as_="ops")
    edit_tombstone = await api.gql(UPDATE, {"id": b, "in": {"name": "x"}, "v": 1}, as_="cs")
    version = (await api.gql(CUSTOMER, {"id": a}, as_="cs"))["data"]["customer"]["version"]
    edited = await api.gql(UPDATE, {"id": a, "in": {"name": "陈晓红"}, "v": version}, as_="cs")
    undo = await api.gql(UNMERGE, {"id": merge_id}, as_="ops")

    assert errors_of(into_tombstone) == [("CONFLICT", None)]
    assert errors_of(edit_tombstone) == [("CONFLICT", None)]
    assert "errors" not in edited, edited
    assert errors_of(undo) == [("CONFLICT", None)]  # it would lose the new name


@pytest.mark.parametrize(
    ("survivor", "merged", "reason"), [("a", "a", "x"), ("a", "b", ""), ("a", "b", "\u0000")]
)
async def test_bad_merges_are_bad_input_and_change_nothing(
    api: Api, survivor: str, merged: str, reason: str
) -> None:
    a, b = await two_customers(api)
    ids = {"a": a, "b": b}
    before = await view(api, b)

    result = await api.gql(MERGE, {"s": ids[survivor], "m": ids[merged], "r": reason}, as_="ops")

    assert errors_of(result) == [("BAD_USER_INPUT", None)]
    assert await view(api, b) == before


@pytest.mark.parametrize("role", ROLES)
async def test_who_may_merge_follows_the_policy(api: Api, role: str) -> None:
    a, b = await two_customers(api)

    preview = await api.gql(PREVIEW, {"s": a, "m": b}, as_=role)
    merged = await api.gql(MERGE, {"s": a, "m": b, "r": "重复"}, as_=role)

    if role in OPERATIONS["customer:merge"]:
        assert "errors" not in preview, preview
        assert "errors" not in merged, merged
    else:
        assert errors_of(preview)[0] == ("FORBIDDEN", None)
        assert errors_of(merged)[0] == ("FORBIDDEN", None)
        assert merged["data"]["mergeCustomers"] is None


async def test_a_merged_away_record_leaves_the_completeness_figure_and_comes_back_on_undo(
    api: Api,
) -> None:
    """Issue #28: a merged customer counted in completeness survived unnoticed. Merging two
    records of one person leaves one customer to count; undoing the merge, two again."""
    from domain.db import utcnow

    # The app's clock stands still at noon business time, so "today" cannot turn over midway.
    runtime = api.app.state.runtime
    zone = runtime.settings.timezone
    noon = utcnow().astimezone(zone).replace(hour=12, minute=0, second=0, microsecond=0)
    runtime.clock = lambda: noon
    today = noon.date().isoformat()
    query = """query($d: Date!) { kpis(from: $d, to: $d) { name numerator denominator } }"""

    async def figure() -> tuple[int, int]:
        """The KPI's figure, checked against the quarterly cleanse report's (the same count)."""
        from domain.customers.cleanse import completeness

        found = await api.gql(query, {"d": today}, as_="ops")
        [value] = [v for v in found["data"]["kpis"] if v["name"] == "CUSTOMER_COMPLETENESS"]
        async with api.app.state.runtime.sessions() as session:
            report = await completeness(session)
        assert (report.complete, report.total) == (value["numerator"], value["denominator"])
        return value["numerator"], value["denominator"]

    a, b = await two_customers(api)
    before = await figure()
    merged = await api.gql(MERGE, {"s": a, "m": b, "r": "the same person"}, as_="ops")
    after_merge = await figure()
    undone = await api.gql(UNMERGE, {"id": merged["data"]["mergeCustomers"]["id"]}, as_="ops")
    after_undo = await figure()

    assert "errors" not in merged, merged
    assert "errors" not in undone, undone
    assert after_merge[1] == before[1] - 1
    assert after_undo == before
