"""Pure ASGI middleware: request id, client IP, body-size cap, security headers, access log."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import metrics
from api.client_ip import resolve_client_ip
from api.door import Door
from api.outage import is_unavailable
from api.settings import Settings

log = logging.getLogger("ordergate.access")

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")


def _request_ids(headers: list[tuple[bytes, bytes]]) -> tuple[str, str | None]:
    """The request id: a caller's `X-Request-ID` when it is a sane token (a load balancer's,
    so its logs and ours line up), else the W3C `traceparent` trace id, else a new one."""
    given = next((v for k, v in headers if k == b"x-request-id"), b"").decode("latin-1")
    parent = next((v for k, v in headers if k == b"traceparent"), b"").decode("latin-1")
    trace = _TRACEPARENT.fullmatch(parent.strip())
    trace_id = trace.group(1) if trace else None
    if _REQUEST_ID.fullmatch(given):
        return given, trace_id
    return trace_id or uuid.uuid4().hex, trace_id


class BodyTooLarge(Exception):
    pass


def _error_body(message: str, code: str, request_id: str, retry_after: int | None = None) -> bytes:
    extensions: dict[str, object] = {"code": code}
    if code == "INTERNAL":
        extensions["requestId"] = request_id
    if retry_after is not None:
        extensions["retryAfter"] = retry_after
    return json.dumps({"errors": [{"message": message, "extensions": extensions}]}).encode()


def _guarded(scope: Scope) -> bool:
    """A request the door may turn away: GraphQL (unless its token is valid) or an export
    download (whose token is in its link). CORS preflights and everything else pass."""
    if scope["type"] != "http" or scope.get("method") == "OPTIONS":
        return False
    path = scope.get("path", "")
    return path == "/graphql" or path.startswith("/exports/")


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings, door: Door | None = None) -> None:
        self.app = app
        self.settings = settings
        self.door = door

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = scope.get("headers", [])
        request_id, trace_id = _request_ids(headers)
        forwarded = [v.decode("latin-1") for k, v in headers if k == b"x-forwarded-for"]
        peer = scope.get("client")[0] if scope.get("client") else None
        client_ip = resolve_client_ip(peer, forwarded, self.settings.trusted_proxies)
        state = scope.setdefault("state", {})
        state.update(request_id=request_id, client_ip=client_ip, peer_ip=peer, trace_id=trace_id)
        if scope["type"] == "websocket":
            # A subscription socket: the same request id and client IP for its audit events;
            # its messages are not HTTP responses, so there is nothing to cap or decorate.
            await self.app(scope, receive, send)
            return
        if self.door is not None and _guarded(scope):
            authorization = next(
                (v.decode("latin-1") for k, v in headers if k == b"authorization"), None
            )
            wait = self.door.turned_away(client_ip, authorization)
            if wait is not None:  # past its budget: not read, not logged (api/door.py)
                metrics.RATE_LIMITED.labels(limit="door").inc()
                await self._reject(
                    send,
                    429,
                    f"too many refused requests from this address; try again in {wait} s",
                    request_id,
                    code="RATE_LIMITED",
                    retry_after=wait,
                )
                return
        status = {"code": 500}
        limit = self.settings.max_body_bytes

        declared = next((v for k, v in headers if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(send, 413, f"request body over {limit} bytes", request_id)
            status["code"] = 413
            self._log(scope, status["code"], started, request_id, client_ip)
            return

        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                status["code"] = message["status"]
                message = dict(message)
                message["headers"] = [
                    *message.get("headers", []),
                    *SECURITY_HEADERS,
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, capped_receive, send_with_headers)
        except BodyTooLarge:
            if not response_started:
                await self._reject(send, 413, f"request body over {limit} bytes", request_id)
            status["code"] = 413
        except ClientDisconnect:
            # The client went away before its body arrived: nobody to answer, nothing run. Its
            # access-log line says 499 (as nginx does), not an unhandled error's traceback.
            status["code"] = 499
        except Exception as exc:
            # The last line of defence: whatever escaped a route still gets a JSON answer with
            # a code and the request id, never Starlette's plain-text 500.
            if is_unavailable(exc):
                status["code"] = 503
                code, message = "UNAVAILABLE", "the database is not answering; try again shortly"
            else:
                log.error("unhandled error", exc_info=exc, extra={"request_id": request_id})
                status["code"] = 500
                code, message = "INTERNAL", f"internal error (request id {request_id})"
            if not response_started:
                await self._reject(send, status["code"], message, request_id, code=code)
        finally:
            self._log(scope, status["code"], started, request_id, client_ip)

    @staticmethod
    async def _reject(
        send: Send,
        status: int,
        message: str,
        request_id: str,
        *,
        code: str = "BAD_USER_INPUT",
        retry_after: int | None = None,
    ) -> None:
        body = _error_body(message, code, request_id, retry_after)
        if status == 503:
            retry_after = retry_after or 5
        extra = [(b"retry-after", str(retry_after).encode())] if retry_after else []
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                    *SECURITY_HEADERS,
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _log(scope: Scope, status: int, started: float, request_id: str, client_ip: str) -> None:
        seconds = time.perf_counter() - started
        state = scope.get("state", {})
        extra: dict[str, Any] = {
            "request_id": request_id,
            "method": scope.get("method"),
            "path": scope.get("path"),
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
            "client_ip": client_ip,
        }
        for key in ("username", "trace_id", "operation", "operation_name", "codes", "cost"):
            if state.get(key) is not None:
                extra["user" if key == "username" else key] = state[key]
        log.info("request", extra=extra)
        operation = state.get("operation_label")
        if operation is not None:
            codes = state.get("codes") or ["ok"]
            metrics.REQUESTS.labels(operation=operation, code=codes[0]).inc()
            metrics.DURATION.labels(operation=operation).observe(seconds)
