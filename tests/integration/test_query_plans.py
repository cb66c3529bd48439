"""Every list query shape the API runs over `orders`, explained on PostgreSQL: each has an
index that bounds its scan. With sequential scans priced out (`enable_seqscan = off`), a plan
that still scans the table, or filters a keyset page's rows instead of seeking to them, means
no fitting index exists — and at a million orders that query would read them all."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from sqlalchemy import event

from tests.conftest import Api

ORDERS_TABLE = re.compile(r"\bFROM orders\b")
SHAPES = {
    "first page": ("{ orders(first: 20) { edges { cursor node { number } } } }", "ops"),
    "by total": (
        "{ orders(first: 20, orderBy: {field: TOTAL, direction: ASC}) "
        "{ edges { cursor node { number } } } }",
        "ops",
    ),
    "filtered": (
        "{ orders(first: 20, filter: {status: [PAID], channel: [TAOBAO], createdFrom: "
        '"2020-01-01T00:00:00Z", createdTo: "2999-01-01T00:00:00Z"}) '
        "{ edges { cursor node { number } } } }",
        "ops",
    ),
    "by status": (
        "{ orders(first: 20, filter: {status: [PICKING]}) { edges { cursor node { number } } } }",
        "ops",
    ),
    "sales scope": ("{ orders(first: 20) { edges { cursor node { number } } } }", "sales"),
    "with count": ("{ orders(first: 20, filter: {status: [PAID]}) { totalCount } }", "ops"),
}


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


async def _explain(api: Api, query: str, role: str, variables: dict[str, Any] | None = None):
    engine = api.app.state.runtime.engine
    captured: list[tuple[str, Any]] = []

    def record(_conn, _cursor, statement, params, _context, _many) -> None:
        if ORDERS_TABLE.search(statement) and statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, params))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        result = await api.gql(query, variables, as_=role)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert "errors" not in result, result
    assert captured, "the query read no orders"
    plans = []
    async with engine.connect() as connection:
        # Price out what a million rows would make ruinous, so the plan shows whether an
        # index can seek to the page and deliver it in order.
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            await connection.exec_driver_sql(f"SET {setting} = off")
        for statement, params in captured:
            raw = await connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", params)
            value = raw.scalar()
            plans.append((statement, json.loads(value) if isinstance(value, str) else value))
    return result, plans


def _assert_bounded(plans: list[Any], *, keyset: bool) -> None:
    for statement, plan in plans:
        nodes = _nodes(plan[0]["Plan"])
        shown = json.dumps(plan)
        on_orders = [n for n in nodes if n.get("Relation Name") == "orders"]
        assert on_orders, shown
        assert not [n for n in on_orders if n["Node Type"] == "Seq Scan"], shown
        if "ORDER BY" in statement and "row_number()" not in statement:
            # The index delivers the page in order: no sort of every matching row.
            assert not [n for n in nodes if n["Node Type"] == "Sort"], shown
        if keyset:
            # The page's position is an index condition (a seek), not a filter over rows.
            conditions = " ".join(n.get("Index Cond", "") for n in on_orders)
            assert "ROW(" in conditions, shown


@pytest.mark.parametrize("shape", sorted(SHAPES))
async def test_each_list_shape_has_a_fitting_index(pg_api: Api, shape: str) -> None:
    query, role = SHAPES[shape]

    first, plans = await _explain(pg_api, query, role)
    _assert_bounded(plans, keyset=False)

    edges = (first["data"]["orders"] or {}).get("edges")
    if edges:
        after = edges[-1]["cursor"]
        paged = query.replace("first: 20", f'first: 20, after: "{after}"')
        _, plans = await _explain(pg_api, paged, role)
        _assert_bounded(plans, keyset=True)
