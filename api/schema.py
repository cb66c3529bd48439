"""The strawberry schema. `python -m api.schema` prints the SDL that `schema.graphql` holds."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from api.errors import ErrorCode
from api.graphql.approvals import ApprovalMutations, ApprovalQueries
from api.graphql.audit import AuditQueries
from api.graphql.auth import AuthMutations
from api.graphql.customers import (
    CustomerMergeMutations,
    CustomerMergeQueries,
    CustomerMutations,
    CustomerQueries,
    CustomerReviewQueries,
)
from api.graphql.docs import describe
from api.graphql.events import EventQueries, EventSubscriptions
from api.graphql.exports import ExportMutations, ExportQueries
from api.graphql.extension import AccessControl
from api.graphql.inputs import InputGuard
from api.graphql.intake import IntakeMutations
from api.graphql.inventory import InventoryMutations, InventoryQueries
from api.graphql.kpis import KpiQueries
from api.graphql.limits import Limits, QueryLimits
from api.graphql.nodes import NodeQueries
from api.graphql.orders import OrderMutations, OrderQueries
from api.graphql.picking import PickingQueries
from api.graphql.reconciliation import ReconciliationMutations, ReconciliationQueries
from api.graphql.reports import ReportQueries
from api.graphql.scalars import SCALARS
from api.graphql.stock import StockQueries
from api.graphql.tasks import TaskMutations, TaskQueries
from api.graphql.users import UserMutations, UserQueries
from api.graphql.viewer import ViewerQueries
from api.graphql.webhooks import WebhookMutations, WebhookQueries


@strawberry.type
class Query(
    ViewerQueries,
    NodeQueries,
    OrderQueries,
    CustomerQueries,
    CustomerReviewQueries,
    CustomerMergeQueries,
    KpiQueries,
    StockQueries,
    InventoryQueries,
    TaskQueries,
    ApprovalQueries,
    ExportQueries,
    AuditQueries,
    ReportQueries,
    UserQueries,
    WebhookQueries,
    EventQueries,
    PickingQueries,
    ReconciliationQueries,
):
    pass


@strawberry.type
class Mutation(
    AuthMutations,
    OrderMutations,
    CustomerMutations,
    CustomerMergeMutations,
    ApprovalMutations,
    ExportMutations,
    UserMutations,
    WebhookMutations,
    IntakeMutations,
    InventoryMutations,
    TaskMutations,
    ReconciliationMutations,
):
    pass


@strawberry.type
class Subscription(EventSubscriptions):
    pass


class Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Domain errors are answers, not faults: the error mapper logs the unexpected ones
        # once, with the request id, so nothing is logged twice or with a needless traceback.
        return None


def build_schema(
    *, production: bool = False, limits: Limits | None = None, tracing: bool = False
) -> strawberry.Schema:
    """The schema for these settings. Built once per distinct settings and shared: building
    takes ~80 ms of strawberry's work (several times that under coverage), and an app is
    built per test; the schema holds no state of its own (the extensions are made per
    operation)."""
    key = (production, limits or Limits(), tracing)
    built = _BUILT.get(key)
    if built is None:
        if len(_BUILT) >= 16:  # a handful of setting combinations at most; bounded anyway
            _BUILT.clear()
        built = _BUILT[key] = _build_schema(production=production, limits=key[1], tracing=tracing)
    return built


_BUILT: dict[tuple[bool, Limits, bool], strawberry.Schema] = {}


def _build_schema(*, production: bool, limits: Limits, tracing: bool) -> strawberry.Schema:
    tracers: list[Any] = []
    if tracing:
        # Spans for parsing, validation and each resolver, to whatever tracer provider the
        # process configured (an OTLP exporter, usually); only with ORDERGATE_TRACING=otel.
        from strawberry.extensions.tracing import OpenTelemetryExtension

        tracers.append(OpenTelemetryExtension)
    schema = Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[ErrorCode],
        # Input checks and limits first: a refused query costs no authorization work and no
        # database round trip.
        # Parsing and validating the same query text again costs nothing: clients send a
        # handful of distinct operations many times over.
        extensions=[
            lambda: ParserCache(maxsize=512),
            lambda: ValidationCache(maxsize=512),
            InputGuard,
            lambda: QueryLimits(limits=limits),
            AccessControl,
            *tracers,
        ],
        config=StrawberryConfig(
            scalar_map=SCALARS,
            # "Did you mean …" would help an attacker map the schema; keep it for developers.
            disable_field_suggestions=production,
        ),
    )
    describe(schema._schema)  # every type, field, argument and enum value (api/graphql/docs.py)
    return schema


def sdl() -> str:
    return build_schema().as_str() + "\n"


if __name__ == "__main__":
    print(sdl(), end="")  # noqa: T201 - writes the SDL for `make schema`
