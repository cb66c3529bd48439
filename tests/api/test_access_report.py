"""The quarterly access report over a quarter of activity seeded through the API."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import io
import json
import shutil
import sqlite3
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from domain.actor import SYSTEM_ORIGIN
from domain.audit.service import Subject
from domain.users import service as users_service
from tests.api.test_approvals import PRICE, REGISTER, Signer, login_as_new_user, order_in
from tests.api.test_audit import events
from tests.conftest import DEMO_PASSWORD, Api, _api_for, errors_of, settings_for

REPORT = """query($q: String!, $f: ReportFormat, $s: Int) {
  accessReport(quarter: $q, format: $f, throughSeq: $s) {
    quarter throughSeq sha256 content format contentEncoding mediaType filename
  }
}"""
LOGIN = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { accessToken } }"


async def _create_only(api: Api, username: str, roles: list[str]) -> None:
    async with api.app.state.runtime.sessions() as session:
        await users_service.create_user(
            session=session,
            who=Subject(None, "test", (), SYSTEM_ORIGIN),
            username=username,
            password="another-long-password",
            roles=roles,
        )
        await session.commit()


def current_quarter() -> str:
    now = dt.datetime.now(dt.timezone(dt.timedelta(hours=8)))
    return f"{now.year}-Q{(now.month - 1) // 3 + 1}"


def hours_excluding_now() -> str:
    """Business hours that the test's own activity falls outside of."""
    hour = (dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).hour + 2) % 22
    return f"{hour:02d}:00-{hour + 1:02d}:00"


@pytest.fixture(scope="module")
async def seeded(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Api]:
    workdir = tmp_path_factory.mktemp("report")
    db = workdir / "report.db"
    shutil.copyfile(sqlite_template, db)
    with sqlite3.connect(db) as connection:  # the demo accounts predate the quarter
        connection.execute("UPDATE users SET created_at = '2025-01-01 00:00:00.000000'")
    settings = settings_for(
        f"sqlite+aiosqlite:///{db}",
        workdir,
        ORDERGATE_BUSINESS_HOURS=hours_excluding_now(),
        ORDERGATE_BUSINESS_DAYS="1-7",
    )
    async for api in _api_for(settings):
        api._tokens = {}  # this database's own logins, so the report sees them
        # A bulk read of phone numbers by one customer-service agent, small ones by two others.
        cs2 = await login_as_new_user(api, "cs.two", ["cs"])
        cs3 = await login_as_new_user(api, "cs.three", ["cs"])
        await api.gql("{ customers(first: 100) { edges { node { phone } } } }", as_="cs")
        for token in (cs2, cs3):
            await api.gql(
                "{ customers(first: 2) { edges { node { phone } } } }",
                authorization=f"Bearer {token}",
            )
        # A new account that has not logged in yet is not dormant.
        await _create_only(api, "new.joiner", ["ops"])
        # Warehouse looks at orders but never moves one: an unused grant.
        await api.gql("{ orders(first: 3) { edges { node { number } } } }", as_="warehouse")
        # Someone holding both sides tries to approve their own price change.
        both = await login_as_new_user(api, "wang.both", ["sales", "approver"])
        order = await order_in(api, "PENDING_PAYMENT")
        request = await api.gql(
            PRICE,
            {"line": order["lines"][0]["id"], "price": "9.90", "reason": "x"},
            authorization=f"Bearer {both}",
        )
        request = request["data"]["requestPriceChange"]
        signer = Signer()
        key = await api.gql(REGISTER, {"pem": signer.pem}, authorization=f"Bearer {both}")
        signer.kid = key["data"]["registerSigningKey"]["id"]
        await api.gql(
            "mutation($id: ID!, $s: String!) { approveRequest(id: $id, signature: $s) { id } }",
            {"id": request["id"], "s": signer.sign(request["signingPayload"])},
            authorization=f"Bearer {both}",
        )
        await api.token("compliance")
        yield api


async def _report(api: Api, fmt: str = "JSON", through: int | None = None) -> dict[str, Any]:
    result = await api.gql(
        REPORT, {"q": current_quarter(), "f": fmt, "s": through}, as_="compliance"
    )
    assert "errors" not in result, result
    return result["data"]["accessReport"]


async def test_the_report_finds_what_was_seeded_and_nothing_else(seeded: Api) -> None:
    report = json.loads((await _report(seeded))["content"])
    by_account = {row["account"]: row for row in report["activity"]}
    grants = {row["account"]: row for row in report["grants"]}
    population = {row["account"]: row for row in report["population"]}
    logged_in = {
        e["username"] for e in await events(seeded, action="auth.login", outcome="success")
    }

    # bulk read: an anomaly for demo-cs only, against the median of the cs role
    assert by_account["demo-cs"]["sensitiveRecordsRead"] == 100
    assert [(a["account"], a["metric"], a["roleMedian"]) for a in report["anomalies"]] == [
        ("demo-cs", "sensitiveRecordsRead", 2)
    ]
    # dormant: exactly the accounts that never logged in, except one created this quarter
    assert {a for a, row in population.items() if row["dormant"]} == (
        set(population) - logged_in - {"new.joiner"}
    )
    assert population["new.joiner"]["dormant"] is False
    assert population["demo-purchasing"]["dormant"] is True
    assert population["demo-cs"]["lastLogin"] is not None
    # unused grants
    assert "picking:read" in grants["demo-warehouse"]["unusedGrants"]
    assert "order:transition" not in grants["demo-warehouse"]["unusedGrants"]  # the demo picks
    assert "Customer.phone" in grants["demo-cs"]["fieldsUsed"]
    assert "Customer.phone" not in grants["demo-cs"]["unusedGrants"]
    # the self-approval attempt: denied, and a separation-of-duty finding
    assert [(d["account"], d["action"], d["code"]) for d in report["deniedAttempts"]] == [
        ("wang.both", "approval.approve", "SEPARATION_OF_DUTIES")
    ]
    assert {row["account"] for row in report["separationOfDuties"]["accountsHoldingBoth"]} == {
        "wang.both"
    }
    assert report["separationOfDuties"]["mutualApprovers"] == []
    # off-hours: every act of the seeded quarter, since business hours were set around it —
    # the logins, and the demo's channel account landing its orders through the intake
    assert {e["account"] for e in report["offHours"]} == logged_in | {"demo-integration"}
    # first logins from each address
    assert {x["account"] for x in report["newIpLogins"]} == logged_in
    assert report["auditChain"]["ok"] is True
    assert report["auditChain"]["verifiedThroughSeq"] == report["throughSeq"]


async def test_the_same_inputs_give_byte_identical_output(seeded: Api) -> None:
    first = await _report(seeded, "HTML")

    again = await _report(seeded, "HTML", through=first["throughSeq"])

    assert again["content"] == first["content"]
    assert again["sha256"] == first["sha256"]


async def test_pulling_a_report_is_audited_with_its_hash(seeded: Api) -> None:
    pulled = await _report(seeded, "CSV")

    recorded = await events(seeded, action="report.access")

    assert recorded[-1]["details"]["sha256"] == pulled["sha256"]
    assert recorded[-1]["username"] == "demo-compliance"


async def test_the_csv_form_is_a_zip_of_one_csv_per_table(seeded: Api) -> None:
    pulled = await _report(seeded, "CSV")
    json_report = json.loads((await _report(seeded, "JSON"))["content"])

    raw = base64.b64decode(pulled["content"])
    archive = zipfile.ZipFile(io.BytesIO(raw))
    assert (pulled["contentEncoding"], pulled["mediaType"]) == ("base64", "application/zip")
    assert pulled["filename"] == f"access-{json_report['quarter']}.zip"
    assert hashlib.sha256(raw).hexdigest() == pulled["sha256"]
    names = archive.namelist()
    assert names[0] == "README.txt"
    assert "population.csv" in names
    assert "grants.csv" in names
    assert "anomalies.csv" in names
    for name in names[1:]:
        assert archive.read(name).startswith("\ufeff".encode()), name
    population = list(
        csv.DictReader(io.StringIO(archive.read("population.csv").decode("utf-8-sig")))
    )
    assert {row["account"] for row in population} == {
        p["account"] for p in json_report["population"]
    }
    assert {row["dormant"] for row in population} <= {"yes", "no"}


async def test_the_html_report_reads_as_a_document_to_sign(seeded: Api) -> None:
    first = await _report(seeded, "JSON")
    report = json.loads(first["content"])
    # Through the same audit seq: the JSON report's own read would otherwise count as a use
    # of a grant in the HTML one (a flake in random order: 153 unused grants against 154).
    page = (await _report(seeded, "HTML", through=first["throughSeq"]))["content"]

    assert page.startswith("<!doctype html>")
    # Findings that need action come before everything else, separation of duties among them.
    assert page.index("Findings that need action") < page.index("<h2>Summary</h2>")
    assert "wang.both may both request" in page
    # Plain-language labels, yes/no and "never", not field names and Python booleans.
    assert "<th>Last login</th>" in page
    assert "lastLogin" not in page
    assert "True" not in page
    assert "False" not in page
    never_logged_in = [p for p in report["population"] if p["lastLogin"] is None]
    assert never_logged_in
    assert "<td>never</td>" in page
    # One keep/revoke line per grant under review.
    unused = sum(len(g["unusedGrants"]) for g in report["grants"])
    assert unused > 0
    assert page.count("revoke</td></tr>") == unused
    # Charts as inline SVG; nothing loaded from elsewhere; print rules.
    assert page.count('<svg class="chart"') == 2
    assert "Accounts by status" in page
    assert "Sensitive records read, by role and month" in page
    assert "<script" not in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "@page" in page
    assert "@media print" in page
    assert "Sign-off" in page


async def test_business_hours_around_the_activity_leave_no_off_hours_findings(
    sqlite_template: Path, tmp_path: Path
) -> None:
    db = tmp_path / "r.db"
    shutil.copyfile(sqlite_template, db)
    settings = settings_for(
        f"sqlite+aiosqlite:///{db}",
        tmp_path,
        ORDERGATE_BUSINESS_HOURS="00:00-23:59",
        ORDERGATE_BUSINESS_DAYS="1-7",
    )
    async for api in _api_for(settings):
        api._tokens = {}
        await api.gql(LOGIN, {"u": "demo-cs", "p": DEMO_PASSWORD})

        report = json.loads((await _report(api))["content"])

    assert report["offHours"] == []


@pytest.mark.parametrize("quarter", ["2026Q3", "2026-Q5", "Q3-2026", "2999-Q1", ""])
async def test_malformed_and_future_quarters_are_bad_input(api: Api, quarter: str) -> None:
    result = await api.gql(REPORT, {"q": quarter}, as_="compliance")

    assert errors_of(result) == [("BAD_USER_INPUT", None)]


async def test_only_compliance_pulls_reports(api: Api) -> None:
    result = await api.gql(REPORT, {"q": "2026-Q3"}, as_="cs")

    assert errors_of(result) == [("FORBIDDEN", None)]
