"""Regression tests for the holes found in the attack on the API (issue 11), one or more per
numbered item. Each failed on the code before the fix."""

from __future__ import annotations

import base64
import json
import time
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from domain.audit.models import AuditEvent
from tests.api.test_approvals import (
    APPROVE,
    PRICE,
    REFUND,
    order_in,
    registered,
)
from tests.conftest import Api, errors_of, nothing_returned

EXPORT = """mutation($filter: JSON, $fields: [String!]!, $entity: ExportEntity!) {
  requestExport(input: {entity: $entity, fields: $fields, reason: "x", filter: $filter}) { id }
}"""


async def audit_count(api: Api) -> int:
    async with api.app.state.runtime.sessions() as session:
        return await session.scalar(select(func.count()).select_from(AuditEvent)) or 0


# ---- 1. money: one parser, ASCII digits, bounded ----------------------------------------------


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


# ---- 2. refunds never exceed what was paid ----------------------------------------------------


async def test_refunds_are_capped_by_what_was_paid_not_by_the_current_total(api: Api) -> None:
    order = await order_in(api, "PENDING_PAYMENT")
    await api.gql(
        "mutation($id: ID!) { transitionOrder(id: $id, to: PAID) { status } }",
        {"id": order["id"]},
        as_="ops",
    )
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
            await session.execute(update, {"id": int(order["id"])})


# ---- 3. free text cannot carry control characters ---------------------------------------------


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


# ---- 6. kid is the exact string -----------------------------------------------------------------


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


# ---- 14. out of scope looks exactly like missing -------------------------------------------------


async def test_an_out_of_scope_line_and_a_missing_line_answer_alike(api: Api) -> None:
    foreign = await order_in(api, "PENDING_PAYMENT", channel="PINDUODUO")
    variables = {"price": "1.00", "reason": "x"}

    out_of_scope = await api.gql(
        PRICE, {**variables, "line": foreign["lines"][0]["id"]}, as_="sales"
    )
    missing = await api.gql(PRICE, {**variables, "line": "999999"}, as_="sales")

    assert errors_of(out_of_scope) == errors_of(missing) == [("NOT_FOUND", None)]
    assert out_of_scope["errors"][0]["message"] == missing["errors"][0]["message"]


# ---- 15. bad input of other shapes ---------------------------------------------------------------


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
