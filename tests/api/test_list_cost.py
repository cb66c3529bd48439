"""What a list costs the database: nothing that is not selected is loaded or counted, and
counting stops at a cap."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event

from domain import pagination
from tests.conftest import Api


@contextmanager
def statements(api: Api) -> Iterator[list[str]]:
    engine = api.app.state.runtime.engine.sync_engine
    seen: list[str] = []

    def record(_conn, _cursor, statement, _params, _context, _many) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


ORDERS = "{ orders(first: 5) { edges { node { number %s } } %s } }"


async def test_no_count_unless_total_count_is_selected(api: Api) -> None:
    with statements(api) as without:
        await api.gql(ORDERS % ("", ""), as_="ops")
    with statements(api) as with_total:
        result = await api.gql(ORDERS % ("", "totalCount totalCountCapped"), as_="ops")

    assert not [s for s in without if "count(" in s.lower()]
    assert [s for s in with_total if "count(" in s.lower()]
    assert result["data"]["orders"]["totalCount"] > 5
    assert result["data"]["orders"]["totalCountCapped"] is False


async def test_relations_are_loaded_only_when_selected(api: Api) -> None:
    with statements(api) as bare:
        await api.gql(ORDERS % ("", ""), as_="ops")
    with statements(api) as full:
        await api.gql(
            ORDERS % ("lines { sku } statusHistory { to } customer { addresses { city } }", ""),
            as_="cs",
        )

    joined = " ".join(bare).lower()
    assert "order_lines" not in joined
    assert "order_status_changes" not in joined
    assert "from addresses" not in joined
    assert "from customers" not in joined
    everything = " ".join(full).lower()
    assert "order_lines" in everything
    assert "order_status_changes" in everything
    assert "from addresses" in everything


async def test_a_fragment_selecting_total_count_counts(api: Api) -> None:
    result = await api.gql(
        "{ orders(first: 1) { ...Total } } fragment Total on OrderConnection { totalCount }",
        as_="ops",
    )

    assert result["data"]["orders"]["totalCount"] > 1


async def test_counting_stops_at_the_cap_and_says_so(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    exact = await api.gql("{ orders(first: 1) { totalCount totalCountCapped } }", as_="ops")
    monkeypatch.setattr(pagination, "COUNT_CAP", 7)
    capped = await api.gql("{ orders(first: 1) { totalCount totalCountCapped } }", as_="ops")
    few = await api.gql(
        '{ orders(first: 1, filter: {createdFrom: "2999-01-01T00:00:00Z"}) '
        "{ totalCount totalCountCapped } }",
        as_="ops",
    )

    assert exact["data"]["orders"]["totalCount"] > 7
    assert capped["data"]["orders"] == {"totalCount": 7, "totalCountCapped": True}
    assert few["data"]["orders"] == {"totalCount": 0, "totalCountCapped": False}
