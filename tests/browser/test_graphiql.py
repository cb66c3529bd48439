"""GraphiQL in headless Chromium, with every request off this machine refused: the page loads
from the package, logs in through POST and runs a query."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from domain.access import POLICY_DIR
from tests.conftest import DEMO_PASSWORD
from tests.integration.test_live_server import _serve


def test_graphiql_works_offline_logs_in_by_post_and_runs_a_query(
    browser: Any, database_url: str, tmp_path: Path
) -> None:
    with _serve(database_url, tmp_path, POLICY_DIR, poll="0") as (base, _):
        page = browser.new_page()
        requests: list[tuple[str, str, str | None]] = []
        refused: list[str] = []
        problems: list[str] = []

        def only_this_server(route: Any) -> None:
            if urlsplit(route.request.url).netloc == urlsplit(base).netloc:
                route.continue_()
            else:  # a CDN, fonts, anything: the machine is offline as far as the page knows
                refused.append(route.request.url)
                route.abort()

        page.route("**/*", only_this_server)
        page.on("request", lambda r: requests.append((r.method, r.url, r.post_data)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))

        page.goto(f"{base}/graphql")
        page.fill("#og-username", "demo-cs")
        page.fill("#og-password", DEMO_PASSWORD)
        page.click("#og-login-button")
        page.wait_for_selector("#og-who:has-text('demo-cs')")
        # The schema loads once logged in (anonymous callers may not introspect).
        page.wait_for_selector(".graphiql-execute-button", timeout=30_000)
        page.click(".graphiql-execute-button")
        page.wait_for_selector(".result-window :text('totalCount')", timeout=30_000)
        result = page.inner_text(".result-window")
        url_after = page.url
        page.close()

    assert refused == []
    assert problems == []
    assert '"username": "demo-cs"' in result
    assert '"number"' in result
    logins = [(m, u, body) for m, u, body in requests if body and "login(" in body]
    assert [(m, urlsplit(u).path) for m, u, _ in logins] == [("POST", "/graphql")]
    assert all(DEMO_PASSWORD not in u for _, u, _ in requests)
    assert DEMO_PASSWORD not in url_after
