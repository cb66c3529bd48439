"""Prometheus metrics (prometheus-client): what an operator graphs and alerts on.

- `ordergate_requests_total{operation,code}`: GraphQL operations by root field and outcome
  (`ok` or the first error's contract code);
- `ordergate_request_duration_seconds{operation}`: latency;
- `ordergate_rate_limit_refusals_total{limit}`: requests refused by a rate limit;
- `ordergate_unavailable_total{reason}`: 503s, `OVERLOADED` (pool exhausted) apart from
  `DATABASE_UNAVAILABLE`;
- `ordergate_audit_append_seconds`: time to append one audit event;
- `ordergate_db_pool_connections{state}`: the database pool, read when scraped.

Operation labels come from a set the schema bounds: an operation's one root field,
`introspection`, `multiple` (several root fields) or `unknown` (names the schema lacks), never
client-chosen text or combinations (`api/graphql/inputs.py: operation_label`).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

REQUESTS = Counter(
    "ordergate_requests", "GraphQL operations by root fields and outcome", ["operation", "code"]
)
DURATION = Histogram(
    "ordergate_request_duration_seconds", "GraphQL operation latency", ["operation"]
)
RATE_LIMITED = Counter(
    "ordergate_rate_limit_refusals", "Requests refused by a rate limit", ["limit"]
)
UNAVAILABLE = Counter(
    "ordergate_unavailable",
    "Requests answered 503 UNAVAILABLE, by reason (OVERLOADED: every pooled database "
    "connection busy; DATABASE_UNAVAILABLE: the database did not answer)",
    ["reason"],
)
SOCKET_BOUNDS = Counter(
    "ordergate_socket_bounds",
    "Subscription sockets closed, or subscriptions refused, by a bound (api/sockets.py): "
    "process, pending, account, subscriptions, idle",
    ["bound"],
)
AUDIT_APPEND = Histogram(
    "ordergate_audit_append_seconds",
    "Time to append one audit event",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)


class PoolCollector(Collector):
    """The database pools of the running apps, read at scrape time."""

    def __init__(self) -> None:
        # Weak: an app that is gone (tests build many) takes its engine with it.
        self.engines: weakref.WeakSet[Any] = weakref.WeakSet()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "ordergate_db_pool_connections", "Database pool connections", labels=["state"]
        )
        checked_out = idle = 0
        for engine in list(self.engines):
            pool = engine.sync_engine.pool
            checked_out += getattr(pool, "checkedout", lambda: 0)()
            idle += getattr(pool, "checkedin", lambda: 0)()
        family.add_metric(["in_use"], checked_out)
        family.add_metric(["idle"], idle)
        yield family


POOLS = PoolCollector()
REGISTRY.register(POOLS)


def exposition() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
