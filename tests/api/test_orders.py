"""Reading orders: pagination, filters, ordering, look-ups, and the errors bad arguments get."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import event

from tests.conftest import Api, errors_of, nothing_returned

PAGE = """
query($first: Int, $after: String, $filter: OrderFilter, $orderBy: OrderOrder) {
  orders(first: $first, after: $after, filter: $filter, orderBy: $orderBy) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id number channel status total createdAt } }
  }
}
"""


async def _all_pages(api: Api, **variables: object) -> list[dict]:
    nodes, after = [], None
    while True:
        result = await api.gql(PAGE, {**variables, "first": 37, "after": after}, as_="ops")
        assert "errors" not in result, result
        connection = result["data"]["orders"]
        nodes += [e["node"] for e in connection["edges"]]
        if not connection["pageInfo"]["hasNextPage"]:
            return nodes
        after = connection["pageInfo"]["endCursor"]


async def test_keyset_pages_walk_every_order_once_newest_first(any_api: Api) -> None:
    nodes = await _all_pages(any_api)

    assert len(nodes) == 200
    assert len({n["id"] for n in nodes}) == 200
    created = [dt.datetime.fromisoformat(n["createdAt"]) for n in nodes]
    assert created == sorted(created, reverse=True)


async def test_ordering_by_total_ascending_is_monotonic_across_pages(api: Api) -> None:
    nodes = await _all_pages(api, orderBy={"field": "TOTAL", "direction": "ASC"})

    totals = [float(n["total"]) for n in nodes]  # floats only to compare in the test
    assert len(nodes) == 200
    assert totals == sorted(totals)


async def test_filters_by_status_and_channel_and_counts_the_match(api: Api) -> None:
    result = await api.gql(
        PAGE, {"first": 100, "filter": {"status": ["SHIPPED"], "channel": ["JD", "WEB"]}}, as_="ops"
    )

    connection = result["data"]["orders"]
    assert connection["totalCount"] == len(connection["edges"]) > 0
    assert {e["node"]["status"] for e in connection["edges"]} == {"SHIPPED"}
    assert {e["node"]["channel"] for e in connection["edges"]} <= {"JD", "WEB"}


async def test_created_range_is_inclusive_from_and_exclusive_to(api: Api) -> None:
    everything = await _all_pages(api)
    pivot = everything[50]["createdAt"]

    before = await api.gql(PAGE, {"first": 100, "filter": {"createdTo": pivot}}, as_="ops")
    after = await api.gql(PAGE, {"first": 100, "filter": {"createdFrom": pivot}}, as_="ops")

    assert before["data"]["orders"]["totalCount"] + after["data"]["orders"]["totalCount"] == 200
    assert after["data"]["orders"]["edges"][-1]["node"]["createdAt"] == pivot


async def test_filter_by_customer_returns_only_that_customers_orders(api: Api) -> None:
    first = await api.gql("{ orders(first: 1) { edges { node { customer { id } } } } }", as_="cs")
    customer_id = first["data"]["orders"]["edges"][0]["node"]["customer"]["id"]

    result = await api.gql(
        "query($f: OrderFilter) { orders(first: 100, filter: $f) "
        "{ totalCount edges { node { customer { id } } } } }",
        {"f": {"customerId": customer_id}},
        as_="cs",
    )

    ids = {e["node"]["customer"]["id"] for e in result["data"]["orders"]["edges"]}
    assert ids == {customer_id}


async def test_single_order_by_id_and_unknown_id_is_not_found(api: Api) -> None:
    page = await api.gql("{ orders(first: 1) { edges { node { id number } } } }", as_="ops")
    node = page["data"]["orders"]["edges"][0]["node"]

    found = await api.gql(
        "query($id: ID!) { order(id: $id) { number } }", {"id": node["id"]}, as_="ops"
    )
    missing = await api.gql('{ order(id: "999999") { number } }', as_="ops")
    malformed = await api.gql('{ order(id: "abc") { number } }', as_="ops")

    assert found["data"]["order"]["number"] == node["number"]
    assert errors_of(missing) == [("NOT_FOUND", None)]
    assert errors_of(malformed) == [("BAD_USER_INPUT", None)]


@pytest.mark.parametrize(
    ("variables", "needle"),
    [
        ({"first": -1}, "negative"),
        ({"first": 101}, "at most"),
        ({"after": "not-a-cursor"}, "cursor"),
        ({"after": "W10"}, "cursor"),
        ({"filter": {"createdFrom": "2026-01-01T00:00:00"}}, "naive"),
        ({"filter": {"status": ["LOST"]}}, "LOST"),
        ({"filter": {"minTotal": 12.5}}, "decimal string"),
        (
            {
                "filter": {
                    "createdFrom": "2026-02-01T00:00:00+08:00",
                    "createdTo": "2026-01-01T00:00:00+08:00",
                }
            },
            "after",
        ),
    ],
)
async def test_bad_arguments_are_bad_user_input(api: Api, variables: dict, needle: str) -> None:
    result = await api.gql(PAGE, variables, as_="ops")

    assert nothing_returned(result)
    assert [e["extensions"]["code"] for e in result["errors"]] == ["BAD_USER_INPUT"]
    assert needle in result["errors"][0]["message"]


async def test_a_cursor_from_one_ordering_is_refused_by_another(api: Api) -> None:
    by_total = await api.gql(PAGE, {"first": 2, "orderBy": {"field": "TOTAL"}}, as_="ops")
    cursor = by_total["data"]["orders"]["pageInfo"]["endCursor"]

    result = await api.gql(PAGE, {"first": 2, "after": cursor}, as_="ops")

    assert errors_of(result) == [("BAD_USER_INPUT", None)]


async def test_unknown_enum_literal_in_query_is_bad_user_input(api: Api) -> None:
    result = await api.gql("{ orders(filter: {status: [LOST]}) { totalCount } }", as_="ops")

    assert errors_of(result) == [("BAD_USER_INPUT", None)]


async def test_a_page_of_orders_with_lines_and_customers_costs_a_constant_number_of_queries(
    api: Api,
) -> None:
    engine = api.app.state.runtime.engine.sync_engine
    query = """query($n: Int!) { orders(first: $n) { totalCount edges { node { number total
        lines { sku quantity unitPrice } customer { name phone addresses { city } }
        shippingAddress { city } statusHistory { to at } } } } }"""
    await api.token("cs")  # log in before counting

    async def statements_for(n: int) -> list[str]:
        seen: list[str] = []

        def count(_conn, _cursor, statement, *_args) -> None:
            seen.append(statement)

        event.listen(engine, "before_cursor_execute", count)
        try:
            result = await api.gql(query, {"n": n}, as_="cs")
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert len(result["data"]["orders"]["edges"]) == n
        return seen

    small, large = await statements_for(5), await statements_for(50)

    def work(seen: list[str]) -> list[str]:  # without the budget, written once a second
        return [s for s in seen if "rate_counters" not in s and "synchronous_commit" not in s]

    assert len(work(small)) == len(work(large))
    postgres = api.app.state.runtime.engine.dialect.name == "postgresql"
    reads = [s for s in work(large) if "audit_" not in s]
    # user with roles and channels (one statement), orders, lines, history, customers,
    # addresses, the count
    assert len(reads) <= 7, reads
    # one audit event for the personal data returned: PostgreSQL queues it for the seal at
    # commit (one insert); SQLite claims its number and inserts it
    assert len(work(large)) - len(reads) == (1 if postgres else 2)
    # the account's query budget, written at most once a second per process (ratelimit.py):
    # one upsert returning last minute's count too on PostgreSQL; SQLite's RETURNING takes no
    # subquery, so it reads last minute's count on its own
    budget = [s for s in small + large if "rate_counters" in s]
    assert len(budget) <= (1 if postgres else 2)


async def test_stock_and_customers_read_from_the_demo_data(api: Api) -> None:
    result = await api.gql(
        """{ stockItems(first: 100) { totalCount edges { node { sku warehouse available } } }
             customers(first: 5) { totalCount edges { node { name phone } } }
             stockItem(sku: "SKU-0001") { sku onHand } }""",
        as_="cs",
    )

    assert "errors" not in result
    assert result["data"]["stockItems"]["totalCount"] == 100
    assert result["data"]["customers"]["totalCount"] == 100
    assert result["data"]["stockItem"]["sku"] == "SKU-0001"
