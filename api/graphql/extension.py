"""Request-wide access rules applied once per operation, before and after execution."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from graphql import ExecutionResult, GraphQLError, OperationType
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult as StrawberryResult

from api.context import RequestContext
from api.errors import format_error
from api.graphql.coordinates import (
    paths_of,
    requested,
    root_fields,
    selected_operation,
)
from api.graphql.projection import READ_SCOPE, ReadScope
from domain.access import COORDINATES, FieldAccess
from domain.audit.service import Outcome
from domain.errors import RateLimited

GOVERNED = frozenset(COORDINATES)
# graphql-core's results (HTTP execution) and strawberry's (each result of a stream).
RESULTS = (ExecutionResult, StrawberryResult)
ANONYMOUS_FIELDS = frozenset({"login"})


def _refuse(execution: Any, operation: Any, error: GraphQLError) -> None:
    """Answer with `error` instead of executing. A subscription is refused by raising: its
    stream does not consult a result set before execution."""
    if operation.operation is OperationType.SUBSCRIPTION:
        raise error
    execution.result = ExecutionResult(data=None, errors=[error])


class AccessControl(SchemaExtension):
    """Authenticated by default; every governed field checked once per request.

    Before execution: an anonymous caller may run nothing but `login` (introspection
    included); a refused mutation is audited. After execution: one FORBIDDEN error per
    `Type.field` the operation asked for and the caller may not read (the value itself is
    already null, because the projection never read it), and one audit event naming the
    personal or restricted fields returned, with how many records, and the fields denied.
    """

    async def on_execute(self) -> AsyncIterator[None]:
        execution = self.execution_context
        ctx: RequestContext = execution.context
        document = execution.graphql_document
        operation = selected_operation(document, execution.operation_name) if document else None
        if operation is None or execution.result is not None:  # refused by a limit already
            yield
            return
        on_socket = ctx.request.scope["type"] == "websocket"
        if on_socket != (operation.operation is OperationType.SUBSCRIPTION):
            message = (
                "send queries and mutations over HTTP: the websocket carries subscriptions"
                if on_socket
                else "subscriptions are served over graphql-transport-ws at /graphql"
            )
            _refuse(
                execution, operation, GraphQLError(message, extensions={"code": "BAD_USER_INPUT"})
            )
            yield
            return

        if ctx.actor is None:
            fields = set(root_fields(operation))
            if not fields or not fields <= ANONYMOUS_FIELDS:
                error = ctx.auth_error or GraphQLError(
                    "log in first", extensions={"code": "UNAUTHENTICATED"}
                )
                if not isinstance(error, GraphQLError):
                    error = GraphQLError(error.message, original_error=error)
                try:
                    refusals = await ctx.count_refusal(ctx.runtime.clock())
                except RateLimited as exc:
                    error = GraphQLError(exc.message, original_error=exc)
                    refusals = 0
                _refuse(execution, operation, error)
                # The first refusal from an address in a minute is recorded; the others are
                # counted and recorded as one summary when the minute ends (api/app.py), so
                # nobody can flood the audit chain without logging in.
                if operation.operation is OperationType.MUTATION and refusals == 1:
                    await ctx.record(
                        action="mutation.refused",
                        operation=",".join(sorted(fields)),
                        outcome=Outcome.DENIED,
                        code="UNAUTHENTICATED",
                        details={"furtherRefusals": "summed per minute in auth.refusals"},
                    )
                yield
                return
            yield
            return

        try:
            await ctx.spend_query_budget(ctx.runtime.clock())
        except RateLimited as exc:
            _refuse(execution, operation, GraphQLError(exc.message, original_error=exc))
            yield
            return
        access = ctx.actor.access.fields
        schema = execution.schema._schema
        named, via_interface = requested(schema, document, operation)
        asked = named & GOVERNED
        ctx.denied_fields = sorted(c for c in asked if access.get(c) in (None, FieldAccess.NONE))
        # Through an interface, a field of a type the object is not cannot be denied: the
        # object's own type decides (a `node(id:)` lookup checks its type's id first).
        scope = ReadScope(asked=frozenset(asked | (via_interface & GOVERNED)))
        if operation.operation is OperationType.SUBSCRIPTION:
            # Each event is rendered with this scope by the subscription's resolver, and
            # audited there as a delivery; denied fields are reported on every result
            # (`on_stream_result`).
            ctx.read_scope = scope
            yield
            return
        token = READ_SCOPE.set(scope)
        try:
            yield
        finally:
            READ_SCOPE.reset(token)
        tally = scope.tally
        if tally or ctx.denied_fields:
            # The operation column holds what the server knows (the root fields); the name a
            # client gave its operation is its own label, kept as such in the details.
            client_label = {"clientOperationName": execution.operation_name}
            await ctx.record(
                action="data.read",
                operation=",".join(sorted(set(root_fields(operation)))),
                outcome=Outcome.SUCCESS if tally else Outcome.DENIED,
                code=None if tally else "FORBIDDEN",
                details={
                    "returned": {
                        c: {"records": n, "access": str(access[c])}
                        for c, n in sorted(tally.items())
                    },
                    "denied": ctx.denied_fields,
                    **(client_label if execution.operation_name else {}),
                },
            )
        self._report_denied(execution.result)

    def on_stream_result(self, result: Any) -> Iterator[None]:
        """Each result of a subscription: the FORBIDDEN errors of the fields it may not read,
        and every error with its contract code, as over HTTP."""
        self._report_denied(result)
        if isinstance(result, RESULTS) and result.errors:
            ctx: RequestContext = self.execution_context.context
            request_id = ctx.origin.request_id or ""
            formatted = [format_error(e, request_id=request_id) for e in result.errors]
            result.errors = [
                GraphQLError(f["message"], path=e.path, extensions=f["extensions"], nodes=e.nodes)
                for e, f in zip(result.errors, formatted, strict=True)
            ]
        yield

    def _report_denied(self, result: Any) -> None:
        execution = self.execution_context
        ctx: RequestContext = execution.context
        document = execution.graphql_document
        operation = selected_operation(document, execution.operation_name) if document else None
        schema = execution.schema._schema
        if operation is not None and ctx.denied_fields and isinstance(result, RESULTS):
            # One error per place the field stands in the response, with its `path` (GraphQL
            # spec), so a client can attach it to its row; a denied field that stands nowhere
            # (an empty list) still gets one error, without a path.
            where = paths_of(schema, document, operation, result.data, set(ctx.denied_fields))
            errors = list(result.errors or ())
            for coordinate in ctx.denied_fields:
                for path in where.get(coordinate) or [None]:
                    errors.append(
                        GraphQLError(
                            f"your role may not read {coordinate}",
                            path=path,
                            extensions={"code": "FORBIDDEN", "field": coordinate},
                        )
                    )
            result.errors = errors
