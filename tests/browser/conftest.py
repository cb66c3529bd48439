"""Pages in a real headless browser: Debian's `chromium`, driven by Playwright (no browser is
downloaded). `.ci/run` installs chromium with apt-get; without it these tests are skipped with
that reason, except under CI=true, where a missing browser fails."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = os.environ.get("ORDERGATE_CHROMIUM") or shutil.which("chromium")
BROWSER_TIMEZONE = "Pacific/Honolulu"

FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def _unavailable() -> str | None:
    if CHROMIUM is None:
        return "chromium is not installed (Debian: apt-get install chromium; .ci/run does)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture
def browser(database_url: str) -> Iterator[Any]:
    """A headless chromium. Playwright's sync API runs an event loop while it is open, so
    the database (set up with asyncio.run) is made first."""
    if (why := _unavailable()) is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run in CI: {why}")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # The browser lives in Honolulu (UTC-10): its date differs from the business day
        # (Asia/Shanghai, UTC+8) for 18 hours of every day, so a page that takes its days from
        # the browser's clock instead of the server fails here, whenever the suite runs.
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=FLAGS, env={**os.environ, "TZ": BROWSER_TIMEZONE}
        )
        try:
            yield launched
        finally:
            launched.close()
