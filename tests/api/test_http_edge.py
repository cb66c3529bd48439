"""The HTTP edge: health, body limits, GraphiQL, GET queries, errors without stack traces."""

from __future__ import annotations

import json
import logging

import pytest

from domain.orders import service as orders_service
from tests.conftest import Api, errors_of


async def test_healthz_answers_when_the_database_does(api: Api) -> None:
    response = await api.client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_an_oversized_body_is_refused_before_it_is_read(api: Api) -> None:
    body = {"query": "{ viewer { username } }", "padding": "x" * 1_100_000}

    response = await api.post(body, as_="cs")

    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_graphiql_is_served_to_browsers(api: Api) -> None:
    response = await api.client.get("/graphql", headers={"accept": "text/html"})

    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_queries_work_over_get_but_mutations_do_not(api: Api) -> None:
    token = await api.token("ops")
    headers = {"authorization": f"Bearer {token}"}

    query = await api.client.get(
        "/graphql", params={"query": "{ viewer { username } }"}, headers=headers
    )
    mutation = await api.client.get(
        "/graphql",
        params={"query": 'mutation { transitionOrder(id: "1", to: PAID) { id } }'},
        headers=headers,
    )

    assert query.json()["data"]["viewer"]["username"] == "demo-ops"
    assert mutation.status_code in (400, 405)


async def test_batched_operations_are_refused_as_a_whole(api: Api) -> None:
    response = await api.post([{"query": "{ viewer { username } }"}] * 2, as_="cs")

    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_unexpected_errors_are_masked_and_logged_with_the_request_id(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode(**_kwargs: object) -> None:
        raise RuntimeError("secret database detail")

    monkeypatch.setattr(orders_service, "list_orders", explode)

    with caplog.at_level(logging.ERROR, logger="ordergate.errors"):
        response = await api.post({"query": "{ orders { totalCount } }"}, as_="ops")

    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "INTERNAL"
    assert "secret" not in json.dumps(response.json())
    request_id = error["extensions"]["requestId"]
    assert response.headers["x-request-id"] == request_id
    assert any(getattr(r, "request_id", None) == request_id for r in caplog.records)


async def test_syntax_errors_are_bad_user_input(api: Api) -> None:
    result = await api.gql("{ orders { ", as_="cs")

    assert errors_of(result) == [("BAD_USER_INPUT", None)]


async def test_security_headers_are_set(api: Api) -> None:
    response = await api.client.get("/healthz")

    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"


async def test_a_client_gone_before_its_body_is_a_quiet_499_not_an_unhandled_error(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """Seen in a flash sale: a client that went away mid-request was logged as an unhandled
    error with a full traceback. It is an access-log line with status 499, and nothing is
    sent to nobody."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
        "client": ("203.0.113.9", 50000),
        "server": ("ordergate.test", 80),
    }
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    with caplog.at_level(logging.INFO):
        await api.app(scope, receive, send)

    assert sent == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    [line] = [
        r for r in caplog.records if r.name == "ordergate.access" and r.getMessage() == "request"
    ]
    assert line.status == 499
