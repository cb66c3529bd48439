"""The printable picking list in headless Chromium: the warehouse signs in on the page, sees
the list it picks (read through GraphQL under its field policy), prints it on A4 with the
screen controls gone; a buyer's text is shown as text, never run as markup."""

from __future__ import annotations

import io
import unicodedata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from pypdf import PdfReader

from api.pages import PAGES_CSP
from domain.access import POLICY_DIR
from tests.api.test_intake import INGEST, channel_order
from tests.conftest import DEMO_PASSWORD
from tests.integration.test_live_server import _serve
from tests.support import LIVE_TIMEOUT

ARTEFACT = Path(__file__).resolve().parents[2] / "var" / "picking-list.png"
HOSTILE = '<img src=x onerror="window.pwned=1">'


def _gql(base: str, query: str, variables: dict, username: str | None = None) -> dict:
    headers = {}
    if username is not None:
        login = _gql(
            base,
            "mutation($u: String!, $p: String!) { login(username: $u, password: $p) "
            "{ accessToken } }",
            {"u": username, "p": DEMO_PASSWORD},
        )
        headers["authorization"] = f"Bearer {login['data']['login']['accessToken']}"
    answer = httpx.post(
        f"{base}/graphql",
        json={"query": query, "variables": variables},
        headers=headers,
        timeout=LIVE_TIMEOUT,
    )
    return answer.json()


def _all_lists(base: str) -> list[dict]:
    query = """query($after: String) { pickingLists(first: 100, after: $after) {
      pageInfo { hasNextPage endCursor } edges { node { id number order { externalId } } } } }"""
    found: list[dict] = []
    after = None
    while True:
        page = _gql(base, query, {"after": after}, "demo-warehouse")["data"]["pickingLists"]
        found += [e["node"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return found
        after = page["pageInfo"]["endCursor"]


def test_the_warehouse_opens_and_prints_a_picking_list(
    browser: Any, database_url: str, tmp_path: Path
) -> None:
    order = channel_order(
        "TB-PRINT-1",
        shippingAddress={**channel_order("x")["shippingAddress"], "recipient": HOSTILE},
    )
    with _serve(database_url, tmp_path, POLICY_DIR, poll="0") as (base, _):
        landed = _gql(base, INGEST, {"c": "TAOBAO", "o": [order]}, "demo-integration")
        assert landed["data"]["ingestOrders"]["results"][0]["outcome"] == "CREATED"
        [node] = [n for n in _all_lists(base) if n["order"]["externalId"] == "TB-PRINT-1"]
        shell = httpx.get(f"{base}/picking-lists/{node['id']}", timeout=LIVE_TIMEOUT)

        page = browser.new_page(viewport={"width": 1280, "height": 900})
        refused: list[str] = []
        problems: list[str] = []

        def only_this_server(route: Any) -> None:
            if urlsplit(route.request.url).netloc == urlsplit(base).netloc:
                route.continue_()
            else:
                refused.append(route.request.url)
                route.abort()

        page.route("**/*", only_this_server)
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))

        page.goto(f"{base}/picking-lists/{node['id']}")
        page.fill("#og-username", "demo-warehouse")
        page.fill("#og-password", DEMO_PASSWORD)
        page.click("#og-login-button")
        page.wait_for_selector("#og-sheet:not([hidden])", timeout=30_000)
        number = page.inner_text("#pk-number")
        rows = page.eval_on_selector_all(
            "#pk-lines tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
        )
        recipient = page.inner_text("#pk-recipient")
        pwned = page.evaluate(
            "() => window.pwned === undefined && !document.querySelector('dd img')"
        )
        login_left_on_screen = page.is_visible("#og-login")
        stored_token = page.evaluate("() => JSON.stringify(localStorage) + document.cookie")
        ARTEFACT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTEFACT), full_page=True)
        page.emulate_media(media="print")
        print_button_shown = page.is_visible("#pk-print")
        login_shown = page.is_visible("#og-login")
        pdf = page.pdf(format="A4", print_background=True)
        page.close()

    assert shell.headers["content-security-policy"] == PAGES_CSP
    assert "frame-ancestors 'none'" in PAGES_CSP
    assert "'unsafe-inline'" not in PAGES_CSP
    assert "<script>" not in shell.text  # no inline script: the CSP would refuse it anyway
    assert refused == []
    assert problems == []
    assert number == node["number"]
    names = [r[2] for r in rows]
    assert rows == [["1", "SKU-0001", names[0], "2", ""], ["2", "SKU-0002", names[1], "1", ""]]
    assert all(names)  # the products' names
    assert HOSTILE in recipient  # the buyer's text, shown as text
    assert pwned
    assert stored_token == "{}"  # the token is in the page's memory only
    assert not login_left_on_screen
    assert not print_button_shown
    assert not login_shown
    # NFKC: the PDF's text layer names some glyphs by their Kangxi radical code points.
    text = unicodedata.normalize("NFKC", PdfReader(io.BytesIO(pdf)).pages[0].extract_text())
    text = text.replace("\n", "")
    assert node["number"] in text
    assert "Picked by" in text
    # Chinese product names print as themselves (a CJK font is installed), not as blanks.
    assert all(name in text.replace(" ", "") for name in names), (names, text)
    assert "Sign in" not in text
    assert "Print" not in text.replace("Printed", "")
