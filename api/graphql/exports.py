"""Data exports after two distinct approvals."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.context import RequestContext
from api.graphql.projection import Projection, attr
from api.graphql.relay import Connection, Node, global_id, parse_id, selects
from api.runtime import Runtime
from domain.access import AccessProfile, FieldAccess
from domain.db import utcnow
from domain.disclosure import visible
from domain.errors import BadInput
from domain.exports import models
from domain.exports import service as exports

ExportEntity = strawberry.enum(models.ExportEntity, name="ExportEntity")
ExportStatus = strawberry.enum(models.ExportStatus, name="ExportStatus")


@strawberry.type(description="A request to export data, its two approvals and its one download.")
class ExportRequest(Node):
    entity: ExportEntity | None
    filter: JSON | None
    fields: list[str] | None
    reason: str | None
    status: ExportStatus | None
    requested_by: str | None
    expected_rows: int | None = strawberry.field(description="Rows the scope matched when asked.")
    scope_digest: str | None = strawberry.field(description="SHA-256 of entity, filter, fields.")
    created_at: dt.datetime | None
    expires_at: dt.datetime | None
    approved_l1_by: str | None = strawberry.field(name="approvedL1By")
    approved_l1_at: dt.datetime | None = strawberry.field(name="approvedL1At")
    approved_l2_by: str | None = strawberry.field(name="approvedL2By")
    approved_l2_at: dt.datetime | None = strawberry.field(name="approvedL2At")
    rejected_by: str | None
    rejection_reason: str | None
    row_count: int | None
    sha256: str | None
    produced_at: dt.datetime | None
    failure_reason: str | None = strawberry.field(
        description="Why producing the file failed, when status is FAILED (after its retries)."
    )
    download_url: str | None = strawberry.field(
        description="For the requester only, once, until downloadExpiresAt."
    )
    download_expires_at: dt.datetime | None
    downloaded_at: dt.datetime | None


def _user(relation: str) -> Any:
    return lambda m, _a: getattr(m, relation).username if getattr(m, relation) else None


def export_request(
    model: models.ExportRequest, access: AccessProfile, *, viewer_id: int | None, runtime: Runtime
) -> ExportRequest:
    values = EXPORT_REQUEST(model, access)
    # The link carries a secret: only its requester ever sees it, and only while it works.
    values["download_url"] = (
        exports.download_path(model, runtime.exports.link_secret)
        if access.field_access("ExportRequest.downloadUrl") is FieldAccess.FULL
        and model.requested_by_id == viewer_id
        and model.status is models.ExportStatus.READY
        and model.download_expires_at is not None
        and model.download_expires_at > utcnow()
        else None
    )
    return ExportRequest(**values)


EXPORT_REQUEST = Projection.of(
    "ExportRequest",
    names={
        "approved_l1_by": "approvedL1By",
        "approved_l1_at": "approvedL1At",
        "approved_l2_by": "approvedL2By",
        "approved_l2_at": "approvedL2At",
    },
    id=lambda m, _a: global_id("ExportRequest", m.id),
    entity=attr("entity"),
    filter=lambda m, a: visible(json.loads(m.filter), a),
    fields=lambda m, _a: json.loads(m.fields),
    reason=attr("reason"),
    status=attr("status"),
    requested_by=_user("requested_by"),
    expected_rows=attr("expected_rows"),
    scope_digest=attr("scope_digest"),
    created_at=attr("created_at"),
    expires_at=attr("expires_at"),
    approved_l1_by=_user("l1_by"),
    approved_l1_at=attr("l1_at"),
    approved_l2_by=_user("l2_by"),
    approved_l2_at=attr("l2_at"),
    rejected_by=_user("rejected_by"),
    rejection_reason=attr("rejection_reason"),
    row_count=attr("row_count"),
    sha256=attr("file_sha256"),
    produced_at=attr("produced_at"),
    failure_reason=attr("failure_reason"),
    download_expires_at=attr("download_expires_at"),
    downloaded_at=attr("downloaded_at"),
)


def _shown(ctx: RequestContext, model: models.ExportRequest) -> ExportRequest:
    actor = ctx.require_actor()
    return export_request(model, actor.access, viewer_id=actor.user_id, runtime=ctx.runtime)


@strawberry.input(
    description="What to export. `filter` uses the names of that entity's query filter."
)
class ExportInput:
    entity: ExportEntity
    fields: list[str]
    reason: str
    filter: JSON | None = None


@strawberry.type
class ExportQueries:
    @strawberry.field(description="Approvers of either level see every request; others their own.")
    async def export_requests(
        self,
        info: Info[RequestContext, None],
        status: ExportStatus | None = None,
        first: int | None = 20,
        after: str | None = None,
    ) -> Connection[ExportRequest] | None:
        ctx = info.context
        actor = ctx.require_actor()
        actor.access.require_full("ExportRequest.id")
        async with ctx.read() as session:
            page = await exports.list_exports(
                session=session,
                actor=actor,
                status=status,
                first=first,
                after=after,
                want_total=selects(info, "totalCount"),
            )
        return Connection.from_page(
            page,
            lambda r: _shown(ctx, r),
        )

    @strawberry.field
    async def export_request(
        self,
        info: Info[RequestContext, None],
        id: strawberry.ID,
    ) -> ExportRequest | None:
        ctx = info.context
        actor = ctx.require_actor()
        actor.access.require_full("ExportRequest.id")
        async with ctx.read() as session:
            model = await exports.get_export(
                session=session, actor=actor, export_id=parse_id(id, "export request")
            )
        return _shown(ctx, model)


@strawberry.type
class ExportMutations:
    @strawberry.mutation(description="Ask for an export; it needs two approvals from two others.")
    async def request_export(
        self,
        info: Info[RequestContext, None],
        input: ExportInput,
    ) -> ExportRequest | None:
        ctx = info.context
        actor = ctx.require_actor()
        if input.filter is not None and not isinstance(input.filter, dict):
            raise BadInput("filter is an object")
        async with ctx.write(
            action="export.request", operation="requestExport", target_type="ExportRequest"
        ) as session:
            model = await exports.request_export(
                session=session,
                actor=actor,
                entity=models.ExportEntity(input.entity),
                filter=input.filter,
                fields=input.fields,
                reason=input.reason,
                now=utcnow(),
            )
            return _shown(ctx, model)

    @strawberry.mutation(description="Approve at the next level: L1 first, then L2.")
    async def approve_export(
        self,
        info: Info[RequestContext, None],
        id: strawberry.ID,
    ) -> ExportRequest | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="export.approve",
            operation="approveExport",
            target_type="ExportRequest",
            target_id=id,
        ) as session:
            model = await exports.approve_export(
                session=session,
                actor=actor,
                export_id=parse_id(id, "export request"),
                now=utcnow(),
            )
            result = _shown(ctx, model)
        if model.status is models.ExportStatus.APPROVED:
            ctx.runtime.spawn(produce_export(ctx.runtime, model.id))
        return result

    @strawberry.mutation(description="Reject at the current level; final.")
    async def reject_export(
        self,
        info: Info[RequestContext, None],
        id: strawberry.ID,
        reason: str,
    ) -> ExportRequest | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="export.reject",
            operation="rejectExport",
            target_type="ExportRequest",
            target_id=id,
        ) as session:
            model = await exports.reject_export(
                session=session,
                actor=actor,
                export_id=parse_id(id, "export request"),
                reason=reason,
                now=utcnow(),
            )
            return _shown(ctx, model)


async def produce_export(runtime: Runtime, export_id: int) -> None:
    await exports.produce(
        sessions=runtime.sessions,
        export_id=export_id,
        pdp=runtime.pdp,
        settings=runtime.exports,
        now=runtime.clock(),
    )
