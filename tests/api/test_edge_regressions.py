"""Odd requests from issue #29 (item 7) and #30 (L6): each a clear answer with a code, never a
500 or INTERNAL, and nothing changed."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Api, errors_of


async def _post_raw(api: Api, body: str):
    """A JSON body sent as written (no client re-encoding), as customer service."""
    headers = {
        "content-type": "application/json",
        "authorization": f"Bearer {await api.token('cs')}",
    }
    return await api.client.post("/graphql", content=body, headers=headers)


async def test_a_lone_surrogate_in_the_operation_name_is_bad_input(api: Api) -> None:
    body = '{"query": "query Q { viewer { username } }", "operationName": "Q\\ud800"}'

    response = await _post_raw(api, body)

    assert response.status_code in (200, 400)
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_deeply_nested_variables_in_a_get_are_bad_input(api: Api) -> None:
    deep = "[" * 3000 + "]" * 3000

    response = await api.client.get(
        "/graphql",
        params={
            "query": "query($v: [Int]) { viewer { username } }",
            "variables": f'{{"v": {deep}}}',
        },
        headers={"authorization": f"Bearer {await api.token('cs')}"},
    )

    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_deeply_nested_variables_in_a_post_are_bad_input(api: Api) -> None:
    deep = "[" * 3000 + "]" * 3000
    body = '{"query": "query($v: [Int]) { viewer { username } }", "variables": {"v": ' + deep + "}}"

    response = await _post_raw(api, body)

    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
async def test_other_methods_on_graphql_get_a_json_405_with_allow(api: Api, method: str) -> None:
    response = await api.client.request(method, "/graphql", content=b"{}")

    assert response.status_code == 405
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    "query",
    [
        '{ kpis(from: "0001-01-01", to: "0001-01-31") { day name value } }',
        '{ kpis(from: "0001-01-01", to: "2026-01-01") { day name value } }',
        '{ kpis(from: "9999-12-01", to: "9999-12-31") { day name value } }',
    ],
)
async def test_kpis_for_days_out_of_any_business_range_are_bad_input(api: Api, query: str) -> None:
    result = await api.gql(query, as_="ops")

    assert errors_of(result)[0][0] == "BAD_USER_INPUT", result


async def test_a_stock_count_in_year_one_is_bad_input(api: Api) -> None:
    result = await api.gql(
        """mutation($i: StockCountInput!) { submitStockCount(input: $i) { id } }""",
        {
            "i": {
                "warehouse": "SH-01",
                "countedAt": "0001-01-01T00:00:00+00:00",
                "lines": [{"sku": "SKU-0001", "counted": 1}],
            }
        },
        as_="warehouse",
    )

    assert errors_of(result)[0][0] == "BAD_USER_INPUT", result


@pytest.mark.parametrize("url", ["http://[::1/x", "https://example.com:99999/hook", "http://[zz]/"])
async def test_a_webhook_url_that_cannot_be_parsed_is_bad_input(api: Api, url: str) -> None:
    result = await api.gql(
        """mutation($i: WebhookInput!) { registerWebhook(input: $i) { id } }""",
        {"i": {"url": url, "events": ["ORDER_CREATED"], "secret": "s" * 32}},
        as_="integration",
    )

    assert errors_of(result)[0][0] == "BAD_USER_INPUT", result
    assert json.dumps(result).count("Traceback") == 0
