"""Changing an order's shipping address: before it ships, with a reason, audited with both
addresses, published, and counted in the quarterly access report — where an agent sending
many customers' orders to one address (the seed's incident) is a finding."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from domain.events.models import OutboxEvent
from tests.api.test_access_report import REPORT, current_quarter
from tests.api.test_approvals import login_as_new_user
from tests.api.test_audit import events
from tests.conftest import Api, db_id, errors_of, outbox_head
from tests.policy_matrix import OPERATIONS, ROLES

CHANGE = """mutation($id: ID!, $a: AddressInput!, $r: String!) {
  changeShippingAddress(orderId: $id, address: $a, reason: $r) {
    id status version
    shippingAddress { recipient phone province city district street postalCode } } }"""
ORDER = """query($id: ID!) { order(id: $id) { version status
  shippingAddress { recipient phone province city district street postalCode } } }"""
NEW = {
    "recipient": "李四",
    "phone": "13911112222",
    "province": "浙江省",
    "city": "杭州市",
    "district": "西湖区",
    "street": "文三路 90 号",
    "postalCode": "310012",
}


async def orders_in(api: Api, status: str, n: int = 1) -> list[dict[str, Any]]:
    """`n` orders in `status`, each of a different customer."""
    result = await api.gql(
        """query($s: [OrderStatus!]) { orders(first: 100, filter: {status: $s}) {
          edges { node { id version customer { id } } } } }""",
        {"s": [status]},
        as_="ops",
    )
    found: dict[str, dict[str, Any]] = {}
    for edge in result["data"]["orders"]["edges"]:
        node = edge["node"]
        found.setdefault(node["customer"]["id"], node)
    assert len(found) >= n, f"the demo has {len(found)} customers with {status} orders"
    return list(found.values())[:n]


async def test_cs_changes_the_address_before_shipping_with_a_reason_audited_and_published(
    api: Api,
) -> None:
    [order] = await orders_in(api, "PAID")
    before = (await api.gql(ORDER, {"id": order["id"]}, as_="cs"))["data"]["order"]
    head = await outbox_head(api)

    result = await api.gql(CHANGE, {"id": order["id"], "a": NEW, "r": "客户来电改地址"}, as_="cs")

    assert "errors" not in result, result
    changed = result["data"]["changeShippingAddress"]
    assert changed["shippingAddress"] == NEW
    assert changed["version"] == order["version"] + 1
    assert changed["status"] == "PAID"
    [audited] = await events(api, action="order.change_address")
    assert audited["username"] == "demo-cs"
    assert audited["outcome"] == "success"
    assert audited["details"]["reason"] == "客户来电改地址"
    assert audited["details"]["before"]["shippingAddress"] == before["shippingAddress"]
    assert audited["details"]["after"]["shippingAddress"] == NEW
    assert audited["details"]["customerId"] == db_id(order["customer"]["id"])
    async with api.app.state.runtime.sessions() as session:
        published = (
            await session.execute(
                select(OutboxEvent.type, OutboxEvent.aggregate_id).where(OutboxEvent.seq > head)
            )
        ).all()
    assert published == [("ORDER_ADDRESS_CHANGED", str(db_id(order["id"])))]
    # Compliance reads the log with the addresses' personal parts masked, as in any query.
    logged = await api.gql(
        """query($f: AuditEventFilter) { auditEvents(filter: $f, first: 5) {
             edges { node { details } } } }""",
        {"f": {"action": "order.change_address"}},
        as_="compliance",
    )
    [edge] = logged["data"]["auditEvents"]["edges"]
    shown = edge["node"]["details"]["after"]["shippingAddress"]
    assert shown["recipient"] == "李*"
    assert shown["phone"] == "139****2222"
    assert shown["street"] == "文三****"
    assert shown["city"] == "杭州市"


@pytest.mark.parametrize("status", ["SHIPPED", "COMPLETED", "CANCELLED"])
async def test_once_shipped_or_closed_the_address_stays(api: Api, status: str) -> None:
    [order] = await orders_in(api, status)
    before = (await api.gql(ORDER, {"id": order["id"]}, as_="cs"))["data"]["order"]

    result = await api.gql(CHANGE, {"id": order["id"], "a": NEW, "r": "客户要求"}, as_="cs")

    assert errors_of(result) == [("CONFLICT", None)]
    assert (await api.gql(ORDER, {"id": order["id"]}, as_="cs"))["data"]["order"] == before


@pytest.mark.parametrize(
    ("reason", "address"),
    [
        ("", NEW),
        ("   ", NEW),
        ("x" * 501, NEW),
        ("ok", {**NEW, "street": "文三路\u0000 90 号"}),
        ("ok", {**NEW, "recipient": ""}),
        ("ok", {**NEW, "city": "杭" * 51}),
        ("ok\u202e", NEW),
    ],
)
async def test_a_missing_reason_or_a_bad_address_is_bad_input_and_changes_nothing(
    api: Api, reason: str, address: dict[str, str]
) -> None:
    [order] = await orders_in(api, "PICKING")
    before = (await api.gql(ORDER, {"id": order["id"]}, as_="cs"))["data"]["order"]

    result = await api.gql(CHANGE, {"id": order["id"], "a": address, "r": reason}, as_="cs")

    assert errors_of(result) == [("BAD_USER_INPUT", None)]
    assert (await api.gql(ORDER, {"id": order["id"]}, as_="cs"))["data"]["order"] == before
    assert await events(api, action="order.change_address", outcome="success") == []


async def test_the_same_address_again_is_bad_input(api: Api) -> None:
    [order] = await orders_in(api, "PAID")
    first = await api.gql(CHANGE, {"id": order["id"], "a": NEW, "r": "改地址"}, as_="cs")
    assert "errors" not in first, first

    again = await api.gql(CHANGE, {"id": order["id"], "a": NEW, "r": "改地址"}, as_="cs")

    assert errors_of(again) == [("BAD_USER_INPUT", None)]


@pytest.mark.parametrize("role", ROLES)
async def test_who_may_change_a_shipping_address_follows_the_policy(api: Api, role: str) -> None:
    [order] = await orders_in(api, "PAID")

    result = await api.gql(CHANGE, {"id": order["id"], "a": NEW, "r": "客户要求"}, as_=role)

    if role in OPERATIONS["order:change_address"]:
        assert "errors" not in result, result
    else:
        # The operation is refused; a role that reads no order is also told which fields.
        assert errors_of(result)[0] == ("FORBIDDEN", None)
        assert {code for code, _ in errors_of(result)} == {"FORBIDDEN"}
        assert result["data"]["changeShippingAddress"] is None
        changed = await events(api, action="order.change_address", outcome="success")
        assert changed == []


async def test_an_agent_sending_many_customers_orders_to_one_address_is_caught_by_the_report(
    api: Api,
) -> None:
    """The seed's incident: one agent redirects orders of several customers to a relative's
    address, written a little differently each time; a colleague makes one honest change."""
    rogue = await login_as_new_user(api, "cs.rogue", ["cs"])
    honest = await login_as_new_user(api, "cs.honest", ["cs"])
    orders = await orders_in(api, "PAID", 5)
    relative = [
        NEW,
        {**NEW, "province": "浙江", "recipient": "李 四"},  # the province written short
        {**NEW, "street": "文三路９０号", "phone": "+86 139 1111 2222"},  # full-width digits
        {**NEW, "city": "杭州", "district": "西湖区", "street": " 文三路90号 "},
    ]
    for order, address in zip(orders, relative, strict=False):
        result = await api.gql(
            CHANGE,
            {"id": order["id"], "a": address, "r": "客户来电"},
            authorization=f"Bearer {rogue}",
        )
        assert "errors" not in result, result
    elsewhere = {**NEW, "street": "天目山路 1 号"}
    result = await api.gql(
        CHANGE,
        {"id": orders[4]["id"], "a": elsewhere, "r": "客户搬家"},
        authorization=f"Bearer {honest}",
    )
    assert "errors" not in result, result

    pulled = await api.gql(REPORT, {"q": current_quarter(), "f": "JSON"}, as_="compliance")
    report = json.loads(pulled["data"]["accessReport"]["content"])

    activity = {row["account"]: row for row in report["activity"]}
    assert activity["cs.rogue"]["addressChanges"] == 4
    assert activity["cs.honest"]["addressChanges"] == 1
    assert activity["demo-cs"]["addressChanges"] == 0
    assert [(r["account"], r["customers"], r["orders"]) for r in report["addressReuse"]] == [
        ("cs.rogue", 4, 4)
    ]
    flagged = [(a["account"], a["metric"]) for a in report["anomalies"]]
    assert ("cs.rogue", "addressChanges") in flagged
    assert ("cs.honest", "addressChanges") not in flagged
    assert report["summary"]["addressChanges"] == 5
    # The address itself stays out of the report: only a digest names it.
    assert "文三路" not in pulled["data"]["accessReport"]["content"]
