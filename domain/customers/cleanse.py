"""The quarterly cleanse: re-check every customer's contact forms, and list what needs a person.

- Phones and emails are validated again with the current libphonenumber metadata (number
  ranges change), so `phoneValid` and `email_valid` stay true to today's rules. An invalid
  number is flagged, never deleted.
- The report lists the open merge candidates, customers with an invalid phone, and incomplete
  records (no valid phone, no valid email, or no address), by id and reason — no contact
  values, so it can be mailed around.
- Customer completeness (valid phone, address and email / all customers) is computed here in
  SQL; the KPI reads the same function.

`ordergate customers cleanse --quarter 2026-Q4` runs it by hand; the worker runs it on the
first day of each quarter (business timezone) and hands the summary to operations as a task.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import zoneinfo
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.audit import service as audit
from domain.audit.service import Subject
from domain.csvfiles import SafeWriter
from domain.customers.models import (
    Address,
    CandidateStatus,
    Customer,
    MatchCandidate,
    contact_columns,
)
from domain.reports.access import parse_quarter
from domain.tasks import service as tasks

CHUNK = 2000


@dataclass(frozen=True)
class Completeness:
    complete: int
    total: int

    @property
    def ratio(self) -> float:
        return self.complete / self.total if self.total else 1.0


def _has_address() -> Any:
    return exists().where(Address.customer_id == Customer.id).correlate(Customer)


def complete_condition() -> Any:
    """A customer with a valid phone, a valid email and an address."""
    return and_(Customer.phone_valid.is_(True), Customer.email_valid.is_(True), _has_address())


async def completeness(
    session: AsyncSession, *, created_before: dt.datetime | None = None
) -> Completeness:
    """Complete customers / all customers (records merged away are not customers)."""
    stmt = select(
        func.count(),
        func.coalesce(func.sum(case((complete_condition(), 1), else_=0)), 0),
    ).where(Customer.merged_into_id.is_(None))
    if created_before is not None:
        stmt = stmt.where(Customer.created_at < created_before)
    total, complete = (await session.execute(stmt)).one()
    return Completeness(int(complete), int(total))


async def revalidate(session: AsyncSession) -> int:
    """Recompute every customer's derived contact forms; returns how many changed."""
    changed = 0
    after = 0
    while rows := (
        await session.execute(
            select(
                Customer.id,
                Customer.phone,
                Customer.email,
                Customer.phone_e164,
                Customer.phone_valid,
                Customer.email_valid,
            )
            .where(Customer.id > after)
            .order_by(Customer.id)
            .limit(CHUNK)
        )
    ).all():
        for row in rows:
            fresh = contact_columns(phone=row.phone, email=row.email)
            if (fresh["phone_e164"], fresh["phone_valid"], fresh["email_valid"]) != (
                row.phone_e164,
                row.phone_valid,
                row.email_valid,
            ):
                await session.execute(
                    update(Customer)
                    .where(Customer.id == row.id)
                    .values(
                        phone_e164=fresh["phone_e164"],
                        phone_valid=fresh["phone_valid"],
                        email_valid=fresh["email_valid"],
                    )
                    .execution_options(synchronize_session=False)
                )
                changed += 1
        after = rows[-1].id
    return changed


async def run(
    *,
    session: AsyncSession,
    who: Subject,
    quarter: str,
    timezone: zoneinfo.ZoneInfo,
    now: dt.datetime,
) -> dict[str, Any]:
    period = parse_quarter(quarter, timezone, now)
    revalidated = await revalidate(session)
    active = Customer.merged_into_id.is_(None)
    merged = select(Customer.id).where(Customer.merged_into_id.is_not(None))
    candidates = [
        {"customers": [a, b], "score": score, "reasons": json.loads(reasons)}
        for a, b, score, reasons in (
            await session.execute(
                select(
                    MatchCandidate.customer_id,
                    MatchCandidate.other_id,
                    MatchCandidate.score,
                    MatchCandidate.reasons,
                )
                .where(
                    MatchCandidate.status == CandidateStatus.OPEN,
                    MatchCandidate.customer_id.not_in(merged),
                    MatchCandidate.other_id.not_in(merged),
                )
                .order_by(MatchCandidate.score.desc(), MatchCandidate.id)
            )
        ).all()
    ]
    invalid = [
        cid
        for (cid,) in (
            await session.execute(
                select(Customer.id)
                .where(active, Customer.phone_valid.is_(False))
                .order_by(Customer.id)
            )
        ).all()
    ]
    incomplete = []
    for cid, phone_valid, email_valid, has_address in (
        await session.execute(
            select(Customer.id, Customer.phone_valid, Customer.email_valid, _has_address())
            .where(active, ~complete_condition())
            .order_by(Customer.id)
        )
    ).all():
        missing = []
        if phone_valid is not True:
            missing.append("phone" if phone_valid is None else "valid phone")
        if email_valid is not True:
            missing.append("email" if email_valid is None else "valid email")
        if not has_address:
            missing.append("address")
        incomplete.append({"customer": cid, "missing": missing})
    score = await completeness(session)
    report = {
        "quarter": period.quarter,
        "generatedAt": now.isoformat(),
        "revalidated": revalidated,
        "customers": score.total,
        "complete": score.complete,
        "completeness": round(score.ratio, 4),
        "mergeCandidates": candidates,
        "invalidPhones": invalid,
        "incomplete": incomplete,
    }
    await audit.record(
        session=session,
        who=who,
        action="customers.cleanse",
        operation="cleanse",
        target_type="Customer",
        at=now,
        details={
            "quarter": period.quarter,
            "revalidated": revalidated,
            "mergeCandidates": len(candidates),
            "invalidPhones": len(invalid),
            "incomplete": len(incomplete),
            "completeness": report["completeness"],
        },
    )
    return report


async def hand_over(
    *, session: AsyncSession, who: Subject, report: dict[str, Any], now: dt.datetime
) -> None:
    """The scheduled run's summary as a task for operations, once per quarter."""
    await tasks.raise_task(
        session,
        kind="CUSTOMER_CLEANSE",
        title=(
            f"Customer cleanse {report['quarter']}: {len(report['mergeCandidates'])} possible "
            f"duplicates, {len(report['invalidPhones'])} invalid phones, "
            f"{len(report['incomplete'])} incomplete records"
        ),
        details={
            "quarter": report["quarter"],
            "mergeCandidates": len(report["mergeCandidates"]),
            "invalidPhones": len(report["invalidPhones"]),
            "incomplete": len(report["incomplete"]),
            "completeness": report["completeness"],
        },
        by=who,
        assignee_role="ops",
        dedupe_key=f"customer-cleanse:{report['quarter']}",
        now=now,
    )


def render_csv(report: dict[str, Any]) -> str:
    """One row per finding: kind, customer ids, detail. BOM first, formulas neutralised."""
    out = io.StringIO()
    writer = SafeWriter(out, lineterminator="\n")
    writer.writerow(["finding", "customers", "detail"])
    for c in report["mergeCandidates"]:
        writer.writerow(
            [
                "merge candidate",
                " ".join(map(str, c["customers"])),
                f"{c['score']}: " + "; ".join(c["reasons"]),
            ]
        )
    for cid in report["invalidPhones"]:
        writer.writerow(["invalid phone", cid, "flagged; not deleted"])
    for row in report["incomplete"]:
        writer.writerow(["incomplete", row["customer"], "missing " + ", ".join(row["missing"])])
    writer.writerow(
        [
            "completeness",
            report["customers"],
            f"{report['complete']} of {report['customers']} complete "
            f"({report['completeness']:.2%})",
        ]
    )
    return out.getvalue()
