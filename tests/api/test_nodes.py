"""Global object identification: opaque global IDs, `node(id:)`, and the old integer ids for
one deprecation cycle. `node` goes through the same guard as each type's own query."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.conftest import Api, db_id, errors_of

NODE = "query($id: ID!) { node(id: $id) { __typename id ...F } }"


async def _one(api: Api, query: str, path: list[str], as_: str = "ops") -> dict[str, Any]:
    result = await api.gql(query, as_=as_)
    assert "errors" not in result, result
    value: Any = result["data"]
    for key in path:
        value = value[key]
    return value


async def _samples(api: Api) -> dict[str, tuple[str, str, str]]:
    """{type: (global id, the fragment to read it with, the field and value to compare)}."""
    order = await _one(
        api,
        "{ orders(first: 1, filter: {status: [PAID]}) { edges { node { id number "
        "lines { id sku } customer { id createdAt } } } } }",
        ["orders", "edges", 0, "node"],
    )
    stock = await _one(
        api,
        "{ stockItems(first: 1) { edges { node { id sku } } } }",
        ["stockItems", "edges", 0, "node"],
    )
    refund = await api.gql(
        'mutation($o: ID!) { requestRefund(orderId: $o, amount: "1.00", reason: "r") { id } }',
        {"o": order["id"]},
        as_="cs",
    )
    export = await api.gql(
        'mutation { requestExport(input: {entity: ORDERS, fields: ["number"], reason: "r"}) '
        "{ id } }",
        as_="sales",
    )
    return {
        "Order": (order["id"], "number", order["number"]),
        "OrderLine": (order["lines"][0]["id"], "sku", order["lines"][0]["sku"]),
        "Customer": (order["customer"]["id"], "createdAt", order["customer"]["createdAt"]),
        "StockItem": (stock["id"], "sku", stock["sku"]),
        "ApprovalRequest": (refund["data"]["requestRefund"]["id"], "kind", "REFUND"),
        "ExportRequest": (export["data"]["requestExport"]["id"], "entity", "ORDERS"),
    }


async def test_every_node_type_comes_back_by_its_global_id(api: Api) -> None:
    samples = await _samples(api)
    readers = {"ApprovalRequest": "approver", "ExportRequest": "approver", "Customer": "cs"}

    for type_name, (gid, field, value) in samples.items():
        query = NODE.replace("...F", f"... on {type_name} {{ {field} }}")
        result = await api.gql(query, {"id": gid}, as_=readers.get(type_name, "ops"))

        assert "errors" not in result, (type_name, result)
        assert result["data"]["node"] == {"__typename": type_name, "id": gid, field: value}
        # Opaque, and distinct from the bare row number it replaces.
        assert not gid.isdigit()
        assert base64.b64decode(gid).decode().startswith(f"{type_name}:")


async def test_ids_are_non_null_on_every_node_type(api: Api) -> None:
    result = await api.gql(
        """{ __type(name: "Node") { kind possibleTypes { name fields { name type { kind
             ofType { name } } } } } }""",
        as_="ops",
    )

    node = result["data"]["__type"]
    assert node["kind"] == "INTERFACE"
    types = {t["name"]: t for t in node["possibleTypes"]}
    assert set(types) == {
        "Order",
        "OrderLine",
        "Customer",
        "StockItem",
        "ApprovalRequest",
        "ExportRequest",
    }
    for name, t in types.items():
        [id_field] = [f for f in t["fields"] if f["name"] == "id"]
        assert id_field["type"] == {"kind": "NON_NULL", "ofType": {"name": "ID"}}, name


async def test_old_integer_ids_still_work_for_one_deprecation_cycle(api: Api) -> None:
    order = await _one(
        api, "{ orders(first: 1) { edges { node { id number } } } }", ["orders", "edges", 0, "node"]
    )

    by_number = await api.gql(
        "query($id: ID!) { order(id: $id) { id number } }",
        {"id": str(db_id(order["id"]))},
        as_="ops",
    )

    assert by_number["data"]["order"] == order


@pytest.mark.parametrize(
    "given",
    [
        "not an id",
        base64.b64encode(b"Order:0").decode(),
        base64.b64encode(b"Order:2147483648").decode(),
        base64.b64encode(b"Order:\xd9\xa1").decode(),  # Arabic-Indic digit one
        base64.b64encode(b"Nope:1").decode(),
        base64.b64encode(b"SigningKey:1").decode(),
        "T3JkZXI6MQ==\n",
        "x" * 5000,
    ],
)
async def test_a_string_that_is_not_a_global_id_is_bad_input(api: Api, given: str) -> None:
    result = await api.gql("query($id: ID!) { node(id: $id) { id } }", {"id": given}, as_="ops")

    assert errors_of(result)[0][0] == "BAD_USER_INPUT"
    assert result["data"] is None or result["data"]["node"] is None


async def test_another_types_id_is_bad_input_where_an_order_is_expected(api: Api) -> None:
    samples = await _samples(api)
    customer_id = samples["Customer"][0]

    result = await api.gql(
        "mutation($id: ID!) { transitionOrder(id: $id, to: PICKING) { id } }",
        {"id": customer_id},
        as_="ops",
    )

    assert errors_of(result) == [("BAD_USER_INPUT", None)]


async def test_node_keeps_row_scope(api: Api) -> None:
    outside = await _one(
        api,
        "{ orders(first: 1, filter: {channel: [PINDUODUO]}) { edges { node { id } } } }",
        ["orders", "edges", 0, "node"],
    )
    missing = base64.b64encode(b"Order:999999").decode()

    hidden = await api.gql(
        NODE.replace("...F", "... on Order { number }"), {"id": outside["id"]}, as_="sales"
    )
    absent = await api.gql(
        NODE.replace("...F", "... on Order { number }"), {"id": missing}, as_="sales"
    )

    assert errors_of(hidden) == errors_of(absent) == [("NOT_FOUND", None)]


async def test_node_keeps_field_policy_and_points_at_the_node(api: Api) -> None:
    order = await _one(
        api, "{ orders(first: 1) { edges { node { id } } } }", ["orders", "edges", 0, "node"]
    )

    result = await api.gql(
        NODE.replace("...F", "... on Order { number total }"),
        {"id": order["id"]},
        as_="warehouse",
    )

    assert result["data"]["node"]["total"] is None
    assert result["data"]["node"]["number"]
    [error] = result["errors"]
    assert error["extensions"] == {"code": "FORBIDDEN", "field": "Order.total"}
    assert error["path"] == ["node", "total"]


async def test_a_type_the_caller_may_not_read_is_forbidden_through_node(api: Api) -> None:
    samples = await _samples(api)

    result = await api.gql(
        NODE.replace("...F", ""), {"id": samples["ExportRequest"][0]}, as_="warehouse"
    )

    assert errors_of(result)[0][0] == "FORBIDDEN"
    assert result["data"]["node"] is None


async def test_the_audit_log_can_be_searched_by_global_id(api: Api) -> None:
    order = await _one(
        api,
        "{ orders(first: 1, filter: {status: [PAID]}) { edges { node { id } } } }",
        ["orders", "edges", 0, "node"],
    )
    await api.gql(
        "mutation($id: ID!) { transitionOrder(id: $id, to: PICKING) { id } }",
        {"id": order["id"]},
        as_="warehouse",
    )

    result = await api.gql(
        'query($t: String) { auditEvents(filter: {targetId: $t, action: "order.transition"}) '
        "{ edges { node { targetType targetId } } } }",
        {"t": order["id"]},
        as_="compliance",
    )

    assert [e["node"] for e in result["data"]["auditEvents"]["edges"]] == [
        {"targetType": "Order", "targetId": str(db_id(order["id"]))}
    ]
