"""Real headless Chromium for the UI and report tests, driven by Playwright.

Playwright launches Debian's Chromium (scripts/install-browser.sh) through
``executable_path``; Playwright's own browser download is never used. Each page
collects console errors, uncaught exceptions, failed requests and every request
that would leave the allowed origins, so a test can assert there were none.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.conftest import IN_CI

#: No network beyond the page's own origin: Chromium's background services stay off.
FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if IN_CI:
        pytest.fail("headless Chromium is required in CI: run scripts/install-browser.sh")
    pytest.skip("chromium is not installed (scripts/install-browser.sh)")


# Module scope: each test module imports this fixture, and Playwright's sync API allows
# one running instance per thread, so each module's browser is closed before the next.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - depends on the environment
        if IN_CI:
            pytest.fail("playwright is required in CI (the test extra installs it)")
        pytest.skip("playwright is not installed")
    exe = chromium_path()
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=exe, args=list(FLAGS), headless=True)
        yield launched
        launched.close()


@dataclass
class Watched:
    """A page plus everything that went wrong on it."""

    page: Any
    allowed: tuple[str, ...]
    errors: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)

    def _request(self, request: Any) -> None:
        url = request.url
        if not url.startswith(self.allowed):
            self.outside.append(url)

    def _failed(self, request: Any) -> None:
        # ERR_ABORTED: the test navigated on while images were still loading; not a fault.
        if request.failure != "net::ERR_ABORTED":
            self.errors.append(f"request failed: {request.url} {request.failure}")

    def assert_clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.outside == [], f"requests left the server: {self.outside}"


def watch(context: Any, *allowed: str) -> Watched:
    """A new page in ``context`` whose requests may only go to ``allowed`` prefixes
    (plus data: URIs and about:blank)."""
    page = context.new_page()
    w = Watched(page, (*allowed, "data:", "about:"))
    page.on(
        "console",
        lambda m: w.errors.append(f"console {m.type}: {m.text}") if m.type in ("error", "assert") else None,
    )
    page.on("pageerror", lambda exc: w.errors.append(f"exception: {exc}"))
    page.on("requestfailed", w._failed)
    page.on("response", lambda r: w.errors.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    page.on("request", w._request)
    return w


def screenshot_pixels(page: Any, *, full_page: bool = True) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.screenshot(full_page=full_page))).convert("RGB"))


def assert_not_blank(pixels: np.ndarray) -> None:
    assert float(pixels.std()) > 20, "screenshot is blank"
    assert float((pixels.mean(axis=2) < 200).mean()) > 0.01, "screenshot has almost no ink"


def images_loaded(page: Any, selector: str = "img") -> list[int]:
    """naturalWidth of every matching image (0 = it did not decode)."""
    return page.eval_on_selector_all(selector, "els => els.map(i => i.complete ? i.naturalWidth : 0)")
