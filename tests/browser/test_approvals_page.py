"""The approver's inbox (/approvals) in headless Chromium, against a live server.

The approver enrols this browser (a non-extractable WebCrypto Ed25519 key kept in IndexedDB),
reads a request from the exact bytes it will sign, signs it, and the change is applied; the
signatures the page makes pass `audit verify` like CLI ones. A request whose order changed
after it was asked for is refused in plain words; a reason carrying markup is shown as text.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from api.pages import PAGES_CSP
from domain.access import POLICY_DIR
from tests.api.test_intake import INGEST, channel_order
from tests.browser.test_picking_page import _gql
from tests.conftest import DEMO_PASSWORD, TOKEN_KEYS
from tests.integration.test_live_server import _serve
from tests.support import LIVE_TIMEOUT

VAR = Path(__file__).resolve().parents[2] / "var"
REFUND = """mutation($o: ID!, $a: Money!, $r: String!) {
  requestRefund(orderId: $o, amount: $a, reason: $r) { id status signingPayload } }"""
REQUEST = """query($id: ID!) { approvalRequest(id: $id) {
  status decidedBy keyFingerprint decisionReason } }"""
ORDER = "query($id: ID!) { order(id: $id) { status version refundedAmount } }"
KEYS = "{ signingKeys { id fingerprint revokedAt } }"
HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2"> 客户要求退款'


def _ingest(base: str, external_id: str) -> str:
    landed = _gql(
        base, INGEST, {"c": "TAOBAO", "o": [channel_order(external_id)]}, "demo-integration"
    )
    [result] = landed["data"]["ingestOrders"]["results"]
    assert result["outcome"] == "CREATED", result
    return result["order"]["id"]


def _refund(base: str, order_id: str, amount: str, reason: str) -> dict:
    asked = _gql(base, REFUND, {"o": order_id, "a": amount, "r": reason}, "demo-cs")
    assert "errors" not in asked, asked
    return asked["data"]["requestRefund"]


class Approver:
    """One approver's browser tab on /approvals: only this server may be reached, and every
    console error or uncaught exception is collected."""

    def __init__(self, browser_context: Any, base: str) -> None:
        self.base = base
        self.page = browser_context.new_page()
        self.refused: list[str] = []
        self.problems: list[str] = []
        self.page.route("**/*", self._only_this_server)
        self.page.on(
            "console", lambda m: self.problems.append(m.text) if m.type == "error" else None
        )
        self.page.on("pageerror", lambda e: self.problems.append(str(e)))

    def _only_this_server(self, route: Any) -> None:
        if urlsplit(route.request.url).netloc == urlsplit(self.base).netloc:
            route.continue_()
        else:
            self.refused.append(route.request.url)
            route.abort()

    def open(self, username: str = "demo-approver") -> None:
        """Load the page (a reload signs out: the token lives in memory) and sign in."""
        self.page.goto(f"{self.base}/approvals")
        self.page.fill("#og-username", username)
        self.page.fill("#og-password", DEMO_PASSWORD)
        self.page.click("#og-login-button")
        self.page.wait_for_selector("body[data-ready=true]", timeout=30_000)

    def enrol(self) -> str:
        self.page.click("#ap-enrol")
        self.page.wait_for_selector("#ap-device-key:not([hidden])", timeout=30_000)
        return self.page.inner_text("#ap-device-fingerprint")

    def choose(self, request_id: str) -> None:
        self.page.click(f"#ap-inbox button[data-request-id='{request_id}']")
        self.page.wait_for_selector("#ap-detail:not([hidden])")

    def outcome(self, action: str) -> tuple[str, str]:
        """Click, then wait for the page's answer: (status text, error text)."""
        self.page.evaluate(
            "() => { for (const id of ['ap-status', 'ap-error']) "
            "document.getElementById(id).hidden = true; }"
        )
        self.page.click(action)
        self.page.wait_for_selector("#ap-status:not([hidden]), #ap-error:not([hidden])")
        self.page.wait_for_timeout(200)  # the inbox reloads after the answer
        status = self.page.inner_text("#ap-status") if self.page.is_visible("#ap-status") else ""
        error = self.page.inner_text("#ap-error") if self.page.is_visible("#ap-error") else ""
        return status, error

    def stored_key(self) -> dict | None:
        """What this browser keeps in IndexedDB for the approver."""
        return self.page.evaluate(
            """() => new Promise((resolve, reject) => {
                 const opening = indexedDB.open("ordergate-approvals", 1);
                 opening.onsuccess = () => {
                   const get = opening.result.transaction("keys").objectStore("keys")
                     .get("demo-approver");
                   get.onsuccess = () => {
                     const r = get.result;
                     resolve(r ? { keyId: r.keyId, fingerprint: r.fingerprint,
                                   type: r.privateKey.type,
                                   algorithm: r.privateKey.algorithm.name,
                                   extractable: r.privateKey.extractable,
                                   usages: r.privateKey.usages } : null);
                   };
                 };
                 opening.onerror = () => reject(opening.error);
               })"""
        )


@pytest.fixture
def live(database_url: str, tmp_path: Path) -> Iterator[str]:
    with _serve(database_url, tmp_path, POLICY_DIR, poll="0") as (base, _):
        yield base


def _audit_verify(database_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ORDERGATE_DATA_DIR": str(tmp_path),
        "ORDERGATE_TOKEN_KEYS": TOKEN_KEYS,
    }
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_approver_enrols_this_device_reads_the_payload_signs_and_the_refund_applies(
    browser: Any, live: str, database_url: str, tmp_path: Path
) -> None:
    base = live
    order_id = _ingest(base, "TB-APPROVE-1")
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    tab = Approver(context, base)
    tab.open()
    shell = httpx.get(f"{base}/approvals", timeout=LIVE_TIMEOUT)
    fingerprint = tab.enrol()
    kept = tab.stored_key()

    # A cs agent asks for a refund while the approver is away; the approver comes back.
    asked = _refund(base, order_id, "12.30", "快递破损 客户要求部分退款")
    tab.open()  # a new sign-in: the device key is still in this browser
    still_enrolled = tab.page.is_visible("#ap-device-key")
    inbox = tab.page.eval_on_selector_all(
        "#ap-inbox button", "buttons => buttons.map(b => b.dataset.requestId)"
    )
    tab.choose(asked["id"])
    shown = {
        name: tab.page.inner_text(f"#ap-{name}")
        for name in ("amount", "refunded", "requester", "reason", "order")
    }
    shown["payload"] = tab.page.text_content("#ap-payload")  # inside a closed <details>
    change = tab.page.eval_on_selector_all(
        "#ap-change tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    VAR.mkdir(exist_ok=True)
    tab.page.screenshot(path=str(VAR / "approvals-inbox.png"), full_page=True)
    status, error = tab.outcome("#ap-sign")
    after_signing = tab.page.eval_on_selector_all(
        "#ap-inbox button", "buttons => buttons.map(b => b.dataset.requestId)"
    )
    tab.page.screenshot(path=str(VAR / "approvals-signed.png"), full_page=True)

    decided = _gql(base, REQUEST, {"id": asked["id"]}, "demo-approver")["data"]["approvalRequest"]
    order = _gql(base, ORDER, {"id": order_id}, "demo-finance")["data"]["order"]
    verified = _audit_verify(database_url, tmp_path)

    # Revoking this device's key from the page: it can no longer sign, and says so.
    [row_key] = tab.page.eval_on_selector_all(
        "#ap-keys tbody tr", "rows => rows.map(r => r.dataset.keyId)"
    )
    tab.page.click(f"#ap-keys tr[data-key-id='{row_key}'] button.revoke")
    tab.page.wait_for_selector("#ap-enrol:not([hidden])")
    keys_after = _gql(base, KEYS, {}, "demo-approver")["data"]["signingKeys"]
    kept_after_revoke = tab.stored_key()
    verified_after_revoke = _audit_verify(database_url, tmp_path)
    stored_token = tab.page.evaluate("() => JSON.stringify(localStorage) + document.cookie")
    tab.page.close()
    context.close()

    assert shell.headers["content-security-policy"] == PAGES_CSP
    assert "<script>" not in shell.text
    assert tab.refused == []
    assert tab.problems == []
    # The device key: Ed25519, private, non-extractable, and the server holds its public half.
    assert kept == {
        "keyId": row_key,
        "fingerprint": fingerprint,
        "type": "private",
        "algorithm": "Ed25519",
        "extractable": False,
        "usages": ["sign"],
    }
    assert len(fingerprint) == 64
    assert still_enrolled
    # The inbox and the view come from the payload the server will check the signature against.
    assert inbox == [asked["id"]]
    assert shown["payload"] == asked["signingPayload"]
    assert shown["amount"] == "12.30 CNY"
    assert shown["refunded"] == "0.00 CNY"
    assert shown["requester"] == "demo-cs"
    assert shown["reason"] == "快递破损 客户要求部分退款"
    assert change[-1] == ["This refund", "—", "12.30 CNY"]
    assert error == ""
    assert status.startswith("Approved and applied: refund of 12.30 CNY on order"), status
    assert after_signing == []
    assert decided["status"] == "APPROVED"
    assert decided["decidedBy"] == "demo-approver"
    assert decided["keyFingerprint"] == fingerprint
    assert order["refundedAmount"] == "12.30"
    # `audit verify` re-verifies the browser's JWS against the stored public key, before and
    # after the key is revoked.
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "OK  1 approval signature(s) re-verified" in verified.stdout
    assert verified_after_revoke.returncode == 0
    assert "OK  1 approval signature(s) re-verified" in verified_after_revoke.stdout
    assert [k["id"] for k in keys_after] == [row_key]
    assert keys_after[0]["revokedAt"] is not None
    assert kept_after_revoke is None
    assert stored_token == "{}"


def test_a_request_whose_order_changed_is_refused_in_plain_words(browser: Any, live: str) -> None:
    base = live
    order_id = _ingest(base, "TB-APPROVE-2")
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    tab = Approver(context, base)
    tab.open()
    tab.enrol()
    asked = _refund(base, order_id, "20.00", "客户取消部分商品")
    tab.page.click("#ap-refresh")  # the inbox picks it up without signing in again
    tab.page.wait_for_selector(f"#ap-inbox button[data-request-id='{asked['id']}']")
    # After the request, the warehouse moves the order on: what was asked about is gone.
    moved = _gql(
        base,
        "mutation($id: ID!) { transitionOrder(id: $id, to: PICKING) { status version } }",
        {"id": order_id},
        "demo-warehouse",
    )
    assert "errors" not in moved, moved
    tab.choose(asked["id"])
    shown_amount = tab.page.inner_text("#ap-amount")
    status, error = tab.outcome("#ap-sign")
    tab.page.screenshot(path=str(VAR / "approvals-refused.png"), full_page=True)
    inbox = tab.page.eval_on_selector_all(
        "#ap-inbox button", "buttons => buttons.map(b => b.dataset.requestId)"
    )
    tab.page.close()
    context.close()
    decided = _gql(base, REQUEST, {"id": asked["id"]}, "demo-approver")["data"]["approvalRequest"]
    order = _gql(base, ORDER, {"id": order_id}, "demo-finance")["data"]["order"]

    assert tab.problems == []
    assert shown_amount == "20.00 CNY"
    assert status == ""
    assert error.startswith("This request can no longer be approved as shown"), error
    assert "changed since the request" in error  # the server's own sentence follows
    assert decided["status"] == "VOIDED"
    assert order["refundedAmount"] == "0.00"
    assert order["status"] == "PICKING"
    assert inbox == []  # void: nothing left to sign


def test_a_reason_with_markup_is_shown_as_text_and_never_runs(browser: Any, live: str) -> None:
    base = live
    order_id = _ingest(base, "TB-APPROVE-3")
    asked = _refund(base, order_id, "5.00", HOSTILE)
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    tab = Approver(context, base)
    tab.open()
    tab.choose(asked["id"])
    reason = tab.page.inner_text("#ap-reason")
    payload = tab.page.text_content("#ap-payload")
    untouched = tab.page.evaluate(
        "() => window.pwned === undefined && !document.querySelector('#ap-main img, "
        "#ap-main script')"
    )
    sign_disabled = tab.page.is_disabled("#ap-sign")  # this browser is not enrolled
    tab.page.fill("#ap-reject-reason", "金额与照片不符")
    status, error = tab.outcome("#ap-reject")
    tab.page.screenshot(path=str(VAR / "approvals-markup.png"), full_page=True)
    tab.page.close()
    context.close()
    decided = _gql(base, REQUEST, {"id": asked["id"]}, "demo-approver")["data"]["approvalRequest"]

    assert tab.problems == []
    assert reason == HOSTILE
    assert HOSTILE.replace('"', '\\"') in payload
    assert untouched
    assert sign_disabled
    assert error == ""
    assert status.startswith("Rejected: Refund on order")
    assert decided["status"] == "REJECTED"
    assert decided["decisionReason"] == "金额与照片不符"


def test_exports_wait_for_each_level_and_are_approved_from_the_page(
    browser: Any, live: str
) -> None:
    base = live
    asked = _gql(
        base,
        """mutation($input: ExportInput!) { requestExport(input: $input) { id status } }""",
        {
            "input": {
                "entity": "ORDERS",
                "fields": ["number", "status", "total"],
                "filter": {"status": ["PAID"]},
                "reason": "月度对账 <b>Q4</b>",
            }
        },
        "demo-ops",
    )["data"]["requestExport"]
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    approver = Approver(context, base)
    approver.open("demo-approver")
    l1_rows = approver.page.eval_on_selector_all(
        "#ap-export-list tbody tr", "rows => rows.map(r => r.dataset.exportId)"
    )
    reason_cell = approver.page.inner_text(
        f"#ap-export-list tr[data-export-id='{asked['id']}'] td.reason"
    )
    l1_status, l1_error = approver.outcome(
        f"#ap-export-list tr[data-export-id='{asked['id']}'] button.approve-export"
    )
    approver.page.close()
    compliance = Approver(context, base)
    compliance.open("demo-compliance")
    device_section = compliance.page.is_visible("#ap-device")
    l2_rows = compliance.page.eval_on_selector_all(
        "#ap-export-list tbody tr", "rows => rows.map(r => r.dataset.exportId)"
    )
    l2_status, l2_error = compliance.outcome(
        f"#ap-export-list tr[data-export-id='{asked['id']}'] button.approve-export"
    )
    compliance.page.screenshot(path=str(VAR / "approvals-export.png"), full_page=True)
    compliance.page.close()
    context.close()
    final = _gql(
        base,
        "query($id: ID!) { exportRequest(id: $id) { status approvedL1By approvedL2By } }",
        {"id": asked["id"]},
        "demo-ops",
    )["data"]["exportRequest"]

    assert approver.problems == []
    assert compliance.problems == []
    assert l1_rows == [asked["id"]]
    assert reason_cell == "月度对账 <b>Q4</b>"
    assert (l1_status, l1_error) == ("Export approved; it is now pending l2.", "")
    assert not device_section  # compliance signs nothing: no device key to enrol
    assert l2_rows == [asked["id"]]
    assert l2_error == ""
    assert l2_status.startswith("Export approved; it is now ")
    assert final["approvedL1By"] == "demo-approver"
    assert final["approvedL2By"] == "demo-compliance"
    assert final["status"] in {"APPROVED", "READY"}


def test_a_key_revoked_elsewhere_is_refused_in_plain_words_and_a_new_enrolment_signs_a_price(
    browser: Any, live: str
) -> None:
    base = live
    landed = _gql(
        base,
        INGEST,
        {
            "c": "TAOBAO",
            "o": [channel_order("TB-APPROVE-5", status="PENDING_PAYMENT", paidAt=None)],
        },
        "demo-integration",
    )
    order_id = landed["data"]["ingestOrders"]["results"][0]["order"]["id"]
    lines = _gql(
        base,
        "query($id: ID!) { order(id: $id) { lines { id sku } } }",
        {"id": order_id},
        "demo-sales",
    )["data"]["order"]["lines"]
    line = next(x for x in lines if x["sku"] == "SKU-0001")
    asked = _gql(
        base,
        """mutation($l: ID!, $p: Money!, $r: String!) {
          requestPriceChange(orderLineId: $l, newUnitPrice: $p, reason: $r) { id } }""",
        {"l": line["id"], "p": "49.90", "r": "直播间价格"},
        "demo-sales",
    )["data"]["requestPriceChange"]
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    tab = Approver(context, base)
    tab.open()
    tab.enrol()
    [first_key] = _gql(base, KEYS, {}, "demo-approver")["data"]["signingKeys"]
    # Revoked from another device while this tab still holds it.
    _gql(
        base,
        "mutation($id: ID!) { revokeSigningKey(id: $id) { id } }",
        {"id": first_key["id"]},
        "demo-approver",
    )
    tab.choose(asked["id"])
    change = tab.page.eval_on_selector_all(
        "#ap-change tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    shown_line = tab.page.inner_text("#ap-line")
    refunded_row_shown = tab.page.is_visible("#ap-refunded-row")
    _, refused = tab.outcome("#ap-sign")
    tab.page.click("#ap-refresh")  # the page learns the key is revoked and forgets it
    tab.page.wait_for_selector("#ap-enrol:not([hidden])")
    sign_disabled_without_key = tab.page.is_disabled("#ap-sign")
    tab.enrol()
    status, error = tab.outcome("#ap-sign")
    tab.page.close()
    context.close()
    order = _gql(
        base,
        "query($id: ID!) { order(id: $id) { lines { sku unitPrice } } }",
        {"id": order_id},
        "demo-sales",
    )["data"]["order"]

    assert tab.problems == []
    assert change == [["Unit price of SKU-0001", "59.90 CNY", "49.90 CNY"]]
    assert shown_line.startswith("SKU-0001 · ")
    assert shown_line.endswith(" · \N{MULTIPLICATION SIGN}2")
    assert not refunded_row_shown
    assert refused.startswith("The signature was refused"), refused
    assert "revoked" in refused
    assert sign_disabled_without_key
    assert error == ""
    assert status.startswith("Approved and applied: price change of 49.90 CNY per unit")
    assert {x["sku"]: x["unitPrice"] for x in order["lines"]}["SKU-0001"] == "49.90"
