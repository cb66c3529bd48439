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
import zipfile
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
    # One account sending orders of this many different customers to one address is a finding
    # (the seed's incident: goods redirected to an agent's relatives).
    same_address_customers: int = 3


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
                "addressChanges": sum(
                    e.action == "order.change_address" and e.outcome == "success" for e in mine
                ),
            }
        )
    # Sensitive records read per role and calendar month of the quarter (business timezone);
    # an account with several roles counts towards each of them.
    months = [
        (period.start.month + i, f"{period.start.year}-{period.start.month + i:02d}")
        for i in range(3)
    ]
    roles_of = {u.id: list(u.roles) for u in users}
    by_role_month: Counter[tuple[str, str]] = Counter()
    for e in in_quarter:
        if e.action != "data.read" or e.actor_id is None:
            continue
        month = f"{e.at.astimezone(settings.timezone):%Y-%m}"
        n = sum(seen["records"] for seen in json.loads(e.details).get("returned", {}).values())
        for role in roles_of.get(e.actor_id, ()):
            by_role_month[(role, month)] += n
    sensitive_by_role = [
        {"role": role, "month": month, "records": by_role_month[(role, month)]}
        for role in sorted({r for u in users for r in u.roles})
        for _, month in months
    ]
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
    for metric in ("sensitiveRecordsRead", "exportsRequested", "addressChanges"):
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

    # --- one address turning up on many customers' orders, changed by one account
    address_reuse = []
    for user in users:
        customers_at: dict[str, set[str]] = defaultdict(set)
        orders_at: Counter[str] = Counter()
        for e in by_user.get(user.id, []):
            if e.action != "order.change_address" or e.outcome != "success":
                continue
            details = json.loads(e.details)
            digest = details.get("addressDigest")
            if not digest:
                continue
            customer = details.get("customerId")
            customers_at[digest].add(f"c{customer}" if customer is not None else f"o{e.target_id}")
            orders_at[digest] += 1
        for digest in sorted(customers_at):
            if len(customers_at[digest]) >= settings.same_address_customers:
                address_reuse.append(
                    {
                        "account": user.username,
                        "address": digest[:16],
                        "customers": len(customers_at[digest]),
                        "orders": orders_at[digest],
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
            "anomalies": len(anomalies) + len(address_reuse),
            "addressChanges": sum(a["addressChanges"] for a in activity),
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
        "addressReuse": address_reuse,
        "sensitiveReadsByRole": sensitive_by_role,
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
    yield "One address on many customers' orders", report["addressReuse"]
    yield "Audit chain", [report["auditChain"]]


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if value is None:
        return ""
    return str(value)


# One file per table in the CSV form, in this order, each with a BOM and neutralised formulas.
CSV_FILES = (
    ("summary.csv", "Summary"),
    ("population.csv", "Population"),
    ("grants.csv", "Granted versus used"),
    ("activity.csv", "Activity"),
    ("new_ip_logins.csv", "Logins from new IPs"),
    ("denied_attempts.csv", "Denied attempts"),
    ("off_hours.csv", "Off-hours activity"),
    ("sod_accounts.csv", "Accounts holding a request and its approval right"),
    ("sod_mutual_approvers.csv", "Pairs approving each other"),
    ("sod_persons.csv", "Persons with several accounts"),
    ("anomalies.csv", "Anomalies"),
    ("address_reuse.csv", "One address on many customers' orders"),
    ("audit_chain.csv", "Audit chain"),
)
# A fixed time for every zip entry: the same report gives the same bytes.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _csv_table(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = SafeWriter(out, lineterminator="\n")
    if rows:
        columns = list(rows[0])
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in columns])
    else:
        writer.writerow(["(none)"])
    return out.getvalue().encode("utf-8")


def render_csv(report: dict[str, Any]) -> bytes:
    """A zip of one CSV per table (each filterable and pivotable on its own), plus a
    README naming the quarter, the period and the audit sequence number."""
    tables = dict(_tables(report))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:

        def add(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)

        add(
            "README.txt",
            (
                f"{report['report']} {report['quarter']}\n"
                f"{report['periodStart']} to {report['periodEnd']} ({report['timezone']})\n"
                f"audit log through sequence number {report['throughSeq']}\n\n"
                + "".join(f"{name}\t{title}\n" for name, title in CSV_FILES)
            ).encode("utf-8"),
        )
        for name, title in CSV_FILES:
            add(name, _csv_table(tables[title]))
    return buffer.getvalue()


# ---- the HTML document ------------------------------------------------------------------------

LABELS = {
    "account": "Account",
    "accounts": "Accounts",
    "roles": "Roles",
    "role": "Role",
    "status": "Status",
    "lastLogin": "Last login",
    "dormant": "Dormant (no login for 90 days)",
    "operationsGranted": "Operations granted",
    "operationsUsed": "Operations used",
    "fieldsGranted": "Sensitive fields granted",
    "fieldsUsed": "Sensitive fields read",
    "unusedGrants": "Granted but not used",
    "sensitiveRecordsRead": "Sensitive records read",
    "restrictedRecordsRead": "Restricted records read",
    "exportsRequested": "Exports requested",
    "exportsApproved": "Exports approved",
    "signaturesMade": "Approvals signed",
    "deniedAttempts": "Denied attempts",
    "loginsFromNewIps": "Logins from new addresses",
    "at": "When",
    "ip": "Client address",
    "firstEver": "First login ever",
    "action": "Act",
    "code": "Reason",
    "mayRequest": "May request",
    "mayApprove": "May approve",
    "approvals": "Approvals each way",
    "employeeId": "Employee id",
    "metric": "Measure",
    "value": "Value",
    "roleMedian": "Median of the role",
    "multiple": "Flagged above (times the median)",
    "verifiedThroughSeq": "Verified through event",
    "ok": "Chain intact",
    "firstBadSeq": "First broken event",
    "eventsInQuarter": "Events in the quarter",
    "firstSeqInQuarter": "First event of the quarter",
    "lastSeqInQuarter": "Last event of the quarter",
    "lastCheckpoint": "Last signed checkpoint",
    "dormantAccounts": "Dormant accounts",
    "lockedOrDisabled": "Locked or disabled accounts",
    "offHoursEvents": "Acts outside business hours",
    "separationOfDutyFindings": "Separation-of-duty findings",
    "anomalies": "Anomalies",
    "chainOk": "Audit chain intact",
    "addressChanges": "Shipping addresses changed",
    "address": "Address (digest)",
    "customers": "Different customers",
    "orders": "Orders changed",
}


def _label(key: str) -> str:
    return LABELS.get(key, key)


def _shown(key: str, value: Any) -> str:
    """A cell as an officer reads it: yes/no, "never" for no login, lists one per line."""
    if key == "lastLogin" and value is None:
        return "never"
    if key == "lastCheckpoint" and isinstance(value, dict):
        return f"event {value['seq']} at {value['createdAt']}"
    if key == "lastCheckpoint" and value is None:
        return "none"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else "—"
    if value is None:
        return "—"
    return _cell(value)


def findings(report: dict[str, Any]) -> list[tuple[str, str]]:
    """What needs an officer's action, most serious first: (severity, sentence)."""
    found: list[tuple[str, str]] = []
    chain = report["auditChain"]
    if not chain["ok"]:
        found.append(
            (
                "critical",
                f"The audit log does not verify: event {chain['firstBadSeq']} was altered or "
                "removed. Nothing below can be relied on until this is explained.",
            )
        )
    sod = report["separationOfDuties"]
    for row in sod["accountsHoldingBoth"]:
        found.append(
            (
                "high",
                f"{row['account']} may both request ({row['mayRequest']}) and approve "
                f"({row['mayApprove']}). Remove one of the two rights.",
            )
        )
    for row in sod["mutualApprovers"]:
        a, b = row["accounts"]
        found.append(
            (
                "high",
                f"{a} and {b} approve each other's requests ({row['approvals'][0]} and "
                f"{row['approvals'][1]} times this quarter).",
            )
        )
    for row in sod["personsWithSeveralAccounts"]:
        found.append(
            (
                "medium",
                f"Employee {row['employeeId']} holds several accounts: "
                f"{', '.join(row['accounts'])}.",
            )
        )
    for row in report["addressReuse"]:
        found.append(
            (
                "high",
                f"{row['account']} sent {row['orders']} orders of {row['customers']} different "
                f"customers to one address ({row['address']}). Check those orders and who "
                "received them.",
            )
        )
    for row in report["anomalies"]:
        found.append(
            (
                "medium",
                f"{row['account']} ({row['role']}): {_label(row['metric']).lower()} "
                f"{row['value']}, against a median of {row['roleMedian']} for the role.",
            )
        )
    for row in report["population"]:
        if row["dormant"] and row["status"] == "active":
            last = row["lastLogin"] or "never"
            found.append(
                (
                    "medium",
                    f"{row['account']} is active but dormant (last login: {last}). "
                    "Disable it or confirm it is needed.",
                )
            )
    unused = sum(len(g["unusedGrants"]) for g in report["grants"])
    if unused:
        found.append(
            (
                "review",
                f"{unused} grants were not used this quarter: mark each keep or revoke in "
                "“Grants under review”.",
            )
        )
    return found


def _svg_bars(title: str, bars: list[tuple[str, int]], *, colour: str = "#3465a4") -> str:
    """A horizontal bar chart as inline SVG (no script, no CDN): label, bar, value."""
    esc = html.escape
    width, label_w, row_h = 560, 170, 22
    top = max((v for _, v in bars), default=0) or 1
    height = 28 + row_h * len(bars)
    out = [
        f'<svg class="chart" role="img" aria-label="{esc(title)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="0" y="16" font-size="13" font-weight="bold">{esc(title)}</text>',
    ]
    for i, (label, value) in enumerate(bars):
        y = 26 + i * row_h
        w = round((width - label_w - 60) * value / top)
        out.append(f'<text x="0" y="{y + 14}" font-size="12">{esc(label)}</text>')
        out.append(
            f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{row_h - 8}" fill="{colour}"/>'
        )
        out.append(f'<text x="{label_w + w + 6}" y="{y + 14}" font-size="12">{value}</text>')
    out.append("</svg>")
    return "".join(out)


_CSS = """
body{font-family:system-ui,'PingFang SC','Microsoft YaHei',sans-serif;margin:2em;color:#222;
  font-size:13px}
h1{font-size:20px;margin:0 0 .3em}h2{font-size:16px;margin-top:1.6em;break-after:avoid}
table{border-collapse:collapse;margin:0 0 1.5em;width:100%;table-layout:auto}
th,td{border:1px solid #bbb;padding:3px 6px;text-align:left;vertical-align:top;
  overflow-wrap:anywhere}
th{background:#eee}thead{display:table-header-group}tr{break-inside:avoid}
.findings{border:2px solid #a00;padding:.6em 1em;background:#fff4f4}
.findings li{margin:.2em 0}.sev{font-weight:bold;text-transform:uppercase;font-size:11px}
.critical .sev,.high .sev{color:#a00}.medium .sev{color:#b25d00}.review .sev{color:#555}
.ok{border:2px solid #2a7a2a;padding:.6em 1em;background:#f3fbf3}
.box{display:inline-block;width:10px;height:10px;border:1px solid #222;margin:0 4px 0 8px}
.charts{display:flex;flex-wrap:wrap;gap:1.5em}.sign td{height:2.4em}
@page{size:A4 landscape;margin:12mm}
@media print{body{margin:0;font-size:11px}.charts{display:block}h2{break-after:avoid}
  section{break-inside:auto}}
"""


def render_html(report: dict[str, Any]) -> str:
    """The report as a document an officer reads, decides on and signs: findings first, the
    grants under review with a keep/revoke column, two charts, then every table."""
    esc = html.escape
    summary = report["summary"]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Access report {esc(report['quarter'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Quarterly access report — {esc(report['quarter'])}</h1>",
        f"<p>Period {esc(report['periodStart'])} to {esc(report['periodEnd'])} "
        f"({esc(report['timezone'])}); audit log through event {report['throughSeq']}; "
        f"business hours {esc(report['businessHours'])}. Generated again from the same "
        "inputs, this document is identical byte for byte.</p>",
    ]
    # Findings that need action, on top.
    found = findings(report)
    if found:
        parts.append('<section class="findings"><h2>Findings that need action</h2><ol>')
        for severity, sentence in found:
            parts.append(
                f'<li class="{severity}"><span class="sev">{severity}</span> {esc(sentence)}</li>'
            )
        parts.append("</ol></section>")
    else:
        parts.append('<section class="ok"><h2>Findings that need action</h2><p>None.</p></section>')
    # Summary in words.
    parts.append("<h2>Summary</h2><table><tbody>")
    for key, value in summary.items():
        parts.append(f"<tr><th>{esc(_label(key))}</th><td>{esc(_shown(key, value))}</td></tr>")
    parts.append("</tbody></table>")
    # Charts.
    status = Counter(p["status"] for p in report["population"])
    status_bars = [(s, status.get(s, 0)) for s in ("active", "locked", "disabled")]
    status_bars.append(("dormant", sum(p["dormant"] for p in report["population"])))
    reads: dict[str, int] = defaultdict(int)
    month_bars = []
    for row in report["sensitiveReadsByRole"]:
        reads[row["role"]] += row["records"]
        month_bars.append((f"{row['role']} {row['month']}", row["records"]))
    parts.append('<h2>Charts</h2><div class="charts">')
    parts.append(_svg_bars("Accounts by status", status_bars))
    parts.append(
        _svg_bars(
            "Sensitive records read, by role and month",
            [b for b in month_bars if reads[b[0].rsplit(" ", 1)[0]]] or [("(none)", 0)],
            colour="#a05a2c",
        )
    )
    parts.append("</div>")
    # Grants under review, one line per unused grant, to be marked keep or revoke.
    parts.append(
        "<h2>Grants under review</h2><p>Each right below was granted and not used this "
        "quarter. Mark one box per line; revoked rights are removed from the policy.</p>"
    )
    review = [(g["account"], grant) for g in report["grants"] for grant in g["unusedGrants"]]
    if review:
        parts.append(
            "<table><thead><tr><th>Account</th><th>Right</th><th>Kind</th>"
            "<th>Decision</th></tr></thead><tbody>"
        )
        for account, grant in review:
            kind = "sensitive field" if "." in grant else "operation"
            parts.append(
                f"<tr><td>{esc(account)}</td><td>{esc(grant)}</td><td>{kind}</td>"
                '<td><span class="box"></span>keep<span class="box"></span>revoke</td></tr>'
            )
        parts.append("</tbody></table>")
    else:
        parts.append("<p>None.</p>")
    # Every table, with labels.
    for title, rows in list(_tables(report))[1:]:
        parts.append(f"<h2>{esc(title)}</h2>")
        if not rows:
            parts.append("<p>None.</p>")
            continue
        columns = list(rows[0])
        parts.append(
            "<table><thead><tr>"
            + "".join(f"<th>{esc(_label(c))}</th>" for c in columns)
            + "</tr></thead><tbody>"
        )
        for row in rows:
            parts.append(
                "<tr>"
                + "".join(f"<td>{esc(_shown(c, row.get(c)))}</td>" for c in columns)
                + "</tr>"
            )
        parts.append("</tbody></table>")
    parts.append(
        '<h2>Sign-off</h2><table class="sign"><tbody>'
        "<tr><th>Reviewed by</th><td></td><th>Date</th><td></td></tr>"
        "<tr><th>Signature</th><td></td><th>Decisions applied by</th><td></td></tr>"
        "</tbody></table>"
    )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


RENDERERS = {"json": render_json, "csv": render_csv, "html": render_html}
MEDIA_TYPES = {
    "json": "application/json",
    "csv": "application/zip",
    "html": "text/html; charset=utf-8",
}
EXTENSIONS = {"json": "json", "csv": "zip", "html": "html"}


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
) -> tuple[bytes, str, dict[str, Any]]:
    """Build and render the report and record that it was pulled, with its hash.
    Returns (content as bytes: UTF-8 text, or a zip for CSV; its sha256; the report)."""
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
    rendered = RENDERERS[fmt](report)
    content = rendered if isinstance(rendered, bytes) else rendered.encode("utf-8")
    digest = hashlib.sha256(content).hexdigest()
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
