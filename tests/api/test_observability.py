"""What an operator sees: Prometheus metrics, JSON access log lines with the operation, its
error codes and cost, and request ids that follow a request across systems."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from tests.conftest import Api, _api_for, settings_for


def _sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") or line.startswith(f"{name} "):
            found = re.match(rf"{name}(?:{{(.*)}})? (.*)", line)
            assert found
            got = ",".join(sorted((found.group(1) or "").split(","))) if found.group(1) else ""
            if got == wanted:
                return float(found.group(2))
    return 0.0


async def test_metrics_count_operations_by_outcome_and_time_them(api: Api) -> None:
    before = (await api.client.get("/metrics")).text
    await api.gql("{ orders(first: 1) { edges { node { number } } } }", as_="cs")
    await api.gql("{ orders(first: 1) { edges { node { grossMargin } } } }", as_="cs")

    after = await api.client.get("/metrics")

    assert after.status_code == 200
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    ok = "ordergate_requests_total"
    assert _sample(text, ok, operation="orders", code="ok") == (
        _sample(before, ok, operation="orders", code="ok") + 1
    )
    assert _sample(text, ok, operation="orders", code="FORBIDDEN") == (
        _sample(before, ok, operation="orders", code="FORBIDDEN") + 1
    )
    assert _sample(text, "ordergate_request_duration_seconds_count", operation="orders") >= 2
    assert _sample(text, "ordergate_audit_append_seconds_count") >= 1
    assert "ordergate_db_pool_connections" in text


async def test_rate_limit_refusals_are_counted(database_url: str, tmp_path: Path) -> None:
    settings = settings_for(database_url, tmp_path, ORDERGATE_REFUSED_PER_IP_PER_MINUTE="1")
    async for api in _api_for(settings):
        text = (await api.client.get("/metrics")).text
        before = {
            limit: _sample(text, "ordergate_rate_limit_refusals_total", limit=limit)
            for limit in ("refused", "door")
        }
        for _ in range(3):
            await api.post({"query": "{ orders { totalCount } }"})

        text = (await api.client.get("/metrics")).text
        after = {
            limit: _sample(text, "ordergate_rate_limit_refusals_total", limit=limit)
            for limit in ("refused", "door")
        }

        # The second is refused by the budget, the third at the door (api/door.py).
        assert after == {"refused": before["refused"] + 1, "door": before["door"] + 1}


async def test_metrics_can_require_a_token(database_url: str, tmp_path: Path) -> None:
    settings = settings_for(database_url, tmp_path, ORDERGATE_METRICS_TOKEN="scrape-secret")
    async for api in _api_for(settings):
        refused = await api.client.get("/metrics")
        allowed = await api.client.get(
            "/metrics", headers={"authorization": "Bearer scrape-secret"}
        )

        assert refused.status_code == 401
        assert allowed.status_code == 200


async def test_access_log_lines_carry_operation_codes_and_cost(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ordergate.access")

    await api.gql("query Mine { orders(first: 2) { edges { node { grossMargin } } } }", as_="cs")

    [line] = [r for r in caplog.records if r.getMessage() == "request" and r.path == "/graphql"][
        -1:
    ]
    assert line.operation == "orders"
    assert line.operation_name == "Mine"
    assert line.codes == ["FORBIDDEN"]
    assert line.cost == 1 + 2 * 3
    assert line.duration_ms > 0
    json.dumps(vars(line), default=str)  # serialisable as a JSON log line


async def test_the_access_log_cost_adds_introspection_to_data(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ordergate.access")

    result = await api.gql(
        '{ orders(first: 2) { edges { node { number } } } __type(name: "Order") { name } }',
        as_="cs",
    )

    [line] = [r for r in caplog.records if r.getMessage() == "request" and r.path == "/graphql"][
        -1:
    ]
    cost = result["extensions"]["cost"]
    assert (cost["requested"], cost["introspection"]) == (1 + 2 * 3, 2)
    assert line.cost == 1 + 2 * 3 + 2


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-request-id": "lb-4f2a9c"}, "lb-4f2a9c"),
        (
            {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
            "4bf92f3577b34da6a3ce929d0e0e4736",
        ),
        ({"x-request-id": "bad id with spaces\x01"}, None),
    ],
)
async def test_an_incoming_request_id_or_trace_is_kept(
    api: Api, headers: dict[str, str], expected: str | None
) -> None:
    response = await api.client.get("/healthz", headers=headers)

    if expected is None:
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    else:
        assert response.headers["x-request-id"] == expected


def _memory_spans():
    """An in-memory span exporter on the process's tracer provider (set once per process)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


async def test_opentelemetry_spans_when_tracing_is_on(database_url: str, tmp_path: Path) -> None:
    exporter = _memory_spans()
    settings = settings_for(database_url, tmp_path, ORDERGATE_TRACING="otel")
    async for api in _api_for(settings):
        await api.gql("query Mine { orders(first: 1) { edges { node { number } } } }", as_="cs")

    names = [span.name for span in exporter.get_finished_spans()]
    assert "GraphQL Query: Mine" in names
    assert "GraphQL Parsing" in names
    assert any(name.startswith("GraphQL Resolving: orders") for name in names)


async def test_no_spans_unless_tracing_is_asked_for(api: Api) -> None:
    exporter = _memory_spans()

    await api.gql("query Mine { orders(first: 1) { edges { node { number } } } }", as_="cs")

    assert exporter.get_finished_spans() == ()


def test_an_unknown_tracing_value_is_a_start_up_error() -> None:
    from api.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="ORDERGATE_TRACING is off or otel"):
        load_settings({"ORDERGATE_TRACING": "jaeger"})


def _operation_labels(text: str) -> set[str]:
    return set(re.findall(r'ordergate_requests_total\{[^}]*operation="([^"]*)"', text))


async def test_anonymous_root_field_combinations_mint_no_new_metric_labels(api: Api) -> None:
    """Issue #30, H4: the label was every request's set of root fields, chosen by anyone
    before authentication; 6,000 combinations made /metrics 14 MB. Labels now come from the
    schema's root fields and three fixed words."""
    roots = ["orders", "customers", "viewer", "stockItems", "tasks", "webhooks", "kpis"]
    names = [f"x{i}" for i in range(30)]
    for i in range(40):
        picked = [roots[j] for j in range(len(roots)) if (i >> j) & 1] or ["viewer"]
        await api.gql("{ " + " ".join(f"{r} {{ __typename }}" for r in picked) + " }")
    for name in names:
        await api.gql(f"{{ {name} }}")

    labels = _operation_labels((await api.client.get("/metrics")).text)

    from api.schema import build_schema

    schema = build_schema()._schema
    schema_roots = set(schema.query_type.fields) | set(schema.mutation_type.fields)
    assert labels <= schema_roots | {"introspection", "multiple", "unknown"}
    assert not any("," in label for label in labels)
    assert "multiple" in labels
