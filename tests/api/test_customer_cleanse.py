"""The quarterly customer cleanse: numbers re-validated and flagged (never deleted), merge
candidates, incomplete records and the completeness figure — by hand and on schedule."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text

from api.worker import scheduled_jobs
from domain.customers.models import Customer
from domain.jobs.scheduler import run_due
from tests.api.test_customer_master import buyer_order
from tests.api.test_intake import ingest
from tests.api.test_stock_counts import _tasks
from tests.conftest import Api
from tests.integration.test_cli import _run


async def test_the_scheduled_cleanse_runs_on_the_first_day_of_a_quarter_and_tells_ops(
    api: Api,
) -> None:
    runtime = api.app.state.runtime
    [job] = [j for j in scheduled_jobs(runtime) if j.name == "customers.cleanse"]
    shanghai = ZoneInfo("Asia/Shanghai")
    # A number that was valid when stored and is not by today's rules: flagged, not deleted.
    async with runtime.sessions() as session:
        first = await session.scalar(select(func.min(Customer.id)))
        await session.execute(
            text("UPDATE customers SET phone = '14000000000', phone_valid = :t WHERE id = :id"),
            {"t": True, "id": first},
        )
        await session.commit()

    await run_due(
        sessions=runtime.sessions,
        jobs=[job],
        now=dt.datetime(2026, 12, 1, 2, 0, 30, tzinfo=shanghai),
    )
    before = await _tasks(api, "ops", "CUSTOMER_CLEANSE")
    await run_due(
        sessions=runtime.sessions,
        jobs=[job],
        now=dt.datetime(2027, 1, 1, 2, 0, 30, tzinfo=shanghai),
    )
    after = await _tasks(api, "ops", "CUSTOMER_CLEANSE")

    assert before == []
    [task] = after
    assert task["details"]["quarter"] == "2026-Q4"
    assert task["details"]["invalidPhones"] == 1
    async with runtime.sessions() as session:
        flagged = await session.get(Customer, first)
        assert flagged.phone == "14000000000"  # kept
        assert flagged.phone_valid is False


async def test_the_cli_lists_findings_and_completeness_from_the_same_numbers(
    api: Api, database_url: str, tmp_path: Path
) -> None:
    # A customer without an email (incomplete), and a doubtful pair (same name and address).
    await ingest(api, [buyer_order("TB-CL-1", "何十一", "13720001111")])
    await ingest(api, [buyer_order("TB-CL-2", "何十一", "13720002222", "he@example.com")])
    async with api.app.state.runtime.sessions() as session:
        total = await session.scalar(
            select(func.count()).select_from(Customer).where(Customer.merged_into_id.is_(None))
        )
        without_email = await session.scalar(
            select(func.count())
            .select_from(Customer)
            .where(Customer.merged_into_id.is_(None), Customer.email_valid.is_not(True))
        )
    await api.app.state.runtime.engine.dispose()

    as_json = _run(["customers", "cleanse", "--quarter", "2026-Q4"], database_url, tmp_path)
    as_csv = _run(
        ["customers", "cleanse", "--quarter", "2026-Q4", "--format", "csv"], database_url, tmp_path
    )
    future = _run(["customers", "cleanse", "--quarter", "2099-Q1"], database_url, tmp_path)

    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["customers"] == total
    assert report["complete"] <= total - without_email
    assert report["completeness"] == round(report["complete"] / total, 4)
    assert any(c["reasons"] == ["same address", "same name"] for c in report["mergeCandidates"])
    assert any("email" in row["missing"] for row in report["incomplete"])
    assert "13720001111" not in as_json.stdout  # ids and reasons, no contact values
    assert as_csv.returncode == 0, as_csv.stderr
    assert as_csv.stdout.startswith("\ufeff")
    assert as_csv.stdout.splitlines()[0] == "\ufefffinding,customers,detail"
    assert "merge candidate" in as_csv.stdout
    assert future.returncode == 2
    assert "has not begun" in future.stderr
