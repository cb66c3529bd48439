"""GET /exports/{id}/download?token=…: the one download of a produced export."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from api.auth.authenticate import authenticate
from api.context import MINUTE, REFUSED_PREFIX, origin_of, record_failure
from api.errors import error_code
from api.runtime import Runtime
from domain import ratelimit
from domain.actor import Actor
from domain.audit.service import Subject
from domain.db import utcnow
from domain.errors import BadInput, DomainError, NotFound, RateLimited
from domain.exports import service as exports
from domain.values import parse_int_id

log = logging.getLogger("ordergate.exports")

STATUS = {
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "CONFLICT": 410,
    "BAD_USER_INPUT": 400,
    "RATE_LIMITED": 429,
}


def _error(code: str, message: str, request_id: str) -> JSONResponse:
    body = {"errors": [{"message": message, "extensions": {"code": code}}]}
    if code == "INTERNAL":
        body["errors"][0]["extensions"]["requestId"] = request_id
    return JSONResponse(body, status_code=STATUS.get(code, 500))


def download_endpoint(runtime: Runtime):
    async def download(request: Request) -> Response | DeliveredOnce:
        origin = origin_of(request)
        raw_id = request.path_params["export_id"]
        token = request.query_params.get("token", "")
        actor: Actor | None = None
        async with runtime.sessions() as session:
            try:
                actor = await authenticate(
                    request.headers.get("authorization"),
                    session=session,
                    runtime=runtime,
                    origin=origin,
                )
                try:
                    export_id = parse_int_id(raw_id, what="export")
                except BadInput:
                    raise NotFound("no such export") from None
                path = await exports.open_download(
                    session=session,
                    actor=actor,
                    export_id=export_id,
                    token=token,
                    settings=runtime.exports,
                    now=utcnow(),
                )
                await session.commit()
            except Exception as exc:
                await session.rollback()
                if actor is None and isinstance(exc, DomainError):
                    # Anonymous: counted against its address before anything is written; the
                    # first refusal of a minute is recorded, the rest summed when the minute
                    # ends (auth.refusals), and past the budget nothing is written at all
                    # (issue #30, M6: 200 anonymous requests wrote 200 chained events).
                    try:
                        refusals = await ratelimit.hit(
                            session=session,
                            key=f"{REFUSED_PREFIX}{origin.client_ip}",
                            limit=runtime.settings.refused_per_ip_per_minute,
                            per=MINUTE,
                            now=runtime.clock(),
                            what="refused requests from this address",
                        )
                    except RateLimited as limited:
                        await session.commit()
                        runtime.door.shut(origin.client_ip, limited.details.get("retry_after"))
                        return _error("RATE_LIMITED", limited.message, origin.request_id or "")
                    await session.commit()
                    if refusals > 1:
                        return _error(error_code(exc), exc.message, origin.request_id or "")
                await record_failure(
                    session,
                    actor if actor is not None else Subject(None, None, (), origin),
                    exc,
                    action="export.download",
                    operation="download",
                    target_type="ExportRequest",
                    target_id=raw_id[:64],
                )
                if not isinstance(exc, DomainError):
                    log.exception("download failed", extra={"request_id": origin.request_id})
                    return _error("INTERNAL", "internal error", origin.request_id or "")
                return _error(error_code(exc), exc.message, origin.request_id or "")
        return DeliveredOnce(path, runtime, actor, export_id)

    return download


class DeliveredOnce:
    """Streams the file and tells the domain afterwards whether it went out in full.

    The download is claimed before the first byte (so parallel requests get one file); a
    client that goes away before the last byte was handed to the server gets the download
    back once (`exports.finish_download`), so a dropped connection does not lose an export.
    """

    CHUNK = 64 * 1024

    def __init__(self, path: Path, runtime: Runtime, actor: Actor, export_id: int) -> None:
        self.path, self.runtime, self.actor, self.export_id = path, runtime, actor, export_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        sent, delivered = 0, False
        try:
            size = self.path.stat().st_size
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/csv; charset=utf-8"),
                        (b"content-length", str(size).encode()),
                        (
                            b"content-disposition",
                            f'attachment; filename="{self.path.name}"'.encode(),
                        ),
                        (b"cache-control", b"no-store"),
                    ],
                }
            )
            with self.path.open("rb") as file:
                while chunk := file.read(self.CHUNK):
                    if gone.is_set():
                        break
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    sent += len(chunk)
                    await asyncio.sleep(0)  # let the watcher see a disconnect
                else:
                    if not gone.is_set():
                        await send({"type": "http.response.body", "body": b""})
                        delivered = True
        except OSError:
            log.warning("download interrupted", extra={"export_id": self.export_id})
        finally:
            watcher.cancel()
            await self._finish(delivered=delivered and not gone.is_set(), sent=sent)

    async def _finish(self, *, delivered: bool, sent: int) -> None:
        async with self.runtime.sessions() as session:
            await exports.finish_download(
                session=session,
                actor=self.actor,
                export_id=self.export_id,
                delivered=delivered,
                sent_bytes=sent,
                now=utcnow(),
            )
            await session.commit()
