"""The quarterly access report, for holders of `report:access`."""

from __future__ import annotations

import base64
import datetime as dt
from enum import Enum

import strawberry
from strawberry.types import Info

from api.context import RequestContext
from domain.db import utcnow
from domain.reports import access as access_report


@strawberry.enum(description="How the access report is rendered.")
class ReportFormat(Enum):
    JSON = strawberry.enum_value("json", description="One JSON document (UTF-8).")
    CSV = strawberry.enum_value(
        "csv",
        description=(
            "A zip of one CSV file per table (UTF-8 with BOM, formula cells neutralised), "
            "base64-encoded in `content`."
        ),
    )
    HTML = strawberry.enum_value(
        "html",
        description="A printable document: findings first, keep/revoke column, charts.",
    )


@strawberry.type(description="A rendered access report; the same inputs give the same bytes.")
class AccessReport:
    quarter: str
    period_start: dt.datetime
    period_end: dt.datetime
    through_seq: int = strawberry.field(description="Audit events up to this sequence number.")
    format: ReportFormat
    sha256: str = strawberry.field(description="SHA-256 of the file's bytes (after decoding).")
    content: str = strawberry.field(
        description="The file: text for JSON and HTML, base64 for CSV (see contentEncoding)."
    )
    content_encoding: str = strawberry.field(description='"utf-8" or "base64".')
    media_type: str = strawberry.field(description="The file's media type.")
    filename: str = strawberry.field(
        description='A name to save it under, e.g. "access-2026-Q3.zip".'
    )


@strawberry.type
class ReportQueries:
    @strawberry.field(description='Who could see what, who did, what looked wrong ("2026-Q3").')
    async def access_report(
        self,
        info: Info[RequestContext, None],
        quarter: str,
        format: ReportFormat = ReportFormat.JSON,
        through_seq: int | None = None,
    ) -> AccessReport | None:
        ctx = info.context
        actor = ctx.require_actor()
        runtime = ctx.runtime
        async with ctx.write(
            action="report.access",
            operation="accessReport",
            target_type="Report",
            target_id=quarter[:64],
        ) as session:
            content, digest, report = await access_report.generate(
                session=session,
                who=actor,
                pdp=runtime.pdp,
                key=runtime.checkpoint_key,
                quarter=quarter,
                fmt=format.value,
                settings=runtime.settings.report,
                now=utcnow(),
                through_seq=through_seq,
                operation="accessReport",
            )
        binary = access_report.EXTENSIONS[format.value] == "zip"
        return AccessReport(
            quarter=report["quarter"],
            period_start=dt.datetime.fromisoformat(report["periodStart"]),
            period_end=dt.datetime.fromisoformat(report["periodEnd"]),
            through_seq=report["throughSeq"],
            format=format,
            sha256=digest,
            content=(
                base64.b64encode(content).decode("ascii") if binary else content.decode("utf-8")
            ),
            content_encoding="base64" if binary else "utf-8",
            media_type=access_report.MEDIA_TYPES[format.value],
            filename=f"access-{report['quarter']}.{access_report.EXTENSIONS[format.value]}",
        )
