"""Price changes and refunds take effect only with an approver's Ed25519 signature."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from api.app import _expire_requests
from domain.actor import SYSTEM_ORIGIN
from domain.approvals.service import verify_signatures
from domain.approvals.signatures import sign
from domain.audit.service import Subject
from domain.users import service as users_service
from tests.api.test_audit import events
from tests.conftest import Api, db_id, errors_of, nothing_returned
from tests.integration.test_cli import _run
from tests.policy_matrix import OPERATIONS, ROLES

PASSWORD = "another-long-password"
REQUEST_FIELDS = """id kind status orderId orderNumber orderLineId amount currency requestedBy
    reason summary signingPayload createdAt expiresAt decidedAt decidedBy decisionReason
    keyFingerprint"""
PRICE = f"""mutation($line: ID!, $price: Money!, $reason: String!) {{
  requestPriceChange(orderLineId: $line, newUnitPrice: $price, reason: $reason) {{
    {REQUEST_FIELDS} }}
}}"""
REFUND = f"""mutation($order: ID!, $amount: Money!, $reason: String!) {{
  requestRefund(orderId: $order, amount: $amount, reason: $reason) {{ {REQUEST_FIELDS} }}
}}"""
REGISTER = (
    "mutation($pem: String!) { registerSigningKey(publicKey: $pem) { id fingerprint revokedAt } }"
)
REVOKE = "mutation($id: ID!) { revokeSigningKey(id: $id) { id revokedAt } }"
APPROVE = f"""mutation($id: ID!, $sig: String!) {{
  approveRequest(id: $id, signature: $sig) {{ {REQUEST_FIELDS} }} }}"""
REJECT = (
    "mutation($id: ID!, $r: String!) { rejectRequest(id: $id, reason: $r) { status decidedBy } }"
)
ORDER = """query($id: ID!) { order(id: $id) { version total grossMargin refundedAmount
    lines { id unitPrice quantity } } }"""


class Signer:
    def __init__(self) -> None:
        self.private = Ed25519PrivateKey.generate()
        self.kid = ""

    @property
    def pem(self) -> str:
        return (
            self.private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def sign(self, payload: str | bytes) -> str:
        data = payload.encode() if isinstance(payload, str) else payload
        return sign(data, self.private, self.kid)


async def registered(api: Api, as_: str = "approver") -> Signer:
    signer = Signer()
    result = await api.gql(REGISTER, {"pem": signer.pem}, as_=as_)
    signer.kid = result["data"]["registerSigningKey"]["id"]
    return signer


async def order_in(api: Api, status: str, channel: str = "TAOBAO") -> dict[str, Any]:
    result = await api.gql(
        """query($s: [OrderStatus!], $c: [Channel!]) {
           orders(first: 1, filter: {status: $s, channel: $c})
           { edges { node { id number version total lines { id unitPrice quantity } } } } }""",
        {"s": [status], "c": [channel]},
        as_="finance",
    )
    return result["data"]["orders"]["edges"][0]["node"]


async def price_request(api: Api, price: str = "88.80") -> tuple[dict, dict]:
    order = await order_in(api, "PENDING_PAYMENT")
    result = await api.gql(
        PRICE,
        {"line": order["lines"][0]["id"], "price": price, "reason": "客户投诉, 按活动价"},
        as_="sales",
    )
    assert "errors" not in result, result
    return order, result["data"]["requestPriceChange"]


async def refund_request(api: Api, amount: str = "10.00", as_: str = "cs") -> tuple[dict, dict]:
    order = await order_in(api, "COMPLETED")
    result = await api.gql(
        REFUND, {"order": order["id"], "amount": amount, "reason": "破损"}, as_=as_
    )
    assert "errors" not in result, result
    return order, result["data"]["requestRefund"]


async def login_as_new_user(api: Api, username: str, roles: list[str]) -> str:
    runtime = api.app.state.runtime
    async with runtime.sessions() as session:
        await users_service.create_user(
            session=session,
            who=Subject(None, "test", (), SYSTEM_ORIGIN),
            username=username,
            password=PASSWORD,
            roles=roles,
            channels=["TAOBAO"] if "sales" in roles else [],
        )
        await session.commit()
    result = await api.gql(
        "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { accessToken } }",
        {"u": username, "p": PASSWORD},
    )
    return result["data"]["login"]["accessToken"]


# ---- happy paths ------------------------------------------------------------------------------


async def test_a_signed_price_change_applies_and_totals_and_margin_follow(api: Api) -> None:
    order, request = await price_request(api, "88.80")
    unchanged = await api.gql(ORDER, {"id": order["id"]}, as_="finance")
    signer = await registered(api)

    result = await api.gql(
        APPROVE,
        {"id": request["id"], "sig": signer.sign(request["signingPayload"])},
        as_="approver",
    )
    after = await api.gql(ORDER, {"id": order["id"]}, as_="finance")

    assert unchanged["data"]["order"]["lines"] == order["lines"]
    approved = result["data"]["approveRequest"]
    assert (approved["status"], approved["decidedBy"]) == ("APPROVED", "demo-approver")
    line = after["data"]["order"]["lines"][0]
    assert line["unitPrice"] == "88.80"
    lines = after["data"]["order"]["lines"]
    subtotal = sum(Decimal(x["unitPrice"]) * x["quantity"] for x in lines)
    before_total = Decimal(unchanged["data"]["order"]["total"])
    before_subtotal = sum(Decimal(x["unitPrice"]) * x["quantity"] for x in order["lines"])
    assert Decimal(after["data"]["order"]["total"]) == before_total - before_subtotal + subtotal
    margin_delta = Decimal(after["data"]["order"]["grossMargin"]) - Decimal(
        unchanged["data"]["order"]["grossMargin"]
    )
    assert margin_delta == subtotal - before_subtotal
    assert after["data"]["order"]["version"] == unchanged["data"]["order"]["version"] + 1
    [event] = await events(api, action="approval.approve")
    assert event["details"]["jws"] == signer.sign(request["signingPayload"])
    assert event["details"]["keyFingerprint"] == approved["keyFingerprint"]


async def test_a_signed_refund_is_recorded_on_the_order(api: Api) -> None:
    order, request = await refund_request(api, "10.00")
    signer = await registered(api)

    await api.gql(
        APPROVE,
        {"id": request["id"], "sig": signer.sign(request["signingPayload"])},
        as_="approver",
    )
    after = await api.gql(ORDER, {"id": order["id"]}, as_="finance")

    assert after["data"]["order"]["refundedAmount"] == "10.00"
    assert after["data"]["order"]["total"] == order["total"]


async def test_the_signing_payload_is_canonical_and_says_what_changes(api: Api) -> None:
    order, request = await price_request(api, "88.80")

    payload = json.loads(request["signingPayload"])

    assert request["signingPayload"] == json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert payload["v"] == 1
    assert payload["aud"] == "ordergate-api"
    assert payload["requestId"] == str(db_id(request["id"]))
    assert payload["action"] == "PRICE_CHANGE"
    assert payload["order"] == {
        "id": str(db_id(order["id"])),
        "number": order["number"],
        "version": order["version"],
    }
    assert payload["line"]["id"] == str(db_id(order["lines"][0]["id"]))
    assert payload["before"] == {"unitPrice": order["lines"][0]["unitPrice"]}
    assert payload["after"] == {"unitPrice": "88.80"}
    assert payload["currency"] == "CNY"
    assert payload["requester"] == "demo-sales"
    assert payload["reason"] == "客户投诉, 按活动价"
    assert len(payload["nonce"]) >= 22  # base64url of at least 128 random bits
    assert payload["iat"] < payload["exp"]
    assert "88.80" in payload["summary"]
    assert order["number"] in payload["summary"]
    assert request["status"] == "PENDING"


async def test_refund_payload_states_paid_and_already_refunded(api: Api) -> None:
    order, request = await refund_request(api, "10.00")

    payload = json.loads(request["signingPayload"])

    assert payload["before"] == {"amountPaid": order["total"], "alreadyRefunded": "0.00"}
    assert payload["after"] == {"refund": "10.00", "refundedTotal": "10.00"}


# ---- every way it must fail, changing nothing ------------------------------------------------


async def _assert_unchanged(api: Api, order: dict) -> None:
    now = await api.gql(ORDER, {"id": order["id"]}, as_="finance")
    assert now["data"]["order"]["version"] == order["version"]
    assert now["data"]["order"]["lines"] == order["lines"]
    assert now["data"]["order"]["refundedAmount"] in ("0.00", None)


async def test_a_tampered_payload_is_refused(api: Api) -> None:
    order, request = await price_request(api)
    signer = await registered(api)
    tampered = request["signingPayload"].replace('"88.80"', '"8.80"')

    result = await api.gql(
        APPROVE, {"id": request["id"], "sig": signer.sign(tampered)}, as_="approver"
    )

    assert errors_of(result) == [("SIGNATURE_INVALID", None)]
    await _assert_unchanged(api, order)


async def test_re_encoded_but_equivalent_json_is_refused(api: Api) -> None:
    _order, request = await price_request(api)
    signer = await registered(api)
    pretty = json.dumps(json.loads(request["signingPayload"]), indent=2, ensure_ascii=False)

    result = await api.gql(
        APPROVE, {"id": request["id"], "sig": signer.sign(pretty)}, as_="approver"
    )

    assert errors_of(result) == [("SIGNATURE_INVALID", None)]


async def test_another_users_key_is_refused(api: Api) -> None:
    order, request = await price_request(api)
    theirs = await registered(api)  # demo-approver's key
    token = await login_as_new_user(api, "li.approver", ["approver"])

    result = await api.gql(
        APPROVE,
        {"id": request["id"], "sig": theirs.sign(request["signingPayload"])},
        authorization=f"Bearer {token}",
    )

    assert errors_of(result) == [("SIGNATURE_INVALID", None)]
    await _assert_unchanged(api, order)


async def test_a_revoked_key_is_refused(api: Api) -> None:
    order, request = await price_request(api)
    signer = await registered(api)
    revoked = await api.gql(REVOKE, {"id": signer.kid}, as_="approver")

    result = await api.gql(
        APPROVE,
        {"id": request["id"], "sig": signer.sign(request["signingPayload"])},
        as_="approver",
    )

    assert revoked["data"]["revokeSigningKey"]["revokedAt"]
    assert errors_of(result) == [("SIGNATURE_INVALID", None)]
    await _assert_unchanged(api, order)


async def test_an_expired_request_is_refused_and_marked_expired(api: Api) -> None:
    order, request = await price_request(api)
    signer = await registered(api)
    runtime = api.app.state.runtime
    async with runtime.sessions() as session:
        past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).replace(tzinfo=None)
        await session.execute(
            text("UPDATE approval_requests SET expires_at = :t WHERE id = :id"),
            {"t": past.isoformat(sep=" "), "id": db_id(request["id"])},
        )
        await session.commit()

    result = await api.gql(
        APPROVE,
        {"id": request["id"], "sig": signer.sign(request["signingPayload"])},
        as_="approver",
    )
    status = await api.gql(
        "query($id: ID!) { approvalRequest(id: $id) { status } }",
        {"id": request["id"]},
        as_="approver",
    )

    assert errors_of(result) == [("SIGNATURE_INVALID", None)]
    assert status["data"]["approvalRequest"]["status"] == "EXPIRED"
    await _assert_unchanged(api, order)


async def test_a_replayed_signature_is_refused_on_the_same_request(api: Api) -> None:
    order, request = await refund_request(api, "5.00")
    signer = await registered(api)
    signature = signer.sign(request["signingPayload"])
    await api.gql(APPROVE, {"id": request["id"], "sig": signature}, as_="approver")

    replay = await api.gql(APPROVE, {"id": request["id"], "sig": signature}, as_="approver")
    after = await api.gql(ORDER, {"id": order["id"]}, as_="finance")

    assert errors_of(replay) == [("SIGNATURE_INVALID", None)]
    assert after["data"]["order"]["refundedAmount"] == "5.00"


async def test_a_signature_is_refused_on_a_different_request(api: Api) -> None:
    _, first = await refund_request(api, "5.00")
    order, second = await refund_request(api, "6.00")
    signer = await registered(api)

    result = await api.gql(
        APPROVE, {"id": second["id"], "sig": signer.sign(first["signingPayload"])}, as_="approver"
    )

    assert errors_of(result) == [("SIGNATURE_INVALID", None)]
    await _assert_unchanged(api, order)


async def test_nobody_approves_their_own_request_whatever_their_roles(api: Api) -> None:
    token = await login_as_new_user(api, "wang.both", ["sales", "approver"])
    order = await order_in(api, "PENDING_PAYMENT")
    request = await api.gql(
        PRICE,
        {"line": order["lines"][0]["id"], "price": "50.00", "reason": "x"},
        authorization=f"Bearer {token}",
    )
    request = request["data"]["requestPriceChange"]
    signer = Signer()
    registered_key = await api.gql(REGISTER, {"pem": signer.pem}, authorization=f"Bearer {token}")
    signer.kid = registered_key["data"]["registerSigningKey"]["id"]

    result = await api.gql(
        APPROVE,
        {"id": request["id"], "sig": signer.sign(request["signingPayload"])},
        authorization=f"Bearer {token}",
    )

    assert errors_of(result) == [("SEPARATION_OF_DUTIES", None)]
    await _assert_unchanged(api, order)


async def test_a_change_to_the_order_since_the_request_voids_it(api: Api) -> None:
    order, request = await price_request(api)
    signer = await registered(api)
    await api.gql(
        "mutation($id: ID!) { transitionOrder(id: $id, to: CANCELLED) { status } }",
        {"id": order["id"]},
        as_="warehouse",
    )

    result = await api.gql(
        APPROVE,
        {"id": request["id"], "sig": signer.sign(request["signingPayload"])},
        as_="approver",
    )
    status = await api.gql(
        "query($id: ID!) { approvalRequest(id: $id) { status } }",
        {"id": request["id"]},
        as_="approver",
    )
    after = await api.gql(ORDER, {"id": order["id"]}, as_="finance")

    assert errors_of(result) == [("CONFLICT", None)]
    assert status["data"]["approvalRequest"]["status"] == "VOIDED"
    assert after["data"]["order"]["lines"] == order["lines"]


async def test_a_refund_above_the_amount_paid_is_refused(api: Api) -> None:
    order = await order_in(api, "COMPLETED")
    too_much = str(Decimal(order["total"]) + Decimal("0.01"))

    result = await api.gql(
        REFUND, {"order": order["id"], "amount": too_much, "reason": "x"}, as_="cs"
    )

    assert errors_of(result) == [("BAD_USER_INPUT", None)]


async def test_refunds_add_up_to_at_most_the_amount_paid(api: Api) -> None:
    order = await order_in(api, "COMPLETED")
    total = Decimal(order["total"])
    signer = await registered(api)
    first = await api.gql(
        REFUND, {"order": order["id"], "amount": str(total - 1), "reason": "x"}, as_="cs"
    )
    request = first["data"]["requestRefund"]
    await api.gql(
        APPROVE,
        {"id": request["id"], "sig": signer.sign(request["signingPayload"])},
        as_="approver",
    )

    second = await api.gql(
        REFUND, {"order": order["id"], "amount": "1.01", "reason": "x"}, as_="cs"
    )

    assert errors_of(second) == [("BAD_USER_INPUT", None)]


@pytest.mark.parametrize("amount", ["0.00", "-5.00", "1.234", "1e3", "abc"])
async def test_amounts_must_be_positive_and_within_the_currency_precision(
    api: Api, amount: str
) -> None:
    order = await order_in(api, "COMPLETED")

    result = await api.gql(
        REFUND, {"order": order["id"], "amount": amount, "reason": "x"}, as_="cs"
    )

    assert errors_of(result) == [("BAD_USER_INPUT", None)]


@pytest.mark.parametrize("status", ["PAID", "PICKING", "SHIPPED"])
async def test_prices_do_not_change_once_the_order_is_paid(api: Api, status: str) -> None:
    order = await order_in(api, status)

    result = await api.gql(
        PRICE, {"line": order["lines"][0]["id"], "price": "1.00", "reason": "x"}, as_="sales"
    )

    assert errors_of(result) == [("CONFLICT", None)]


@pytest.mark.parametrize(
    ("mutation", "role"),
    [("price", "cs"), ("price", "finance"), ("refund", "warehouse"), ("refund", "approver")],
)
async def test_only_the_roles_the_contract_names_may_ask(
    api: Api, mutation: str, role: str
) -> None:
    order = await order_in(api, "PAID")
    if mutation == "price":
        result = await api.gql(
            PRICE, {"line": order["lines"][0]["id"], "price": "1.00", "reason": "x"}, as_=role
        )
    else:
        result = await api.gql(
            REFUND, {"order": order["id"], "amount": "1.00", "reason": "x"}, as_=role
        )

    # Roles that may not see approval requests also get one FORBIDDEN per field they asked for.
    assert errors_of(result)[0] == ("FORBIDDEN", None)
    assert nothing_returned(result)


@pytest.mark.parametrize("signature", ["", "abc", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.x"])
async def test_malformed_signatures_are_refused(api: Api, signature: str) -> None:
    _, request = await price_request(api)
    await registered(api)

    result = await api.gql(APPROVE, {"id": request["id"], "sig": signature}, as_="approver")

    assert errors_of(result) == [("SIGNATURE_INVALID", None)]


async def test_only_approvers_may_approve(api: Api) -> None:
    _, request = await refund_request(api)

    result = await api.gql(APPROVE, {"id": request["id"], "sig": "a.b.c"}, as_="finance")

    assert errors_of(result) == [("FORBIDDEN", None)]


async def test_a_rejected_request_cannot_be_approved(api: Api) -> None:
    order, request = await refund_request(api)
    signer = await registered(api)

    rejected = await api.gql(REJECT, {"id": request["id"], "r": "no evidence"}, as_="approver")
    result = await api.gql(
        APPROVE,
        {"id": request["id"], "sig": signer.sign(request["signingPayload"])},
        as_="approver",
    )

    assert rejected["data"]["rejectRequest"] == {"status": "REJECTED", "decidedBy": "demo-approver"}
    assert errors_of(result) == [("CONFLICT", None)]
    await _assert_unchanged(api, {**order, "version": order["version"]})


async def test_requesters_see_their_own_requests_and_approvers_see_all(api: Api) -> None:
    await refund_request(api, as_="cs")
    await price_request(api)

    mine = await api.gql(
        "{ approvalRequests { totalCount edges { node { requestedBy } } } }", as_="cs"
    )
    everyone = await api.gql("{ approvalRequests(status: PENDING) { totalCount } }", as_="approver")
    warehouse = await api.gql("{ approvalRequests { totalCount } }", as_="warehouse")

    assert {e["node"]["requestedBy"] for e in mine["data"]["approvalRequests"]["edges"]} == {
        "demo-cs"
    }
    assert everyone["data"]["approvalRequests"]["totalCount"] == 2
    assert errors_of(warehouse) == [("FORBIDDEN", "ApprovalRequest.id")]


async def test_a_key_cannot_be_registered_twice_or_by_a_non_approver(api: Api) -> None:
    signer = await registered(api)

    again = await api.gql(REGISTER, {"pem": signer.pem}, as_="approver")
    by_cs = await api.gql(REGISTER, {"pem": Signer().pem}, as_="cs")
    rsa_like = await api.gql(
        REGISTER,
        {"pem": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"},
        as_="approver",
    )

    assert errors_of(again) == [("CONFLICT", None)]
    assert errors_of(by_cs) == [("FORBIDDEN", None)]
    assert errors_of(rsa_like) == [("BAD_USER_INPUT", None)]


@pytest.mark.postgres
async def test_two_concurrent_approvals_of_one_request_exactly_one_wins(pg_api: Api) -> None:
    order, request = await refund_request(pg_api, "7.00")
    signer = await registered(pg_api)
    signature = signer.sign(request["signingPayload"])

    results = await asyncio.gather(
        *[
            pg_api.gql(APPROVE, {"id": request["id"], "sig": signature}, as_="approver")
            for _ in range(4)
        ]
    )
    after = await pg_api.gql(ORDER, {"id": order["id"]}, as_="finance")

    winners = [r for r in results if r["data"]["approveRequest"]]
    assert len(winners) == 1
    assert all(
        errors_of(r)[0][0] in ("CONFLICT", "SIGNATURE_INVALID") for r in results if r not in winners
    )
    assert after["data"]["order"]["refundedAmount"] == "7.00"


# ---- expiry, the signing command, verification years later -----------------------------------


async def _age(api: Api, request_id: str) -> None:
    runtime = api.app.state.runtime
    async with runtime.sessions() as session:
        await session.execute(
            text("UPDATE approval_requests SET expires_at = created_at WHERE id = :id"),
            {"id": db_id(request_id)},
        )
        await session.commit()


async def test_pending_requests_expire_on_their_own(any_api: Api) -> None:
    _, request = await refund_request(any_api)
    await _age(any_api, request["id"])
    runtime = any_api.app.state.runtime

    listed = await any_api.gql(
        "{ approvalRequests(status: EXPIRED) { totalCount } }", as_="approver"
    )
    await _expire_requests(runtime)

    assert listed["data"]["approvalRequests"]["totalCount"] == 1
    [event] = await events(any_api, action="approval.expire")
    assert event["target_id"] == str(db_id(request["id"]))
    assert event["username"] == "ordergate-server"


async def test_the_sign_command_shows_the_summary_and_prints_a_jws_the_api_accepts(
    api: Api, database_url: str, tmp_path: Path
) -> None:
    _order, request = await refund_request(api, "12.34")
    signer = await registered(api)
    key_file = tmp_path / "approver.pem"
    key_file.write_bytes(
        signer.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    declined = await asyncio.to_thread(
        _run,
        ["sign", "--key", str(key_file), "--request", request["id"]],
        database_url,
        tmp_path,
        "n\n",
    )
    signed = await asyncio.to_thread(
        _run,
        ["sign", "--key", str(key_file), "--request", request["id"]],
        database_url,
        tmp_path,
        "y\n",
    )
    result = await api.gql(
        APPROVE, {"id": request["id"], "sig": signed.stdout.strip()}, as_="approver"
    )

    assert declined.returncode == 1
    assert declined.stdout == ""
    assert "Refund 12.34 CNY" in signed.stderr
    assert signed.returncode == 0, signed.stderr
    assert result["data"]["approveRequest"]["status"] == "APPROVED"


async def test_audit_verify_re_verifies_every_stored_signature(api: Api, database_url: str) -> None:
    _, request = await refund_request(api)
    signer = await registered(api)
    await api.gql(
        APPROVE,
        {"id": request["id"], "sig": signer.sign(request["signingPayload"])},
        as_="approver",
    )
    runtime = api.app.state.runtime

    async with runtime.sessions() as session:
        checked, clean = await verify_signatures(session=session)
        await session.execute(
            text(
                "UPDATE approval_requests SET payload = replace(payload, '10.00', '99.00') "
                "WHERE id = :id"
            ),
            {"id": db_id(request["id"])},
        )
        await session.commit()
        _, tampered = await verify_signatures(session=session)

    assert checked == 1
    assert clean == []
    assert tampered == [
        f"approval request {db_id(request['id'])}: signed payload differs from the stored one"
    ]


# ---- listing one's keys (the approver's page revokes from this list) --------------------------

KEYS = "{ signingKeys { id fingerprint createdAt revokedAt } }"


@pytest.mark.parametrize("role", ROLES)
async def test_who_may_list_signing_keys_follows_the_policy(api: Api, role: str) -> None:
    result = await api.gql(KEYS, as_=role)

    if role in OPERATIONS["approval:sign"]:
        assert result["data"]["signingKeys"] == []
    else:
        assert errors_of(result) == [("FORBIDDEN", None)]
        assert result["data"] is None


async def test_an_approver_lists_only_their_own_keys_newest_first_revoked_ones_kept(
    api: Api,
) -> None:
    older = await registered(api)
    newer = await registered(api)
    other_token = await login_as_new_user(api, "approver-two", ["approver"])
    other = Signer()
    other_key = await api.gql(REGISTER, {"pem": other.pem}, authorization=f"Bearer {other_token}")
    revoked = await api.gql(REVOKE, {"id": older.kid}, as_="approver")
    assert "errors" not in revoked, revoked

    mine = (await api.gql(KEYS, as_="approver"))["data"]["signingKeys"]
    theirs = (await api.gql(KEYS, authorization=f"Bearer {other_token}"))["data"]["signingKeys"]

    assert [k["id"] for k in mine] == [newer.kid, older.kid]
    assert mine[0]["revokedAt"] is None
    assert mine[1]["revokedAt"] is not None
    assert [k["fingerprint"] for k in theirs] == [
        other_key["data"]["registerSigningKey"]["fingerprint"]
    ]
