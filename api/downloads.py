"""GET /exports/{id}/download?token=…: the one download of a produced export."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from api.auth.authenticate import authenticate
from api.errors import DENIAL_CODES, error_code
from api.runtime import Runtime
from domain.actor import Actor, Origin
from domain.audit import service as audit
from domain.audit.service import Outcome, Subject
from domain.db import utcnow
from domain.errors import DomainError, NotFound
from domain.exports import service as exports

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
        origin = Origin(
            client_ip=request.state.client_ip,
            peer_ip=request.state.peer_ip,
            user_agent=request.headers.get("user-agent"),
            request_id=request.state.request_id,
        )
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
                if not raw_id.isdigit() or len(raw_id) > 18:
                    raise NotFound("no such export")
                path = await exports.open_download(
                    session=session,
                    actor=actor,
                    export_id=int(raw_id),
                    token=token,
                    settings=runtime.exports,
                    now=utcnow(),
                )
                await session.commit()
            except Exception as exc:
                await session.rollback()
                code = error_code(exc)
                await audit.record(
                    session=session,
                    who=actor if actor is not None else Subject(None, None, (), origin),
                    action="export.download",
                    operation="download",
                    target_type="ExportRequest",
                    target_id=raw_id[:64],
                    outcome=Outcome.DENIED if code in DENIAL_CODES else Outcome.FAILURE,
                    code=code,
                    details={"message": exc.message} if isinstance(exc, DomainError) else {},
                )
                await session.commit()
                if not isinstance(exc, DomainError):
                    log.exception("download failed", extra={"request_id": origin.request_id})
                    return _error("INTERNAL", "internal error", origin.request_id or "")
                return _error(code, exc.message, origin.request_id or "")
        return FileResponse(
            path,
            media_type="text/csv; charset=utf-8",
            filename=path.name,
            headers={"cache-control": "no-store"},
        )

    return download
