"""The quarterly access report: who could see what, who actually did, and what looked wrong.

Built from the audit log, the accounts and the policy, through one audit sequence number, so
the same inputs give byte-identical output whenever it is generated again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import io
import json
import re
import statistics
import zoneinfo
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.access import (
    RESTRICTED_FIELDS,
    SENSITIVE_FIELDS,
    Action,
    FieldAccess,
    PolicyDecisionPoint,
)
from domain.actor import Actor
from domain.approvals.models import ApprovalRequest
from domain.audit import service as audit
from domain.audit.keys import CheckpointKey
from domain.audit.models import AuditCheckpoint, AuditEvent, AuditHead
from domain.audit.service import Subject
from domain.csvfiles import SafeWriter
from domain.errors import BadInput
from domain.exports.models import ExportRequest
from domain.users.models import User

QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")
DORMANT_AFTER = dt.timedelta(days=90)

# Which recorded act shows that an operation grant was used.
ACTION_OF_EVENT = {
    "order.transition": Action.ORDER_TRANSITION,
    "approval.request.price_change": Action.PRICE_REQUEST,
    "approval.request.refund": Action.REFUND_REQUEST,
    "approval.approve": Action.APPROVAL_SIGN,
    "export.request": Action.EXPORT_REQUEST,
    "audit.read": Action.AUDIT_READ,
    "report.access": Action.REPORT_ACCESS,
    "user.create": Action.USER_ADMIN,
    "key.register": Action.APPROVAL_SIGN,
}
# A request right and the right that approves it: holding both is a separation-of-duty finding.
CONFLICTING = (
    (Action.PRICE_REQUEST, Action.APPROVAL_SIGN),
    (Action.REFUND_REQUEST, Action.APPROVAL_SIGN),
    (Action.EXPORT_REQUEST, Action.EXPORT_APPROVE_L1),
    (Action.EXPORT_REQUEST, Action.EXPORT_APPROVE_L2),
)


@dataclass(frozen=True)
class ReportSettings:
    timezone: zoneinfo.ZoneInfo
    business_start: dt.time = dt.time(9, 0)
    business_end: dt.time = dt.time(19, 0)
    business_days: frozenset[int] = frozenset(range(5))  # Monday..Friday
    anomaly_multiple: float = 3.0
    mutual_approvals: int = 2  # approvals each way that make a pair "repeatedly"


@dataclass(frozen=True)
class Period:
    quarter: str
    start: dt.datetime  # inclusive, business timezone
    end: dt.datetime  # exclusive


def parse_quarter(quarter: str, timezone: zoneinfo.ZoneInfo, now: dt.datetime) -> Period:
    match = QUARTER.match(quarter.strip())
    if not match:
        raise BadInput('quarter is written like "2026-Q3"')
    year, q = int(match.group(1)), int(match.group(2))
    if not 2000 <= year <= 2999:
        raise BadInput("quarter year out of range")
    start = dt.datetime(year, 3 * q - 2, 1, tzinfo=timezone)
    end = dt.datetime(year + (q == 4), 1 if q == 4 else 3 * q + 1, 1, tzinfo=timezone)
    if start > now:
        raise BadInput(f"{quarter} has not begun")
    return Period(quarter.strip(), start, end)


def _local(value: dt.datetime, timezone: zoneinfo.ZoneInfo) -> str:
    return value.astimezone(timezone).isoformat(timespec="seconds")


def off_hours(value: dt.datetime, settings: ReportSettings) -> bool:
    local = value.astimezone(settings.timezone)
    in_hours = settings.business_start <= local.time() < settings.business_end
    return local.weekday() not in settings.business_days or not in_hours


async def build(
    *,
    session: AsyncSession,
    pdp: PolicyDecisionPoint,
    key: CheckpointKey,
    quarter: str,
    settings: ReportSettings,
    now: dt.datetime,
    through_seq: int | None = None,
) -> dict[str, Any]:
    period = parse_quarter(quarter, settings.timezone, now)
    head = await session.scalar(select(AuditHead.seq))
    through = head if through_seq is None else through_seq
    if through is None or not 0 <= through <= (head or 0):
        raise BadInput(f"throughSeq must be between 0 and {head}")

    users = list((await session.scalars(select(User).order_by(User.username))).all())
    events = [
        e
        for e in (
            await session.scalars(
                select(AuditEvent).where(AuditEvent.seq <= through).order_by(AuditEvent.seq)
            )
        ).all()
    ]
    in_quarter = [e for e in events if period.start <= e.at < period.end]
    by_user: dict[int, list[AuditEvent]] = defaultdict(list)
    for event in in_quarter:
        if event.actor_id is not None:
            by_user[event.actor_id].append(event)

    # --- population
    last_login: dict[int, dt.datetime] = {}
    seen_ips: dict[int, set[str]] = defaultdict(set)
    new_ip_logins: list[dict[str, Any]] = []
    for event in events:
        if event.action != "auth.login" or event.outcome != "success" or event.actor_id is None:
            continue
        if event.at < period.end:
            last_login[event.actor_id] = event.at
        ip = event.client_ip or "unknown"
        if period.start <= event.at < period.end and ip not in seen_ips[event.actor_id]:
            new_ip_logins.append(
                {
                    "account": event.username,
                    "at": _local(event.at, settings.timezone),
                    "ip": ip,
                    "firstEver": not seen_ips[event.actor_id],
                }
            )
        seen_ips[event.actor_id].add(ip)
    population = []
    for user in users:
        login = last_login.get(user.id)
        locked = user.locked_until is not None and user.locked_until > now
        population.append(
            {
                "account": user.username,
                "roles": list(user.roles),
                "status": "disabled" if user.disabled else "locked" if locked else "active",
                "lastLogin": _local(login, settings.timezone) if login else None,
                # An account created during the quarter has not had the time to be dormant.
                "dormant": user.created_at < period.start
                and (login is None or login < period.end - DORMANT_AFTER),
            }
        )

    # --- granted versus used
    grants = []
    for user in users:
        profile = pdp.profile(user.roles)
        mine = by_user.get(user.id, [])
        used_ops = {
            ACTION_OF_EVENT[e.action]
            for e in mine
            if e.outcome == "success" and e.action in ACTION_OF_EVENT
        }
        for e in mine:
            if e.action == "export.approve" and e.outcome == "success":
                level = json.loads(e.details).get("level")
                used_ops.add(Action.EXPORT_APPROVE_L1 if level == 1 else Action.EXPORT_APPROVE_L2)
        used_fields = set()
        for e in mine:
            if e.action == "data.read":
                used_fields |= set(json.loads(e.details).get("returned", {}))
        granted_ops = sorted(str(a) for a in profile.actions)
        granted_fields = sorted(
            c for c in SENSITIVE_FIELDS if profile.field_access(c) is not FieldAccess.NONE
        )
        grants.append(
            {
                "account": user.username,
                "operationsGranted": granted_ops,
                "operationsUsed": sorted(str(a) for a in used_ops if str(a) in granted_ops),
                "fieldsGranted": granted_fields,
                "fieldsUsed": sorted(used_fields & set(granted_fields)),
                "unusedGrants": sorted(
                    [a for a in granted_ops if Action(a) not in used_ops]
                    + [c for c in granted_fields if c not in used_fields]
                ),
            }
        )

    # --- activity
    approvals_requested = dict(
        (await session.execute(select(ApprovalRequest.id, ApprovalRequest.requested_by_id))).all()
    )
    exports_requested = dict(
        (await session.execute(select(ExportRequest.id, ExportRequest.requested_by_id))).all()
    )
    activity = []
    for user in users:
        mine = by_user.get(user.id, [])
        records = Counter()
        for e in mine:
            if e.action == "data.read":
                for coordinate, seen in json.loads(e.details).get("returned", {}).items():
                    records[coordinate] += seen["records"]
        activity.append(
            {
                "account": user.username,
                "sensitiveRecordsRead": sum(records.values()),
                "restrictedRecordsRead": sum(
                    n for c, n in records.items() if c in RESTRICTED_FIELDS
                ),
                "exportsRequested": sum(
                    e.action == "export.request" and e.outcome == "success" for e in mine
                ),
                "exportsApproved": sum(
                    e.action == "export.approve" and e.outcome == "success" for e in mine
                ),
                "signaturesMade": sum(
                    e.action == "approval.approve" and e.outcome == "success" for e in mine
                ),
                "deniedAttempts": sum(e.outcome == "denied" for e in mine),
                "loginsFromNewIps": sum(1 for x in new_ip_logins if x["account"] == user.username),
            }
        )
    denied = [
        {
            "account": e.username,
            "at": _local(e.at, settings.timezone),
            "action": e.action,
            "code": e.code,
            "ip": e.client_ip,
        }
        for e in in_quarter
        if e.outcome == "denied" and e.username
    ]
    after_hours = [
        {
            "account": e.username,
            "at": _local(e.at, settings.timezone),
            "action": e.action,
            "ip": e.client_ip,
        }
        for e in in_quarter
        if e.actor_id is not None and off_hours(e.at, settings)
    ]

    # --- separation of duties
    sod_accounts = []
    for user in users:
        actions = pdp.profile(user.roles).actions
        for request_right, approve_right in CONFLICTING:
            if request_right in actions and approve_right in actions:
                sod_accounts.append(
                    {
                        "account": user.username,
                        "mayRequest": str(request_right),
                        "mayApprove": str(approve_right),
                    }
                )
    # One person with several accounts: separation of duties compares persons (employee id),
    # and reviewers should see every such person.
    accounts_of: dict[str, list[str]] = {}
    for user in users:
        if user.employee_id:
            accounts_of.setdefault(user.employee_id, []).append(user.username)
    shared_persons = [
        {"employeeId": person, "accounts": sorted(names_)}
        for person, names_ in sorted(accounts_of.items())
        if len(names_) > 1
    ]
    names = {u.id: u.username for u in users}
    approved_for: Counter[tuple[str, str]] = Counter()
    for e in in_quarter:
        if e.outcome != "success" or e.actor_id is None or e.target_id is None:
            continue
        owner = None
        if e.action == "approval.approve":
            owner = approvals_requested.get(int(e.target_id))
        elif e.action == "export.approve":
            owner = exports_requested.get(int(e.target_id))
        if owner is not None:
            approved_for[(e.username or "", names.get(owner, "?"))] += 1
    mutual = []
    for (a, b), count in sorted(approved_for.items()):
        back = approved_for.get((b, a), 0)
        if a < b and count >= settings.mutual_approvals and back >= settings.mutual_approvals:
            mutual.append({"accounts": [a, b], "approvals": [count, back]})

    # --- anomalies: far above the median of people with the same role
    anomalies = []
    totals = {row["account"]: row for row in activity}
    for metric in ("sensitiveRecordsRead", "exportsRequested"):
        for role in sorted({r for u in users for r in u.roles}):
            holders = [u.username for u in users if role in u.roles]
            values = [totals[h][metric] for h in holders]
            median = statistics.median(values)
            threshold = settings.anomaly_multiple * max(median, 1)
            for holder, value in zip(holders, values, strict=True):
                if value > threshold:
                    anomalies.append(
                        {
                            "account": holder,
                            "role": role,
                            "metric": metric,
                            "value": value,
                            "roleMedian": median,
                            "multiple": settings.anomaly_multiple,
                        }
                    )

    # --- the chain
    chain = await audit.verify(session=session, key=key)
    quarter_events = [e.seq for e in in_quarter]
    checkpoint = await session.scalar(
        select(AuditCheckpoint)
        .where(AuditCheckpoint.created_at < period.end, AuditCheckpoint.seq <= through)
        .order_by(AuditCheckpoint.seq.desc())
        .limit(1)
    )
    bad = chain.first_bad_seq
    chain_section = {
        "verifiedThroughSeq": through,
        "ok": bad is None or bad > through,
        "firstBadSeq": bad if bad is not None and bad <= through else None,
        "eventsInQuarter": len(quarter_events),
        "firstSeqInQuarter": quarter_events[0] if quarter_events else None,
        "lastSeqInQuarter": quarter_events[-1] if quarter_events else None,
        "lastCheckpoint": (
            {
                "seq": checkpoint.seq,
                "hash": checkpoint.hash,
                "createdAt": _local(checkpoint.created_at, settings.timezone),
            }
            if checkpoint
            else None
        ),
    }
    accounts_count = await session.scalar(select(func.count()).select_from(User))
    return {
        "report": "ordergate quarterly access report",
        "quarter": period.quarter,
        "periodStart": period.start.isoformat(),
        "periodEnd": period.end.isoformat(),
        "throughSeq": through,
        "timezone": str(settings.timezone),
        "businessHours": f"{settings.business_start:%H:%M}-{settings.business_end:%H:%M}",
        "summary": {
            "accounts": accounts_count,
            "dormantAccounts": sum(p["dormant"] for p in population),
            "lockedOrDisabled": sum(p["status"] != "active" for p in population),
            "unusedGrants": sum(len(g["unusedGrants"]) for g in grants),
            "sensitiveRecordsRead": sum(a["sensitiveRecordsRead"] for a in activity),
            "deniedAttempts": len(denied),
            "offHoursEvents": len(after_hours),
            "separationOfDutyFindings": len(sod_accounts) + len(mutual) + len(shared_persons),
            "anomalies": len(anomalies),
            "chainOk": chain_section["ok"],
        },
        "population": population,
        "grants": grants,
        "activity": activity,
        "newIpLogins": new_ip_logins,
        "deniedAttempts": denied,
        "offHours": after_hours,
        "separationOfDuties": {
            "accountsHoldingBoth": sod_accounts,
            "mutualApprovers": mutual,
            "personsWithSeveralAccounts": shared_persons,
        },
        "anomalies": anomalies,
        "auditChain": chain_section,
    }


# ---- rendering --------------------------------------------------------------------------------


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def _tables(report: dict[str, Any]) -> Iterable[tuple[str, list[dict[str, Any]]]]:
    yield "Summary", [report["summary"]]
    yield "Population", report["population"]
    yield "Granted versus used", report["grants"]
    yield "Activity", report["activity"]
    yield "Logins from new IPs", report["newIpLogins"]
    yield "Denied attempts", report["deniedAttempts"]
    yield "Off-hours activity", report["offHours"]
    yield (
        "Accounts holding a request and its approval right",
        report["separationOfDuties"]["accountsHoldingBoth"],
    )
    yield "Pairs approving each other", report["separationOfDuties"]["mutualApprovers"]
    yield (
        "Persons with several accounts",
        report["separationOfDuties"]["personsWithSeveralAccounts"],
    )
    yield "Anomalies", report["anomalies"]
    yield "Audit chain", [report["auditChain"]]


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if value is None:
        return ""
    return str(value)


def render_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = SafeWriter(out, lineterminator="\n")
    writer.writerow(
        [
            f"# {report['report']} {report['quarter']} "
            f"({report['periodStart']} to {report['periodEnd']}; audit through seq "
            f"{report['throughSeq']})"
        ]
    )
    for title, rows in _tables(report):
        writer.writerow([])
        writer.writerow([f"## {title}"])
        if rows:
            columns = list(rows[0])
            writer.writerow(columns)
            for row in rows:
                writer.writerow([_cell(row.get(c)) for c in columns])
        else:
            writer.writerow(["(none)"])
    return out.getvalue()


def render_html(report: dict[str, Any]) -> str:
    esc = html.escape
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Access report {esc(report['quarter'])}</title>",
        "<style>body{font-family:system-ui,'PingFang SC','Microsoft YaHei',sans-serif;"
        "margin:2em;color:#222}table{border-collapse:collapse;margin:0 0 1.5em;font-size:13px}"
        "th,td{border:1px solid #bbb;padding:3px 6px;text-align:left;vertical-align:top}"
        "th{background:#eee}h2{margin-top:1.6em;page-break-after:avoid}"
        "tr{page-break-inside:avoid}.bad{color:#a00;font-weight:bold}</style></head><body>",
        f"<h1>Quarterly access report — {esc(report['quarter'])}</h1>",
        f"<p>{esc(report['periodStart'])} to {esc(report['periodEnd'])} "
        f"({esc(report['timezone'])});"
        f" audit log through sequence number {report['throughSeq']}; business hours "
        f"{esc(report['businessHours'])}.</p>",
    ]
    summary = report["summary"]
    chain_ok = summary["chainOk"]
    parts.append("<h2>Summary</h2><ul>")
    for key, value in summary.items():
        css = ' class="bad"' if (key == "chainOk" and not value) else ""
        parts.append(f"<li{css}>{esc(key)}: {esc(_cell(value))}</li>")
    parts.append("</ul>")
    if not chain_ok:
        parts.append('<p class="bad">The audit chain did not verify: see the last table.</p>')
    for title, rows in list(_tables(report))[1:]:
        parts.append(f"<h2>{esc(title)}</h2>")
        if not rows:
            parts.append("<p>(none)</p>")
            continue
        columns = list(rows[0])
        parts.append(
            "<table><thead><tr>"
            + "".join(f"<th>{esc(c)}</th>" for c in columns)
            + "</tr></thead><tbody>"
        )
        for row in rows:
            parts.append(
                "<tr>" + "".join(f"<td>{esc(_cell(row.get(c)))}</td>" for c in columns) + "</tr>"
            )
        parts.append("</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


RENDERERS = {"json": render_json, "csv": render_csv, "html": render_html}


async def generate(
    *,
    session: AsyncSession,
    who: Actor | Subject,
    pdp: PolicyDecisionPoint,
    key: CheckpointKey,
    quarter: str,
    fmt: str,
    settings: ReportSettings,
    now: dt.datetime,
    through_seq: int | None = None,
    operation: str,
) -> tuple[str, str, dict[str, Any]]:
    """Build and render the report and record that it was pulled, with its hash.
    Returns (content, sha256, report)."""
    if isinstance(who, Actor):
        who.access.require(Action.REPORT_ACCESS)
    if fmt not in RENDERERS:
        raise BadInput(f"format is one of {', '.join(RENDERERS)}")
    report = await build(
        session=session,
        pdp=pdp,
        key=key,
        quarter=quarter,
        settings=settings,
        now=now,
        through_seq=through_seq,
    )
    content = RENDERERS[fmt](report)
    digest = hashlib.sha256(content.encode()).hexdigest()
    await audit.record(
        session=session,
        who=who,
        action="report.access",
        operation=operation,
        target_type="Report",
        target_id=report["quarter"],
        at=now,
        details={
            "quarter": report["quarter"],
            "format": fmt,
            "sha256": digest,
            "throughSeq": report["throughSeq"],
        },
    )
    return content, digest, report
