"""Daily reconciliation: 10,000 orders of one business day against the channel's snapshot with
37 planted differences — exactly 37 findings, each classified, none spurious."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from api.worker import scheduled_jobs
from domain.audit.models import AuditEvent
from domain.jobs.scheduler import run_due
from domain.orders.models import Order
from tests.api.test_intake import channel_order, ingest
from tests.conftest import Api, errors_of
from tests.integration.test_cli import _run

# A day the demo data never reaches (its orders are from the last 90 days): the findings
# are exactly what the tests plant, whenever they run.
DAY = dt.date(2025, 3, 20)
SUBMIT = """mutation($d: Date!, $o: [ChannelSnapshotOrderInput!]!) {
  submitChannelSnapshot(channel: JD, businessDay: $d, orders: $o) { channel businessDay rows } }"""
REPORT = """query($d: Date!) { channelReconciliation(channel: JD, businessDay: $d) {
  channel businessDay generatedAt snapshotRows csv
  differences { externalId kind internalStatus channelStatus internalTotal channelTotal } } }"""


async def _day_of_orders(api: Api, n: int) -> list[dict]:
    """`n` JD orders on DAY, inserted as rows (the intake's own tests cover how they land)."""
    runtime = api.app.state.runtime
    async with runtime.sessions() as session:
        template = await session.scalar(select(Order).where(Order.channel_code == "JD").limit(1))
        columns = {c.key for c in Order.__table__.columns} - {"id"}
        base = {c: getattr(template, c) for c in columns}
        rows = [
            {
                **base,
                "number": f"RC{i:08d}",
                "external_id": f"JD-RC-{i:05d}",
                "business_day": DAY,
                "status": "SHIPPED" if i % 3 else "PICKING",
                "total_minor": 10_000 + i,
                "version": 1,
            }
            for i in range(n)
        ]
        await session.execute(insert(Order.__table__), rows)
        await session.commit()
    return rows


def _snapshot(rows: list[dict]) -> list[dict]:
    return [
        {
            "externalId": r["external_id"],
            "status": "PAID" if r["status"] == "PICKING" else r["status"],  # the channel's view
            "total": f"{r['total_minor'] / 100:.2f}",
            "updatedAt": "2025-03-20T15:00:00Z",
        }
        for r in rows
    ]


@pytest.mark.raw_orders  # 10,000 order rows inserted directly, as a day of channel orders
async def test_37_planted_differences_are_exactly_37_findings(any_api: Api) -> None:
    api = any_api
    rows = await _day_of_orders(api, 10_000)
    snapshot = _snapshot(rows)
    missing_in_channel = {r["external_id"] for r in rows[:9]}
    snapshot = [s for s in snapshot if s["externalId"] not in missing_in_channel]
    by_id = {s["externalId"]: s for s in snapshot}
    for r in rows[100:109]:
        by_id[r["external_id"]]["status"] = "CANCELLED"
    for r in rows[200:209]:
        by_id[r["external_id"]]["total"] = "1.00"
    extra = [
        {
            "externalId": f"JD-ONLY-{i}",
            "status": "PAID",
            "total": "9.90",
            "updatedAt": "2025-03-20T15:00:00Z",
        }
        for i in range(10)
    ]
    snapshot += extra
    for part in (snapshot[i : i + 4000] for i in range(0, len(snapshot), 4000)):
        sent = await api.gql(SUBMIT, {"d": DAY.isoformat(), "o": part}, as_="integration")
        assert "errors" not in sent, sent
    # A second submission of some rows replaces them rather than adding to the day.
    again = await api.gql(SUBMIT, {"d": DAY.isoformat(), "o": snapshot[:50]}, as_="integration")

    report = (await api.gql(REPORT, {"d": DAY.isoformat()}, as_="ops"))["data"][
        "channelReconciliation"
    ]

    assert again["data"]["submitChannelSnapshot"]["rows"] == len(snapshot)
    kinds = Counter(d["kind"] for d in report["differences"])
    assert kinds == {
        "MISSING_INTERNALLY": 10,
        "MISSING_IN_CHANNEL": 9,
        "STATUS_MISMATCH": 9,
        "AMOUNT_MISMATCH": 9,
    }
    assert len(report["differences"]) == 37
    assert report["snapshotRows"] == len(snapshot)
    found = {(d["externalId"], d["kind"]) for d in report["differences"]}
    assert {(r["external_id"], "MISSING_IN_CHANNEL") for r in rows[:9]} <= found
    assert {(r["external_id"], "STATUS_MISMATCH") for r in rows[100:109]} <= found
    assert {(r["external_id"], "AMOUNT_MISMATCH") for r in rows[200:209]} <= found
    amount = next(d for d in report["differences"] if d["externalId"] == rows[200]["external_id"])
    assert (amount["internalTotal"], amount["channelTotal"]) == ("102.00", "1.00")
    lines = report["csv"].splitlines()
    assert lines[0].startswith("\ufeffchannel,businessDay,externalId,kind")
    assert len(lines) == 38


async def test_an_ingested_day_reconciles_clean_against_its_own_snapshot(api: Api) -> None:
    results = await ingest(
        api,
        [channel_order(f"JD-CLEAN-{i}", createdAt="2025-03-21T02:00:00Z") for i in range(3)],
        channel="JD",
    )
    day = "2025-03-21"  # 10:00 in Shanghai
    snapshot = [
        {
            "externalId": r["externalId"],
            "status": "PAID",
            "total": "242.80",
            "updatedAt": "2025-03-21T03:00:00Z",
        }
        for r in results
    ]
    await api.gql(SUBMIT, {"d": day, "o": snapshot}, as_="integration")
    report = await api.gql(REPORT, {"d": day}, as_="integration")

    assert report["data"]["channelReconciliation"]["differences"] == []


@pytest.mark.parametrize("role", ["cs", "sales", "warehouse", "finance", "admin", "compliance"])
async def test_others_may_neither_submit_nor_read(api: Api, role: str) -> None:
    sent = await api.gql(SUBMIT, {"d": DAY.isoformat(), "o": []}, as_=role)
    read = await api.gql(REPORT, {"d": DAY.isoformat()}, as_=role)

    assert errors_of(sent) == [("FORBIDDEN", None)]
    assert errors_of(read) == [("FORBIDDEN", None)]


async def test_our_totals_are_shown_only_to_roles_that_may_read_them(api: Api) -> None:
    rows = await _day_of_orders(api, 3)
    snapshot = _snapshot(rows)
    snapshot[0]["total"] = "1.00"
    await api.gql(SUBMIT, {"d": DAY.isoformat(), "o": snapshot}, as_="integration")

    channel = await api.gql(REPORT, {"d": DAY.isoformat()}, as_="integration")
    ops = await api.gql(REPORT, {"d": DAY.isoformat()}, as_="ops")

    [theirs] = channel["data"]["channelReconciliation"]["differences"]
    [ours] = ops["data"]["channelReconciliation"]["differences"]
    assert theirs["kind"] == ours["kind"] == "AMOUNT_MISMATCH"
    assert theirs["internalTotal"] is None  # Order.total is not integration's to read
    assert theirs["channelTotal"] == "1.00"
    assert ours["internalTotal"] == f"{rows[0]['total_minor'] / 100:.2f}"
    assert ",1.00" in channel["data"]["channelReconciliation"]["csv"]
    assert ours["internalTotal"] not in channel["data"]["channelReconciliation"]["csv"]


async def test_ops_reads_but_does_not_submit(api: Api) -> None:
    sent = await api.gql(SUBMIT, {"d": DAY.isoformat(), "o": []}, as_="ops")
    read = await api.gql(REPORT, {"d": DAY.isoformat()}, as_="ops")

    assert errors_of(sent) == [("FORBIDDEN", None)]
    assert "errors" not in read


async def test_ordergate_reconcile_takes_a_csv_snapshot_and_prints_the_differences(
    api: Api, tmp_path: Path
) -> None:
    rows = await _day_of_orders(api, 20)
    snapshot = tmp_path / "jd.csv"
    lines = ["\ufeffexternalId,status,total,updatedAt"]
    for s in _snapshot(rows)[2:]:  # two of ours are missing in the channel
        lines.append(f"{s['externalId']},{s['status']},{s['total']},{s['updatedAt']}")
    lines.append("JD-ONLY-1,PAID,=1+1,2025-03-20T15:00:00Z")  # a hostile cell: refused
    snapshot.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    settings = api.app.state.runtime.settings

    done = _run(
        ["reconcile", "--channel", "JD", "--day", DAY.isoformat(), "--snapshot", str(snapshot)],
        settings.database_url,
        tmp_path,
    )
    hostile = tmp_path / "hostile.csv"
    hostile.write_text("\n".join([lines[0], lines[-1]]) + "\n", encoding="utf-8")
    refused = _run(
        ["reconcile", "--channel", "JD", "--day", DAY.isoformat(), "--snapshot", str(hostile)],
        settings.database_url,
        tmp_path,
    )

    assert done.returncode == 1, done.stderr  # differences found
    out = done.stdout.splitlines()
    assert out[0].startswith("\ufeffchannel,businessDay,externalId,kind")
    assert sorted(line.split(",")[3] for line in out[1:]) == ["MISSING_IN_CHANNEL"] * 2
    assert "2 difference(s)" in done.stderr
    assert refused.returncode == 2
    assert "total" in refused.stderr


async def test_the_0030_job_reconciles_yesterday_for_channels_with_a_snapshot(api: Api) -> None:
    rows = await _day_of_orders(api, 5)
    await api.gql(SUBMIT, {"d": DAY.isoformat(), "o": _snapshot(rows)[1:]}, as_="integration")
    runtime = api.app.state.runtime
    [job] = [j for j in scheduled_jobs(runtime) if j.name == "channels.reconcile"]
    # 00:30 on the 21st in Shanghai is 16:30 UTC on the 20th.
    ran = await run_due(
        sessions=runtime.sessions,
        jobs=[job],
        now=dt.datetime(2025, 3, 20, 16, 30, 5, tzinfo=dt.UTC),
    )

    async with runtime.sessions() as session:
        [record] = (
            await session.scalars(
                select(AuditEvent).where(AuditEvent.action == "channel.reconciled")
            )
        ).all()
    details = json.loads(record.details)
    assert ran == ["channels.reconcile"]
    assert record.target_id == "JD"
    assert details["businessDay"] == DAY.isoformat()
    assert details["differences"] == {"MISSING_IN_CHANNEL": 1}
    # Operations gets one task for the channel and day, with the differences.
    tasks = await api.gql(
        "{ tasks(status: OPEN, first: 50) { edges { node { kind title assignee details } } } }",
        as_="ops",
    )
    [task] = [
        e["node"] for e in tasks["data"]["tasks"]["edges"] if e["node"]["kind"] == "RECONCILIATION"
    ]
    assert task["assignee"] == "ops"
    assert task["details"]["channel"] == "JD"
    assert task["details"]["differences"] == {"MISSING_IN_CHANNEL": 1}
