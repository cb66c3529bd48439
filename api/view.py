"""The GraphQL endpoint: one database session per request, authentication, error mapping."""

from __future__ import annotations

import json
from typing import Any

from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult

from api.auth.authenticate import authenticate
from api.context import RequestContext, origin_of
from api.errors import format_error
from api.runtime import Runtime
from domain.errors import Unauthenticated

GRAPHQL_RESPONSE = "application/graphql-response+json"


def _as_graphql_response(response: Response, request: Request) -> None:
    """Serve `application/graphql-response+json` to clients that ask for it (GraphQL over HTTP)."""
    if response.media_type != "application/json":
        return
    response.headers["content-type"] = f"{GRAPHQL_RESPONSE}; charset=utf-8"
    if getattr(request.state, "request_error", False):
        response.status_code = 400


class GraphQLView(GraphQL[RequestContext, None]):
    def __init__(self, schema: Any, runtime: Runtime) -> None:
        super().__init__(
            schema,
            graphql_ide=None if runtime.settings.production else "graphiql",
            allow_queries_via_get=True,
        )
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await Response(status_code=404)(scope, receive, send)
            return
        request = Request(scope, receive)
        async with self.runtime.sessions() as session:
            request.state.session = session
            try:
                response = await self.run(request)
                if getattr(request.state, "graphql_response_json", False):
                    _as_graphql_response(response, request)
            except HTTPException as exc:
                response = JSONResponse(
                    {"errors": [{"message": exc.reason, "extensions": {"code": "BAD_USER_INPUT"}}]},
                    status_code=exc.status_code,
                )
        await response(scope, receive, send)

    async def get_context(self, request: Request, response: Any) -> RequestContext:  # type: ignore[override]
        ctx = RequestContext(
            request=request,
            runtime=self.runtime,
            session=request.state.session,
            origin=origin_of(request),
        )
        header = request.headers.get("authorization")
        if header:
            try:
                ctx.actor = await authenticate(
                    header, session=ctx.session, runtime=self.runtime, origin=ctx.origin
                )
                request.scope["state"]["username"] = ctx.actor.username
            except Unauthenticated as exc:
                ctx.auth_error = exc
        return ctx

    async def process_result(  # type: ignore[override]
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        payload: dict[str, Any] = {"data": result.data}
        if GRAPHQL_RESPONSE in request.headers.get("accept", ""):
            request.state.graphql_response_json = True
            # A request that could not run at all (unparsable, invalid, bad variables) has no
            # `data` entry in this media type, and answers 400.
            if result.data is None and result.errors and all(e.path is None for e in result.errors):
                request.state.request_error = True
                del payload["data"]
        if result.errors:
            request_id = request.state.request_id
            payload["errors"] = [format_error(e, request_id=request_id) for e in result.errors]
        if result.extensions:
            payload["extensions"] = result.extensions
        return payload  # type: ignore[return-value]

    def encode_json(self, data: object) -> str:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
