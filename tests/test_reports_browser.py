"""The HTML report in a real headless Chromium (Debian's package, scripts/install-browser.sh),
driven by Playwright (tests/browser.py).

Console errors, uncaught exceptions, failed or outside requests are collected while
the report loads, then a screenshot and a PDF print are taken. A control page with a
deliberate console error proves the collector can see one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.integrity import Signer, seal
from ledger.reports import ReportOptions, write_report
from ledger.store import Ledger
from tests.browser import assert_not_blank, browser, images_loaded, screenshot_pixels, watch
from tests.reports_data import HOSTILE_PROMPT, populate

__all__ = ["browser"]  # the fixture, imported for pytest

pytestmark = pytest.mark.browser


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1200, "height": 1600})
    yield ctx
    ctx.close()


def test_collector_sees_a_console_error(context: Any, tmp_path: Path) -> None:
    control = tmp_path / "control.html"
    control.write_text(
        "<!DOCTYPE html><p>x</p><script>console.error('boom'); undefinedCall();</script>"
        "<img src='http://198.51.100.7/x.png'>",
        "utf-8",
    )
    page = watch(context, "file://")
    page.page.route("http://198.51.100.7/**", lambda route: route.abort())  # never leaves the box
    page.page.goto(control.as_uri())
    assert any("boom" in e for e in page.errors) and any("undefinedCall" in e for e in page.errors)
    assert page.outside == ["http://198.51.100.7/x.png"]


def test_html_report_renders_without_errors(context: Any, sqlite_url: str, tmp_path: Path) -> None:
    with Ledger.open(sqlite_url) as ledger:
        populate(ledger, 150)
        seal(ledger, Signer.generate("example.org/browser"))
        out = tmp_path / "report.html"
        write_report(ledger, None, "html", out, ReportOptions(html_limit=60, evidence_limit=20))
    watched = watch(context, out.as_uri())
    page = watched.page
    page.goto(out.as_uri())
    # The hostile prompt is text on the page, and nothing ran.
    assert page.title().startswith("seedledger compliance report")
    assert page.locator("script").count() == 0
    assert HOSTILE_PROMPT[:60] in page.inner_text("body")
    # Every image decoded (thumbnails and heat maps are inline PNGs).
    widths = images_loaded(page)
    assert widths and all(w > 0 for w in widths)
    assert page.locator("svg.chart").count() >= 4

    pixels = screenshot_pixels(page, full_page=False)
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    assert_not_blank(pixels)

    # It prints: Chromium's print path lays it out on A4 pages without errors.
    pdf = page.pdf(prefer_css_page_size=True, print_background=False)
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
    watched.assert_clean()


@pytest.mark.slow
def test_demo_report_and_contact_sheets_open_in_chromium(context: Any, demo_run: dict) -> None:
    """The README's first command produces an HTML report that renders in a real browser."""
    pages = [Path(demo_run["report_html"]), *(Path(p) for p in demo_run["contact_sheets"])]
    for path in pages:
        watched = watch(context, path.as_uri())
        watched.page.goto(path.as_uri())
        widths = images_loaded(watched.page)
        assert widths and all(w > 0 for w in widths), path.name
        assert_not_blank(screenshot_pixels(watched.page, full_page=False))
        watched.assert_clean()
    report = watch(context, pages[0].as_uri())
    report.page.goto(pages[0].as_uri())
    text = report.page.inner_text("body")
    assert "Audit outcomes" in text and "expected drift" in text.lower()
