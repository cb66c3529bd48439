"""Field-level access through real GraphQL requests: the matrix, and attempts to get around it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from domain.access import ROLES
from tests import policy_matrix
from tests.conftest import Api, _api_for, errors_of, nothing_returned, settings_for
from tests.support import ALL_FIELDS_QUERY, write_open_policy

EXPECTED = policy_matrix.expected()
# Values that depend on the caller's row scope, so a scoped role legitimately differs.
SCOPE_DEPENDENT = {
    "Customer.orders",
    "Customer.orderCount",
    "Customer.totalSpent",
    "Customer.totalSpentCurrency",
    "Customer.lastOrderAt",
    "Customer.channels",
    "Customer.returns",
}


def _walk(mine: Any, truth: Any, seen: dict[str, list[tuple[Any, Any]]]) -> None:
    """Pair each governed field's value as the role saw it with its true value."""
    if isinstance(truth, list) and isinstance(mine, list):
        for a, b in zip(mine, truth, strict=False):
            _walk(a, b, seen)
    elif isinstance(truth, dict) and isinstance(mine, dict):
        type_name = truth.get("__typename")
        for key, true_value in truth.items():
            if key == "__typename":
                continue
            if type_name:
                seen.setdefault(f"{type_name}.{key}", []).append((mine.get(key), true_value))
            _walk(mine.get(key), true_value, seen)


@pytest.fixture(scope="module")
def matrix_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    return tmp_path_factory.mktemp("matrix")


@pytest.fixture(scope="module")
async def observed(
    sqlite_template: Path, matrix_dirs: Path
) -> AsyncIterator[dict[str, tuple[dict[str, list[tuple[Any, Any]]], set[str]]]]:
    """For each role: governed values seen (paired with the truth) and FORBIDDEN fields."""
    import shutil

    db = matrix_dirs / "matrix.db"
    shutil.copyfile(sqlite_template, db)
    url = f"sqlite+aiosqlite:///{db}"
    open_policy = write_open_policy(matrix_dirs / "open-policy")
    variables = {"first": 5}

    async for truth_api in _api_for(
        settings_for(url, matrix_dirs, ORDERGATE_POLICY_DIR=str(open_policy))
    ):
        truth = await truth_api.gql(ALL_FIELDS_QUERY, variables, as_="cs")
    assert "errors" not in truth, truth["errors"][:3]

    results = {}
    async for api in _api_for(settings_for(url, matrix_dirs)):
        await _make_approval_requests(api)
        await _make_export_requests(api)
        # Approvers see every request of both kinds in full under the real policy: that is the
        # truth these lists are compared with, paired by id (each role sees its own subset).
        truth_lists = {}
        for root, query in LISTS.items():
            listed = await api.gql(query, as_="approver")
            truth_lists[root] = {e["node"]["id"]: e["node"] for e in listed["data"][root]["edges"]}
        for role in ROLES:
            seen: dict[str, list[tuple[Any, Any]]] = {}
            response = await api.gql(ALL_FIELDS_QUERY, variables, as_=role)
            _walk(response.get("data") or {}, truth["data"], seen)
            responses = [response]
            for root, query in LISTS.items():
                listed = await api.gql(query, as_=role)
                responses.append(listed)
                for edge in ((listed.get("data") or {}).get(root) or {}).get("edges", []):
                    node = edge["node"]
                    truth_node = truth_lists[root].get(node["id"]) if node["id"] else None
                    for key, value in node.items():
                        if key != "__typename" and truth_node is not None:
                            coordinate = f"{truth_node['__typename']}.{key}"
                            seen.setdefault(coordinate, []).append((value, truth_node[key]))
            forbidden: set[str] = set()
            for result in responses:
                forbidden |= {f for code, f in errors_of(result) if code == "FORBIDDEN" and f}
                unexpected = [
                    e for e in result.get("errors", []) if e["extensions"]["code"] != "FORBIDDEN"
                ]
                assert not unexpected, (role, unexpected)
            results[role] = (seen, forbidden)
    return results


APPROVALS_QUERY = """{ approvalRequests(first: 50) { edges { node { __typename id kind status
    orderId orderNumber orderLineId amount currency requestedBy reason summary signingPayload
    createdAt expiresAt decidedAt decidedBy decisionReason keyFingerprint } } } }"""


EXPORTS_QUERY = """{ exportRequests(first: 50) { edges { node { __typename id entity filter
    fields reason status requestedBy expectedRows scopeDigest createdAt expiresAt approvedL1By
    approvedL1At approvedL2By approvedL2At rejectedBy rejectionReason rowCount sha256
    producedAt failureReason downloadUrl downloadExpiresAt downloadedAt } } } }"""
LISTS = {"approvalRequests": APPROVALS_QUERY, "exportRequests": EXPORTS_QUERY}


async def _make_export_requests(api: Api) -> None:
    ask = "mutation($i: ExportInput!) { requestExport(input: $i) { id } }"
    for role in ("sales", "ops", "finance"):
        made = await api.gql(
            ask, {"i": {"entity": "ORDERS", "fields": ["number"], "reason": "r"}}, as_=role
        )
        assert "errors" not in made, made


async def _make_approval_requests(api: Api) -> None:
    """One request by each role that may ask, so each of them has something to see."""
    order = await api.gql(
        "{ orders(first: 1, filter: {status: [PAID], channel: [TAOBAO]}) "
        "{ edges { node { id lines { id } } } } }",
        as_="ops",
    )
    node = order["data"]["orders"]["edges"][0]["node"]
    refund = 'mutation($o: ID!) { requestRefund(orderId: $o, amount: "1.00", reason: "r") { id } }'
    price = (
        'mutation($l: ID!) { requestPriceChange(orderLineId: $l, newUnitPrice: "1.00", '
        'reason: "r") { id } }'
    )
    for role in ("cs", "finance"):
        assert "errors" not in await api.gql(refund, {"o": node["id"]}, as_=role)
    unpaid = await api.gql(
        "{ orders(first: 1, filter: {status: [PENDING_PAYMENT], channel: [TAOBAO]}) "
        "{ edges { node { lines { id } } } } }",
        as_="ops",
    )
    line = unpaid["data"]["orders"]["edges"][0]["node"]["lines"][0]["id"]
    assert "errors" not in await api.gql(price, {"l": line}, as_="sales")


def contract_mask(coordinate: str, truth: str) -> str:
    """What a masked value looks like, written out from the contract, independently of the
    production masks: a phone keeps its first 3 and last 4 digits (`138****5678`), an email
    its first character and domain (`z***@example.com`), a name its family name (`张*`), a
    street its first two characters."""
    field = coordinate.split(".")[1]
    if field in ("phone", "customerPhone"):
        assert len(truth) == 11, "demo phones are mainland mobile numbers"
        return truth[:3] + "****" + truth[7:]
    if field == "email":
        local, domain = truth.split("@")
        return local[0] + "***@" + domain
    if field in ("name", "customerName", "recipient"):
        return {2: truth[0] + "*", 3: truth[0] + "**", 4: truth[0] + "***"}[len(truth)]
    if field == "street":
        return truth[:2] + "****"
    raise AssertionError(f"no mask in the contract for {coordinate}")


@pytest.mark.parametrize(("role", "coordinate"), sorted(EXPECTED))
async def test_role_sees_each_field_as_the_table_says(
    observed: dict[str, Any], role: str, coordinate: str
) -> None:
    seen, forbidden = observed[role]
    expected = EXPECTED[(role, coordinate)]
    pairs = seen.get(coordinate, [])

    if expected == "NONE":
        assert coordinate in forbidden
        assert all(mine is None for mine, _ in pairs)
        return
    assert coordinate not in forbidden
    assert pairs, f"{role} should have observed {coordinate}"
    for mine, truth in pairs:
        if coordinate in SCOPE_DEPENDENT or isinstance(truth, dict | list):
            assert (mine is None) == (truth is None)
        elif expected == "FULL":
            assert mine == truth
        elif truth is not None:
            assert mine == contract_mask(coordinate, truth)
            assert mine != truth


# ---- attempts to get around the policy, as customer service ----------------------------------

COST_QUERIES = {
    "alias": "{ orders(first: 3) { edges { node { price: total cost: grossMargin } } } }",
    "alias on line": "{ orders(first: 3) { edges { node { lines { c: costPrice } } } } }",
    "fragment": """{ orders(first: 3) { edges { node { ...F } } } }
        fragment F on Order { grossMargin lines { costPrice } }""",
    "inline fragment": "{ orders(first: 3) { edges { node { ... on Order { grossMargin } } } } }",
    "nested through customer": """{ customers(first: 5) { edges { node {
        orders(first: 3) { lines { costPrice } } } } } }""",
    "nested fragment spread": """{ customer(id: "1") { ...C } }
        fragment C on Customer { orders { ...O } }
        fragment O on Order { lines { ...L } }
        fragment L on OrderLine { costPrice }""",
    "typename beside": """{ orders(first: 3) { edges { node { __typename grossMargin
        lines { __typename costPrice } } } } }""",
    "single order": '{ order(id: "1") { paymentTransactionId } }',
    "stock": "{ stockItems(first: 3) { edges { node { unitCost } } } }",
    "named operation among others": """query A { viewer { username } }
        query B { orders(first: 2) { edges { node { grossMargin } } } }""",
}


@pytest.mark.parametrize("name", sorted(COST_QUERIES))
async def test_customer_service_cannot_reach_restricted_fields(api: Api, name: str) -> None:
    body: dict[str, Any] = {"query": COST_QUERIES[name]}
    if name == "named operation among others":
        body["operationName"] = "B"

    response = (await api.post(body, as_="cs")).json()

    text = str(response.get("data"))
    forbidden = {f for code, f in errors_of(response) if code == "FORBIDDEN"}
    assert forbidden, response
    assert forbidden <= {
        "Order.grossMargin",
        "OrderLine.costPrice",
        "Order.paymentTransactionId",
        "StockItem.unitCost",
    }
    for key in (
        "'cost': '",
        "'c': '",
        "'grossMargin': '",
        "'costPrice': '",
        "'unitCost': '",
        "'paymentTransactionId': '",
    ):
        assert key not in text, (name, text)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (
            '{ orders(filter: {customerPhone: "13800000000"}) { totalCount } }',
            "Order.customerPhone",
        ),
        ('{ orders(filter: {minTotal: "100.00"}) { totalCount } }', "Order.total"),
        ("{ orders(orderBy: {field: TOTAL}) { totalCount } }", "Order.total"),
        ('{ customers(filter: {phone: "13800000000"}) { totalCount } }', "Customer.phone"),
        ('{ customers(filter: {email: "a@example.com"}) { totalCount } }', "Customer.email"),
    ],
)
async def test_filtering_or_sorting_on_a_field_not_readable_in_full_is_forbidden(
    api: Api, query: str, field: str
) -> None:
    result = await api.gql(query, as_="compliance")

    assert nothing_returned(result)
    assert errors_of(result) == [("FORBIDDEN", field)]


async def test_masked_phone_cannot_be_used_as_a_search_oracle_by_sales(api: Api) -> None:
    result = await api.gql(
        '{ customers(filter: {phone: "13800000000"}) { totalCount } }', as_="sales"
    )

    assert errors_of(result) == [("FORBIDDEN", "Customer.phone")]


async def test_sales_sees_only_orders_of_its_channels_and_others_are_not_found(api: Api) -> None:
    mine = await api.gql(
        "{ orders(first: 100) { totalCount edges { node { channel } } } }", as_="sales"
    )
    outside = await api.gql(
        "{ orders(first: 1, filter: {channel: [WEB]}) { edges { node { id } } } }", as_="ops"
    )
    outside_id = outside["data"]["orders"]["edges"][0]["node"]["id"]

    single = await api.gql(
        "query($id: ID!) { order(id: $id) { number } }", {"id": outside_id}, as_="sales"
    )
    filtered = await api.gql("{ orders(filter: {channel: [WEB]}) { totalCount } }", as_="sales")

    assert {e["node"]["channel"] for e in mine["data"]["orders"]["edges"]} == {"TAOBAO", "JD"}
    assert mine["data"]["orders"]["totalCount"] == 100
    assert errors_of(single) == [("NOT_FOUND", None)]
    assert filtered["data"]["orders"]["totalCount"] == 0


async def test_nested_customer_orders_respect_the_sales_row_scope(api: Api) -> None:
    result = await api.gql(
        "{ customers(first: 100) { edges { node { orders(first: 50) { channel } } } } }",
        as_="sales",
    )

    channels = {
        o["channel"] for e in result["data"]["customers"]["edges"] for o in e["node"]["orders"]
    }
    assert channels == {"TAOBAO", "JD"}


async def test_viewer_reports_field_access_so_a_ui_can_render_it(api: Api) -> None:
    result = await api.gql("{ viewer { roles fieldAccess { type field access } } }", as_="sales")

    access = {(e["type"], e["field"]): e["access"] for e in result["data"]["viewer"]["fieldAccess"]}
    assert access[("Customer", "phone")] == "MASKED"
    assert access[("Order", "grossMargin")] == "NONE"
    assert access[("Order", "trackingNumber")] == "FULL"
    assert {f"{t}.{f}" for t, f in access} == {c for r, c in EXPECTED if r == "sales"}


async def test_admin_reads_no_customer_data(api: Api) -> None:
    result = await api.gql("{ customers { edges { node { name } } } }", as_="admin")

    assert nothing_returned(result)
    assert ("FORBIDDEN", "Customer.id") in errors_of(result) or (
        "FORBIDDEN",
        "Customer.name",
    ) in errors_of(result)


async def test_each_denied_field_error_points_at_its_node(api: Api) -> None:
    result = await api.gql(
        "{ orders(first: 50) { edges { node { number grossMargin g2: grossMargin "
        "lines { costPrice } } } } }",
        as_="cs",
    )

    edges = result["data"]["orders"]["edges"]
    lines = sum(len(e["node"]["lines"]) for e in edges)
    by_field: dict[str, list[list]] = {}
    for error in result["errors"]:
        assert error["extensions"]["code"] == "FORBIDDEN"
        by_field.setdefault(error["extensions"]["field"], []).append(error["path"])
    assert len(edges) == 50
    assert len(by_field["Order.grossMargin"]) == 100  # both aliases of each order
    assert len(by_field["OrderLine.costPrice"]) == lines
    assert ["orders", "edges", 7, "node", "g2"] in by_field["Order.grossMargin"]
    assert ["orders", "edges", 0, "node", "lines", 0, "costPrice"] in by_field[
        "OrderLine.costPrice"
    ]
    for path in by_field["Order.grossMargin"]:
        node = result["data"]
        for step in path:
            node = node[step]
        assert node is None


async def test_a_denied_field_in_an_empty_list_is_reported_once_without_a_path(
    api: Api,
) -> None:
    result = await api.gql(
        '{ orders(first: 5, filter: {createdFrom: "2001-01-01T00:00:00+08:00", '
        'createdTo: "2001-01-02T00:00:00+08:00"}) { edges { node { grossMargin } } } }',
        as_="cs",
    )

    assert result["data"]["orders"]["edges"] == []
    assert [(e["extensions"]["field"], e.get("path")) for e in result["errors"]] == [
        ("Order.grossMargin", None)
    ]
