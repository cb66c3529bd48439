"""The operations dashboard in headless Chromium: a manager signs in, sees the three KPI cards
and charts with their thresholds, changes a filter and sees the chart change; nothing is
fetched from anywhere but the app."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import httpx

from api.pages import PAGES_CSP
from tests.api.test_intake import INGEST, channel_order
from tests.browser.test_approvals_page import VAR, Approver, live  # noqa: F401 - the fixture
from tests.browser.test_picking_page import _gql
from tests.conftest import DEMO_PASSWORD
from tests.support import LIVE_TIMEOUT

CHART = "#db-charts figure[data-kpi=ORDER_TIMELINESS] path.series"


def _today_orders(base: str) -> None:
    """Two orders placed a minute ago: the Taobao one already shipped, the JD one not."""
    created = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
    shipped = channel_order(
        "TB-DASH-1",
        status="SHIPPED",
        createdAt=created,
        paidAt=created,
        carrier="SF",
        trackingNumber="SF1234567890",
    )
    waiting = channel_order("JD-DASH-1", createdAt=created, paidAt=created)
    for channel, order in (("TAOBAO", shipped), ("JD", waiting)):
        landed = _gql(base, INGEST, {"c": channel, "o": [order]}, "demo-integration")
        assert landed["data"]["ingestOrders"]["results"][0]["outcome"] == "CREATED", landed


def test_a_manager_filters_the_dashboard_and_the_chart_changes(browser: Any, live: str) -> None:  # noqa: F811
    base = live
    _today_orders(base)
    shell = httpx.get(f"{base}/dashboard", timeout=LIVE_TIMEOUT)
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    tab = Approver(context, base)  # only this server may be reached; errors are collected
    page = tab.page
    page.goto(f"{base}/dashboard")
    page.fill("#og-username", "demo-ops")
    page.fill("#og-password", DEMO_PASSWORD)
    page.click("#og-login-button")
    page.wait_for_selector("#db-main[data-loaded]", timeout=30_000)
    cards = page.eval_on_selector_all(
        "#db-cards article",
        "cards => cards.map(c => [c.dataset.kpi, c.querySelector('h2').textContent])",
    )
    thresholds = page.eval_on_selector_all(
        "#db-charts figure", "figs => figs.map(f => !!f.querySelector('line.threshold'))"
    )
    categories = page.eval_on_selector_all("#db-category option", "os => os.map(o => o.value)")
    tasks_shown = page.is_visible("#db-tasks")

    page.select_option("#db-channel", "TAOBAO")
    page.wait_for_selector("#db-main[data-loaded='30|TAOBAO|']")
    taobao_path = page.get_attribute(CHART, "d")
    taobao_card = page.inner_text("#db-cards article[data-kpi=ORDER_TIMELINESS] .big")
    page.select_option("#db-channel", "JD")
    page.wait_for_selector("#db-main[data-loaded='30|JD|']")
    jd_path = page.get_attribute(CHART, "d")
    jd_card = page.inner_text("#db-cards article[data-kpi=ORDER_TIMELINESS] .big")
    VAR.mkdir(exist_ok=True)
    page.screenshot(path=str(VAR / "dashboard.png"), full_page=True)
    page.select_option("#db-period", "7")
    page.wait_for_selector("#db-main[data-loaded='7|JD|']")
    week_points = page.eval_on_selector_all(
        "#db-charts figure[data-kpi=ORDER_TIMELINESS] circle", "cs => cs.length"
    )
    # Today's completeness is the worker's snapshot (`serve` runs the worker in development):
    # the card says when it was taken. Reload until the first one exists.
    taken = None
    for attempt in range(20):
        period = ("30", "7")[attempt % 2]
        page.select_option("#db-period", period)
        page.wait_for_selector(f"#db-main[data-loaded='{period}|JD|']")
        found = page.query_selector("#db-cards article[data-kpi=CUSTOMER_COMPLETENESS] .asof")
        if found is not None:
            taken = found.inner_text()
            break
        page.wait_for_timeout(500)
    page.emulate_media(media="print")
    print_hidden = not page.is_visible("#db-print")
    page.close()
    context.close()

    assert shell.headers["content-security-policy"] == PAGES_CSP
    assert "<script>" not in shell.text
    assert tab.refused == []
    assert tab.problems == []
    assert [c[0] for c in cards] == ["ORDER_TIMELINESS", "STOCK_ACCURACY", "CUSTOMER_COMPLETENESS"]
    assert thresholds == [True, True, True]
    assert {"DIGITAL", "HOME"} <= set(categories)
    assert tasks_shown
    assert taobao_path
    assert jd_path
    assert taobao_path != jd_path  # the filter changed the chart
    assert taobao_card != jd_card
    assert week_points >= 1
    assert taken is not None
    assert taken.startswith("as of ")
    assert print_hidden


def test_the_dashboard_shell_is_served_with_the_pages_policy(live: str, tmp_path: Path) -> None:  # noqa: F811
    shell = httpx.get(f"{live}/dashboard", timeout=LIVE_TIMEOUT)
    assert shell.status_code == 200
    assert shell.headers["content-security-policy"] == PAGES_CSP
