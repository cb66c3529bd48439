"""Exports: two distinct approvals, no more than the requester may see, fetched once."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from api.app import _export_housekeeping
from tests.api.test_approvals import login_as_new_user
from tests.api.test_audit import events
from tests.conftest import Api, db_id, errors_of

FIELDS = """id status entity fields expectedRows scopeDigest requestedBy approvedL1By approvedL2By
    rowCount sha256 downloadUrl downloadExpiresAt rejectedBy rejectionReason"""
REQUEST = f"""mutation($input: ExportInput!) {{ requestExport(input: $input) {{ {FIELDS} }} }}"""
APPROVE = f"""mutation($id: ID!) {{ approveExport(id: $id) {{ {FIELDS} }} }}"""
REJECT = (
    f"""mutation($id: ID!, $r: String!) {{ rejectExport(id: $id, reason: $r) {{ {FIELDS} }} }}"""
)
ONE = f"""query($id: ID!) {{ exportRequest(id: $id) {{ {FIELDS} }} }}"""
ORDERS_INPUT = {
    "entity": "ORDERS",
    "fields": [
        "number",
        "channel",
        "status",
        "total",
        "customerName",
        "customerPhone",
        "createdAt",
    ],
    "filter": {"status": ["COMPLETED", "SHIPPED"]},
    "reason": "月度对账",
}


async def ask(api: Api, as_: str = "sales", **overrides: Any) -> dict[str, Any]:
    result = await api.gql(REQUEST, {"input": {**ORDERS_INPUT, **overrides}}, as_=as_)
    assert "errors" not in result, result
    return result["data"]["requestExport"]


async def approved(api: Api, as_: str = "sales", **overrides: Any) -> dict[str, Any]:
    request = await ask(api, as_=as_, **overrides)
    await api.gql(APPROVE, {"id": request["id"]}, as_="approver")
    await api.gql(APPROVE, {"id": request["id"]}, as_="compliance")
    await api.app.state.runtime.drain()
    result = await api.gql(ONE, {"id": request["id"]}, as_=as_)
    return result["data"]["exportRequest"]


async def download(api: Api, url: str, as_: str = "sales", token: str | None = None):
    bearer = token or await api.token(as_)
    return await api.client.get(url, headers={"authorization": f"Bearer {bearer}"})


def parse(body: bytes) -> tuple[list[str], list[str], list[list[str]]]:
    assert body.startswith(b"\xef\xbb\xbf"), "UTF-8 BOM so Excel reads Chinese text"
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    meta = [row[0] for row in rows if row and row[0].startswith("# ")]
    table = rows[len(meta) :]
    return meta, table[0], table[1:]


async def test_the_full_flow_produces_a_file_the_requester_fetches_once(api: Api) -> None:
    request = await ask(api)
    first = await api.gql(APPROVE, {"id": request["id"]}, as_="approver")
    second = await api.gql(APPROVE, {"id": request["id"]}, as_="compliance")
    await api.app.state.runtime.drain()
    ready = (await api.gql(ONE, {"id": request["id"]}, as_="sales"))["data"]["exportRequest"]

    response = await download(api, ready["downloadUrl"])
    again = await download(api, ready["downloadUrl"])

    assert request["status"] == "PENDING_L1"
    assert request["expectedRows"] > 0
    assert first["data"]["approveExport"]["status"] == "PENDING_L2"
    assert second["data"]["approveExport"]["status"] == "APPROVED"
    assert ready["status"] == "READY"
    assert (ready["approvedL1By"], ready["approvedL2By"]) == ("demo-approver", "demo-compliance")
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == ready["sha256"]
    meta, header, rows = parse(response.content)
    assert meta[0] == f"# ordergate export {db_id(request['id'])}: ORDERS"
    assert "# approved by demo-approver, demo-compliance" in meta
    assert "# requested by demo-sales: 月度对账" in meta
    assert header == ORDERS_INPUT["fields"]
    assert len(rows) == ready["rowCount"] == request["expectedRows"]
    # Row scope: sales sees its own channels only; the phone masked as for the API.
    assert {r[1] for r in rows} <= {"TAOBAO", "JD"}
    assert {r[2] for r in rows} <= {"COMPLETED", "SHIPPED"}
    assert all(r[5][3:7] == "****" for r in rows if r[5])
    assert all("+08:00" in r[6] for r in rows)  # times in the business timezone
    assert again.status_code == 410
    assert again.json()["errors"][0]["extensions"]["code"] == "CONFLICT"


async def test_every_step_is_in_the_audit_log(api: Api) -> None:
    ready = await approved(api)
    await download(api, ready["downloadUrl"])
    await download(api, ready["downloadUrl"], as_="finance")

    recorded = [
        (e["action"], e["username"], e["outcome"])
        for e in await events(api)
        if e["action"].startswith("export.")
    ]

    assert recorded == [
        ("export.request", "demo-sales", "success"),
        ("export.approve", "demo-approver", "success"),
        ("export.approve", "demo-compliance", "success"),
        ("export.produce", "ordergate-server", "success"),
        ("export.download", "demo-sales", "success"),
        ("export.download.delivered", "demo-sales", "success"),
        ("export.download", "demo-finance", "denied"),
    ]
    [produced] = await events(api, action="export.produce")
    assert produced["details"]["sha256"] == ready["sha256"]
    downloads = await events(api, action="export.download")
    assert {e["client_ip"] for e in downloads} == {"203.0.113.7"}


async def test_the_requester_cannot_approve_their_own_export(api: Api) -> None:
    token = await login_as_new_user(api, "zhao.both", ["sales", "approver"])
    result = await api.gql(REQUEST, {"input": ORDERS_INPUT}, authorization=f"Bearer {token}")
    export_id = result["data"]["requestExport"]["id"]

    own = await api.gql(APPROVE, {"id": export_id}, authorization=f"Bearer {token}")

    assert errors_of(own) == [("SEPARATION_OF_DUTIES", None)]


async def test_one_person_cannot_approve_both_levels(api: Api) -> None:
    token = await login_as_new_user(api, "qian.both", ["approver", "compliance"])
    request = await ask(api)
    await api.gql(APPROVE, {"id": request["id"]}, authorization=f"Bearer {token}")

    second = await api.gql(APPROVE, {"id": request["id"]}, authorization=f"Bearer {token}")

    assert errors_of(second) == [("SEPARATION_OF_DUTIES", None)]


async def test_each_level_needs_its_own_role(api: Api) -> None:
    request = await ask(api)

    l2_first = await api.gql(APPROVE, {"id": request["id"]}, as_="compliance")
    await api.gql(APPROVE, {"id": request["id"]}, as_="approver")
    l1_again = await api.gql(APPROVE, {"id": request["id"]}, as_="approver")

    assert errors_of(l2_first) == [("FORBIDDEN", None)]
    assert errors_of(l1_again) == [("FORBIDDEN", None)]


async def test_a_rejection_is_final(api: Api) -> None:
    request = await ask(api)

    rejected = await api.gql(REJECT, {"id": request["id"], "r": "范围太大"}, as_="approver")
    after = await api.gql(APPROVE, {"id": request["id"]}, as_="approver")

    assert rejected["data"]["rejectExport"]["status"] == "REJECTED"
    assert errors_of(after) == [("CONFLICT", None)]


async def test_a_request_not_approved_within_24_hours_expires(api: Api) -> None:
    request = await ask(api)
    runtime = api.app.state.runtime
    async with runtime.sessions() as session:
        await session.execute(
            text("UPDATE export_requests SET expires_at = created_at WHERE id = :i"),
            {"i": db_id(request["id"])},
        )
        await session.commit()

    late = await api.gql(APPROVE, {"id": request["id"]}, as_="approver")
    status = await api.gql(ONE, {"id": request["id"]}, as_="sales")

    assert errors_of(late) == [("CONFLICT", None)]
    assert status["data"]["exportRequest"]["status"] == "EXPIRED"


async def test_others_never_see_the_link_and_cannot_download(api: Api) -> None:
    ready = await approved(api)

    as_approver = await api.gql(ONE, {"id": ready["id"]}, as_="approver")
    stolen = await download(api, ready["downloadUrl"], as_="compliance")
    forged = await download(api, ready["downloadUrl"].replace("token=", "token=0"))
    anonymous = await api.client.get(ready["downloadUrl"])

    assert as_approver["data"]["exportRequest"]["downloadUrl"] is None
    assert stolen.status_code == 403
    assert forged.status_code == 403
    assert anonymous.status_code == 401
    assert (await download(api, ready["downloadUrl"])).status_code == 200  # still the owner's


async def test_an_expired_link_is_refused(api: Api) -> None:
    ready = await approved(api)
    runtime = api.app.state.runtime
    async with runtime.sessions() as session:
        await session.execute(
            text("UPDATE export_requests SET download_expires_at = produced_at WHERE id = :i"),
            {"i": db_id(ready["id"])},
        )
        await session.commit()

    response = await download(api, ready["downloadUrl"])

    assert response.status_code == 410
    assert "expired" in response.json()["errors"][0]["message"]


async def test_a_restricted_field_cannot_be_requested(api: Api) -> None:
    result = await api.gql(
        REQUEST, {"input": {**ORDERS_INPUT, "fields": ["number", "grossMargin"]}}, as_="sales"
    )

    assert errors_of(result)[0] == ("FORBIDDEN", "Order.grossMargin")


async def test_a_filter_on_a_masked_field_is_forbidden(api: Api) -> None:
    result = await api.gql(
        REQUEST,
        {"input": {**ORDERS_INPUT, "filter": {"customerPhone": "13800000000"}}},
        as_="sales",
    )

    assert errors_of(result)[0] == ("FORBIDDEN", "Order.customerPhone")


async def test_the_same_scope_cannot_be_pending_twice(api: Api) -> None:
    await ask(api)

    again = await api.gql(REQUEST, {"input": ORDERS_INPUT}, as_="sales")
    other_scope = await api.gql(
        REQUEST, {"input": {**ORDERS_INPUT, "fields": ["number"]}}, as_="sales"
    )

    assert errors_of(again) == [("CONFLICT", None)]
    assert "errors" not in other_scope


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"fields": []}, "at least one"),
        ({"fields": ["number", "lines"]}, "not an exportable field"),
        ({"fields": ["number", "number"]}, "twice"),
        ({"filter": {"colour": "red"}}, "unknown filter"),
        ({"filter": {"createdFrom": "2026-01-01T00:00:00"}}, "naive"),
        ({"filter": {"status": ["LOST"]}}, "unknown order status"),
        ({"reason": "  "}, "reason"),
        ({"filter": {"minTotal": 12.5}}, "is a string"),
    ],
)
async def test_bad_export_input_is_refused(api: Api, change: dict, needle: str) -> None:
    result = await api.gql(REQUEST, {"input": {**ORDERS_INPUT, **change}}, as_="sales")

    assert errors_of(result) == [("BAD_USER_INPUT", None)]
    assert needle in result["errors"][0]["message"]


async def test_roles_without_export_request_are_forbidden(api: Api) -> None:
    result = await api.gql(REQUEST, {"input": ORDERS_INPUT}, as_="cs")

    assert ("FORBIDDEN", None) in errors_of(result)


async def test_customers_and_stock_export_too(api: Api) -> None:
    customers = await approved(
        api, as_="finance", entity="CUSTOMERS", fields=["id", "name", "phone"], filter=None
    )
    stock = await approved(
        api,
        as_="finance",
        entity="STOCK",
        fields=["sku", "warehouse", "onHand", "unitCost"],
        filter=None,
    )

    _, header, rows = parse((await download(api, customers["downloadUrl"], as_="finance")).content)
    _, stock_header, stock_rows = parse(
        (await download(api, stock["downloadUrl"], as_="finance")).content
    )

    assert header == ["id", "name", "phone"]
    assert len(rows) == 100
    assert all("*" in r[1] and "****" in r[2] for r in rows)  # finance sees PII masked
    assert stock_header == ["sku", "warehouse", "onHand", "unitCost"]
    assert len(stock_rows) == 100


async def test_files_are_removed_after_retention_and_the_record_stays(
    api: Api, tmp_path: Path
) -> None:
    ready = await approved(api)
    runtime = api.app.state.runtime
    later = dt.timedelta(seconds=runtime.settings.export_retention_seconds + 1)
    async with runtime.sessions() as session:
        await session.execute(
            text("UPDATE export_requests SET produced_at = :t WHERE id = :i"),
            {
                "t": (dt.datetime.now(dt.UTC) - later).replace(tzinfo=None).isoformat(sep=" "),
                "i": db_id(ready["id"]),
            },
        )
        await session.commit()

    await _export_housekeeping(runtime)
    record = await api.gql(ONE, {"id": ready["id"]}, as_="sales")

    assert not list((runtime.exports.directory).glob(f"export-{db_id(ready['id'])}-*"))
    assert record["data"]["exportRequest"]["sha256"] == ready["sha256"]
    assert [e["action"] for e in await events(api, action="export.file_removed")] == [
        "export.file_removed"
    ]
