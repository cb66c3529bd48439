"""GET /exports/{id}/download?token=…: the one download of a produced export."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from api.auth.authenticate import authenticate
from api.context import origin_of, record_failure
from api.errors import error_code
from api.runtime import Runtime
from domain.actor import Actor
from domain.audit.service import Subject
from domain.db import utcnow
from domain.errors import BadInput, DomainError, NotFound
from domain.exports import service as exports
from domain.values import parse_int_id

log = logging.getLogger("ordergate.exports")

STATUS = {
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "CONFLICT": 410,
    "BAD_USER_INPUT": 400,
}


def _error(code: str, message: str, request_id: str) -> JSONResponse:
    body = {"errors": [{"message": message, "extensions": {"code": code}}]}
    if code == "INTERNAL":
        body["errors"][0]["extensions"]["requestId"] = request_id
    return JSONResponse(body, status_code=STATUS.get(code, 500))


def download_endpoint(runtime: Runtime):
    async def download(request: Request) -> Response:
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
        return FileResponse(
            path,
            media_type="text/csv; charset=utf-8",
            filename=path.name,
            headers={"cache-control": "no-store"},
        )

    return download
