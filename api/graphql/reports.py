"""The quarterly access report, for holders of `report:access`."""

from __future__ import annotations

import datetime as dt
from enum import Enum

import strawberry
from strawberry.types import Info

from api.context import RequestContext
from domain.db import utcnow
from domain.reports import access as access_report


@strawberry.enum
class ReportFormat(Enum):
    JSON = "json"
    CSV = "csv"
    HTML = "html"


@strawberry.type(description="A rendered access report; the same inputs give the same bytes.")
class AccessReport:
    quarter: str
    period_start: dt.datetime
    period_end: dt.datetime
    through_seq: int = strawberry.field(description="Audit events up to this sequence number.")
    format: ReportFormat
    sha256: str
    content: str


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
        return AccessReport(
            quarter=report["quarter"],
            period_start=dt.datetime.fromisoformat(report["periodStart"]),
            period_end=dt.datetime.fromisoformat(report["periodEnd"]),
            through_seq=report["throughSeq"],
            format=format,
            sha256=digest,
            content=content,
        )
