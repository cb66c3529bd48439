"""The GraphQL endpoint: one database session per request, authentication, error mapping."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import re
import time
from pathlib import Path
from typing import Any, NoReturn

from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry import UNSET
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ConnectionInitMessage
from strawberry.types import ExecutionResult

from api import metrics
from api.auth.authenticate import authenticate, authenticate_claims
from api.context import RequestContext, origin_of
from api.errors import OVERLOADED_MESSAGE, format_error
from api.outage import is_overloaded, is_unavailable
from api.runtime import Runtime
from api.sockets import IDLE, PROCESS_FULL, TOO_MANY
from domain.errors import RateLimited, Unauthenticated

GRAPHQL_RESPONSE = "application/graphql-response+json"
GRAPHIQL_DIR = Path(__file__).resolve().parent / "static" / "graphiql"
# The GraphiQL page loads its scripts and styles from this server only; GraphiQL sets
# inline styles and embeds its fonts as data: URLs.
GRAPHIQL_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "font-src 'self' data:; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# In development a front-end dev server on any local port may call the API (CORS) and open
# its subscription socket.
LOCAL_ORIGINS = r"http://(localhost|127\.0\.0\.1)(:[0-9]{1,5})?"
log = logging.getLogger("ordergate.errors")


def _as_graphql_response(response: Response, request: Request) -> None:
    """Serve `application/graphql-response+json` to clients that ask for it (GraphQL over HTTP)."""
    if response.media_type != "application/json":
        return
    response.headers["content-type"] = f"{GRAPHQL_RESPONSE}; charset=utf-8"
    if getattr(request.state, "request_error", False):
        response.status_code = 400


def error_response(
    status: int,
    code: str,
    message: str,
    request_id: str,
    headers: dict[str, str] | None = None,
    **more: str,
) -> JSONResponse:
    extensions: dict[str, Any] = {"code": code, **more}
    if code == "INTERNAL":
        extensions["requestId"] = request_id
    # A message may quote what the client sent (an operation name): a lone surrogate in it
    # cannot be encoded as UTF-8, and made this answer a 500 (issue #29, 7).
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse(
        {"errors": [{"message": message, "extensions": extensions}]}, status, headers=headers
    )


ALLOWED_METHODS = ("GET", "POST")


def _json_problem(text: str, what: str) -> str | None:
    try:
        json.loads(text)
    except RecursionError:
        return f"{what} is nested too deeply"
    except ValueError as exc:
        return f"{what} is not valid JSON ({str(exc)[:80]})"
    return None


async def _malformed_body(request: Request) -> str | None:
    """Why a request cannot be a GraphQL request, or None. Checked before strawberry reads
    it, so that no shape of body — `null`, `123`, a lone `\\xff`, a 5,000-digit number, 100,000
    nested brackets, in a POST body or a GET's `variables` — reaches a code path that answers
    with a plain-text 500."""
    if request.method == "GET":
        for name in ("variables", "extensions"):
            value = request.query_params.get(name)
            if value and (problem := _json_problem(value, f"the `{name}` parameter")):
                return problem
        return None
    if request.method != "POST":
        return None
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        return None
    body = await request.body()  # cached: strawberry reads the same bytes
    try:
        parsed = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        return "the request body is not UTF-8"
    except RecursionError:
        return "the request body is nested too deeply"
    except ValueError as exc:  # malformed JSON, or a number too long to convert
        return f"the request body is not valid JSON ({str(exc)[:80]})"
    if isinstance(parsed, list):
        return "batched requests are not supported; send one operation per request"
    if not isinstance(parsed, dict):
        return "the request body must be a JSON object with a `query`"
    return None


# Close codes of the subscription socket besides graphql-transport-ws's own (4400, 4401, 4408,
# 4429, and 4403 for a missing or bad token): the database could not check the token just now,
# overloaded or away. RFC 6455's 1013 "Try Again Later": keep the token, reconnect with `after:`
# after a pause (issue #29: this was 4403, which told clients to throw their token away).
TRY_AGAIN_LATER = 1013


class _Close(Exception):
    """`connection_init` is answered by closing the socket with this code: the database is
    busy or away (1013), or a bound was reached (4429, api/sockets.py)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _TransportWSHandler(BaseGraphQLTransportWSHandler[RequestContext, None]):
    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        try:
            await super().handle_connection_init(message)
        except _Close as exc:
            await self.websocket.close(code=exc.code, reason=exc.reason)


class GraphQLView(GraphQL[RequestContext, None]):
    graphql_transport_ws_handler_class = _TransportWSHandler

    def __init__(self, schema: Any, runtime: Runtime) -> None:
        super().__init__(
            schema,
            graphql_ide=None if runtime.settings.production else "graphiql",
            allow_queries_via_get=True,
            # Subscriptions: the graphql-transport-ws protocol only (the contract's), a client
            # that has not sent `connection_init` within 10 s is closed (4408), and one
            # connection carries at most 10 operations.
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=dt.timedelta(seconds=10),
            max_subscriptions_per_connection=10,
            # A browser page may open a socket from this server's own origin and from the
            # front-end origins allowed for CORS (cross-site websocket hijacking otherwise).
            allowed_origins=runtime.settings.cors_origins,
        )
        self.runtime = runtime
        self._local_origins = (
            re.compile(LOCAL_ORIGINS) if runtime.settings.env == "development" else None
        )

    def is_websocket_origin_allowed(self, request: Any, origin: str) -> bool:
        if self._local_origins is not None and self._local_origins.fullmatch(origin):
            return True
        return super().is_websocket_origin_allowed(request, origin)

    async def render_graphql_ide(self, request: Request) -> Response:
        """ordergate's GraphiQL page (api/static/graphiql): assets from the package, log-in
        by POST, the token kept in the browser tab."""
        page = (GRAPHIQL_DIR / "index.html").read_text(encoding="utf-8")
        return HTMLResponse(page, headers={"content-security-policy": GRAPHIQL_CSP})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._socket(WebSocket(scope, receive, send))
            return
        if scope["type"] != "http":
            await Response(status_code=404)(scope, receive, send)
            return
        request = Request(scope, receive)
        request_id = request.state.request_id
        if request.method not in ALLOWED_METHODS:
            allowed = ", ".join(ALLOWED_METHODS)
            response = error_response(
                405,
                "BAD_USER_INPUT",
                f"{request.method[:16]} is not a GraphQL method here; use {allowed}",
                request_id,
                headers={"allow": allowed},
            )
            await response(scope, receive, send)
            return
        problem = await _malformed_body(request)
        if problem is not None:
            # Whatever the body, the answer is JSON with a code: never a plain-text 500.
            response = error_response(400, "BAD_USER_INPUT", problem, request_id)
        else:
            response = await self._answer(request)
        await response(scope, receive, send)

    async def _answer(self, request: Request) -> Response:
        request_id = request.state.request_id
        try:
            async with self.runtime.sessions() as session:
                request.state.session = session
                try:
                    response = await self.run(request)
                    if getattr(request.state, "graphql_response_json", False):
                        _as_graphql_response(response, request)
                except HTTPException as exc:
                    response = error_response(
                        exc.status_code, "BAD_USER_INPUT", exc.reason, request_id
                    )
                finally:
                    replica = getattr(request.state, "replica_session", None)
                    if replica is not None:
                        await replica.close()
        except Exception as exc:  # authentication, the session, anything outside execution
            if is_unavailable(exc):
                self._failed(exc, request_id)
                return self.unavailable(request_id, overloaded=is_overloaded(exc))
            log.error("unexpected error", exc_info=exc, extra={"request_id": request_id})
            return error_response(
                500, "INTERNAL", f"internal error (request id {request_id})", request_id
            )
        if getattr(request.state, "unavailable", False):
            response.status_code = 503
            response.headers["retry-after"] = str(self.runtime.settings.retry_after_seconds)
        return response

    async def _socket(self, socket: WebSocket) -> None:
        """One subscription socket: a context of its own, authenticated by the
        `connection_init` message (`on_ws_connect`). Its session holds a connection only
        while a statement or a batch of events is being read. It counts against the
        process's, its address's and then its account's bounds (api/sockets.py) until it
        closes, and is closed when it has carried no subscription for a while."""
        origin = origin_of(socket)  # type: ignore[arg-type]
        address = origin.client_ip or origin.peer_ip or "unknown"
        limits = self.runtime.sockets
        refused = limits.admit(address)
        if refused is not None:
            metrics.SOCKET_BOUNDS.labels(
                bound="process" if limits.open >= limits.max_sockets else "pending"
            ).inc()
            offered = socket.scope.get("subprotocols") or []
            await socket.accept(
                subprotocol=GRAPHQL_TRANSPORT_WS_PROTOCOL
                if GRAPHQL_TRANSPORT_WS_PROTOCOL in offered
                else None
            )
            await socket.close(code=PROCESS_FULL, reason=refused)
            return
        session = self.runtime.sessions()
        ctx = RequestContext(
            request=socket,  # type: ignore[arg-type]
            runtime=self.runtime,
            session=session,
            origin=origin,
            idle_since=time.monotonic(),
        )
        idle = asyncio.get_running_loop().create_task(self._close_when_idle(socket, ctx))
        try:
            await self.run(socket, context=ctx)
        finally:
            idle.cancel()
            limits.leave(address, ctx.socket_account)
            await session.close()

    async def _close_when_idle(self, socket: WebSocket, ctx: RequestContext) -> None:
        """Close the socket once it has carried no subscription for `ws_idle_seconds`."""
        idle = self.runtime.settings.ws_idle_seconds
        while True:
            left = idle if ctx.subscriptions else ctx.idle_since + idle - time.monotonic()
            if left <= 0:
                metrics.SOCKET_BOUNDS.labels(bound="idle").inc()
                with contextlib.suppress(RuntimeError):  # closed meanwhile
                    await socket.close(code=IDLE, reason="idle")
                return
            await asyncio.sleep(left)

    async def on_ws_connect(self, context: RequestContext) -> Any:  # type: ignore[override]
        """`connection_init` carries the same bearer token as HTTP requests:
        `{"Authorization": "Bearer <accessToken>"}`. Without a valid one the socket is closed
        (4403) before any operation runs; when the database cannot check it just now, it is
        closed with 1013 (try again later), and the token stays good."""
        params = context.connection_params if isinstance(context.connection_params, dict) else {}
        header = params.get("Authorization", params.get("authorization"))
        try:
            if not isinstance(header, str):
                await self._refused(context, 'send {"Authorization": "Bearer …"}')
            try:
                actor, claims = await authenticate_claims(
                    header, session=context.session, runtime=self.runtime, origin=context.origin
                )
                await context.session.commit()
            except Unauthenticated as exc:
                await context.session.rollback()
                await self._refused(context, exc.message)
            context.actor = actor
            # Logging in over the socket spends a unit of the account's budget, as a request
            # does (issue #30, M3: `connection_init` was free).
            try:
                await context.spend_query_budget(self.runtime.clock())
            except RateLimited as exc:
                context.actor = None
                raise _Close(TOO_MANY, exc.message[:120]) from None
        except (_Close, ConnectionRejectionError):
            raise
        except Exception as exc:
            await context.session.rollback()
            if not is_unavailable(exc):
                raise
            self._failed(exc, context.origin.request_id)
            raise _Close(
                TRY_AGAIN_LATER,
                "overloaded, try again shortly"
                if is_overloaded(exc)
                else "the database is not answering, try again shortly",
            ) from None
        address = context.origin.client_ip or context.origin.peer_ip or "unknown"
        account = str(actor.user_id)
        refused = self.runtime.sockets.authenticate(address, account)
        if refused is not None:
            context.actor = None
            metrics.SOCKET_BOUNDS.labels(bound="account").inc()
            raise _Close(TOO_MANY, refused)
        context.socket_account = account
        context.token_header = header
        context.token_expires = float(claims["exp"])
        context.request.scope["state"]["username"] = actor.username
        return UNSET  # a plain `connection_ack`

    async def _refused(self, context: RequestContext, message: str) -> NoReturn:
        """A socket that did not log in is counted against its address, as a refused request
        is, before it is closed with 4403; past the address's budget with 4429."""
        try:
            await context.count_refusal(self.runtime.clock())
        except RateLimited as exc:
            raise _Close(TOO_MANY, exc.message[:120]) from None
        raise ConnectionRejectionError({"code": "UNAUTHENTICATED", "message": message})

    def unavailable(self, request_id: str, *, overloaded: bool = False) -> Response:
        response = error_response(
            503,
            "UNAVAILABLE",
            OVERLOADED_MESSAGE
            if overloaded
            else "the database is not answering; nothing was changed, try again shortly",
            request_id,
            reason="OVERLOADED" if overloaded else "DATABASE_UNAVAILABLE",
        )
        response.headers["retry-after"] = str(self.runtime.settings.retry_after_seconds)
        return response

    def _failed(self, exc: BaseException, request_id: str) -> None:
        """One log line per interval, and the metric, for overload and outage apart."""
        if is_overloaded(exc):
            metrics.UNAVAILABLE.labels(reason="OVERLOADED").inc()
            self.runtime.overload.failed(exc, request_id=request_id)
        else:
            metrics.UNAVAILABLE.labels(reason="DATABASE_UNAVAILABLE").inc()
            self.runtime.outage.failed(exc, request_id=request_id)

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
            request.scope["state"]["codes"] = list(
                dict.fromkeys(e["extensions"]["code"] for e in payload["errors"])
            )
            outage = next((e for e in result.errors if is_unavailable(e.original_error)), None)
            if outage is not None:
                request.state.unavailable = True
                self._failed(outage.original_error, request_id)
        if result.extensions:
            payload["extensions"] = result.extensions
        return payload  # type: ignore[return-value]

    def encode_json(self, data: object) -> str:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
