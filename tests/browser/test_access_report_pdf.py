"""The HTML access report printed to PDF by headless Chromium: findings on the first page,
every column inside the page, the keep/revoke column and the charts on paper."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from pypdf import PdfReader

from tests.api.test_access_report import current_quarter
from tests.integration.test_cli import _run

# A4 landscape less the report's 12 mm margins, in CSS pixels (96 per inch).
PRINTABLE_WIDTH = round((297 - 24) / 25.4 * 96)


def test_the_access_report_prints_to_pdf_as_a_document(
    browser: Any, database_url: str, tmp_path: Path
) -> None:
    html_file = tmp_path / "report.html"
    made = _run(
        [
            "report",
            "access",
            "--quarter",
            current_quarter(),
            "--format",
            "html",
            "--output",
            str(html_file),
        ],
        database_url,
        tmp_path,
    )
    assert made.returncode == 0, made.stderr

    page = browser.new_page(viewport={"width": PRINTABLE_WIDTH, "height": 800})
    outside: list[str] = []
    page.route(
        "**/*",
        lambda route: (
            route.continue_()
            if route.request.url.startswith("file://")
            else (outside.append(route.request.url), route.abort())
        ),
    )
    page.goto(html_file.as_uri())
    page.emulate_media(media="print")
    overflowing = page.evaluate(
        """() => {
              const width = document.documentElement.clientWidth + 1;
              return [...document.querySelectorAll('table, svg')]
                .filter(e => e.getBoundingClientRect().right > width)
                .map(e => e.outerHTML.slice(0, 80));
            }"""
    )
    pdf = page.pdf(prefer_css_page_size=True, print_background=True)
    page.close()

    assert outside == []
    assert overflowing == []
    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf))
    first = reader.pages[0]
    # @page size: A4 landscape (842 x 595 points).
    assert (round(float(first.mediabox.width)), round(float(first.mediabox.height))) == (842, 595)
    text_first = first.extract_text()
    assert "Quarterly access report" in text_first
    assert "Findings that need action" in text_first
    everything = "\n".join(p.extract_text() for p in reader.pages)
    assert "Grants under review" in everything
    assert "keep" in everything
    assert "revoke" in everything
    assert "never" in everything  # demo accounts that have not logged in
    assert "Accounts by status" in everything  # the SVG chart's title, printed as text
    assert "True" not in everything
    assert "False" not in everything
    assert "Reviewed by" in everything  # the sign-off block
