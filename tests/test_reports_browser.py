"""The HTML report in a real headless Chromium (Debian's package, scripts/install-browser.sh).

Chromium is driven over the DevTools protocol with a tiny WebSocket client (stdlib
only): console errors, uncaught exceptions and CSP/resource errors are collected while
the report loads, then a screenshot and a PDF print are taken. A control page with a
deliberate console error proves the collector can see one.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

from ledger.integrity import Signer, seal
from ledger.reports import ReportOptions, write_report
from ledger.store import Ledger
from tests.conftest import IN_CI
from tests.reports_data import HOSTILE_PROMPT, populate

pytestmark = pytest.mark.browser

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if IN_CI:
        pytest.fail("headless Chromium is required in CI: run scripts/install-browser.sh")
    pytest.skip("chromium is not installed (scripts/install-browser.sh)")


class WebSocket:
    """Just enough RFC 6455 for the DevTools protocol: masked text frames out, text in."""

    def __init__(self, url: str, timeout: float = 30) -> None:
        parsed = urlparse(url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {parsed.path} HTTP/1.1\r\nHost: {parsed.hostname}:{parsed.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"WebSocket handshake refused: {head[:80]!r}")

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("DevTools connection closed")
            data += chunk
        return data

    def send(self, message: dict[str, Any]) -> None:
        payload = json.dumps(message).encode()
        header = bytes([0x81])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def recv(self) -> dict[str, Any]:
        message = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(n)
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the WebSocket")
            if opcode in (0x9, 0xA):  # ping/pong: not used by DevTools
                continue
            message += payload
            if b0 & 0x80:
                return json.loads(message)

    def close(self) -> None:
        self.sock.close()


class Page:
    """One tab: navigate, collect errors, evaluate, screenshot, print."""

    def __init__(self, ws: WebSocket, session: str) -> None:
        self.ws, self.session, self._id = ws, session, 0
        self.errors: list[str] = []
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self.ws.send({"id": self._id, "method": method, "params": params, "sessionId": self.session})
        while True:
            msg = self.ws.recv()
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._event(msg)

    def _event(self, msg: dict[str, Any]) -> None:
        method = msg.get("method", "")
        params = msg.get("params", {})
        self.events.append(msg)
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            description = details.get("exception", {}).get("description", "")
            self.errors.append(f"exception: {details.get('text', '')} {description}"[:300])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append("console: " + json.dumps(params.get("args", []))[:300])
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            self.errors.append("log: " + params["entry"].get("text", "")[:300])

    def load(self, url: str, timeout: float = 30) -> None:
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not finish loading")
            self._event(self.ws.recv())
        # Let late console messages arrive: a round trip after load flushes them.
        self.evaluate("1")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebSocket]:
    exe = _chromium()
    profile = tmp_path_factory.mktemp("chromium-profile")
    proc = subprocess.Popen(
        [exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chromium did not start its DevTools endpoint (exit {proc.poll()})")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        ws = WebSocket(f"ws://127.0.0.1:{port}{path}")
        yield ws
        ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def open_page(ws: WebSocket, width: int = 1200, height: int = 1600) -> Page:
    ws.send({"id": 1, "method": "Target.createTarget", "params": {"url": "about:blank"}})
    target = _reply(ws, 1)["targetId"]
    ws.send({"id": 2, "method": "Target.attachToTarget", "params": {"targetId": target, "flatten": True}})
    session = _reply(ws, 2)["sessionId"]
    page = Page(ws, session)
    page._id = 10
    for domain in ("Page", "Runtime", "Log"):
        page.call(f"{domain}.enable")
    page.call(
        "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
    )
    return page


def _reply(ws: WebSocket, message_id: int) -> dict[str, Any]:
    while True:
        msg = ws.recv()
        if msg.get("id") == message_id and "sessionId" not in msg:
            if "error" in msg:
                raise RuntimeError(str(msg["error"]))
            return msg["result"]


def _pixels(png_b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(png_b64))).convert("RGB"))


def test_collector_sees_a_console_error(browser: WebSocket, tmp_path: Path) -> None:
    control = tmp_path / "control.html"
    control.write_text(
        "<!DOCTYPE html><p>x</p><script>console.error('boom'); undefinedCall();</script>", "utf-8"
    )
    page = open_page(browser)
    page.load(control.as_uri())
    assert any("boom" in e for e in page.errors) and any("undefinedCall" in e for e in page.errors)


def test_html_report_renders_without_errors(browser: WebSocket, sqlite_url: str, tmp_path: Path) -> None:
    with Ledger.open(sqlite_url) as ledger:
        populate(ledger, 150)
        seal(ledger, Signer.generate("example.org/browser"))
        out = tmp_path / "report.html"
        write_report(ledger, None, "html", out, ReportOptions(html_limit=60, evidence_limit=20))
    page = open_page(browser)
    page.load(out.as_uri())
    assert page.errors == []
    # The hostile prompt is text on the page, and nothing ran.
    assert page.evaluate("document.title").startswith("seedledger compliance report")
    assert page.evaluate("document.querySelectorAll('script').length") == 0
    assert page.evaluate(f"document.body.innerText.includes({json.dumps(HOSTILE_PROMPT[:60])})") is True
    # Every image decoded (thumbnails and heat maps are inline PNGs).
    images = page.evaluate("[...document.images].map(i => i.complete && i.naturalWidth > 0)")
    assert images and all(images)
    assert page.evaluate("document.querySelectorAll('svg.chart').length") >= 4

    shot = page.call("Page.captureScreenshot", format="png")
    pixels = _pixels(shot["data"])
    (tmp_path / "report.png").write_bytes(base64.b64decode(shot["data"]))
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    assert float(pixels.std()) > 20  # not blank
    assert float((pixels.mean(axis=2) < 200).mean()) > 0.02  # a visible share of ink

    # It prints: Chromium's print path lays it out on A4 pages without errors.
    pdf = base64.b64decode(
        page.call("Page.printToPDF", printBackground=False, preferCSSPageSize=True)["data"]
    )
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
    assert page.errors == []


@pytest.mark.slow
def test_demo_report_and_contact_sheets_open_in_chromium(browser: WebSocket, demo_run: dict) -> None:
    """The README's first command produces an HTML report that renders in a real browser."""
    pages = [Path(demo_run["report_html"]), *(Path(p) for p in demo_run["contact_sheets"])]
    for path in pages:
        page = open_page(browser)
        page.load(path.as_uri())
        assert page.errors == [], (path.name, page.errors)
        images = page.evaluate("[...document.images].map(i => i.complete && i.naturalWidth > 0)")
        assert images and all(images), path.name
        pixels = _pixels(page.call("Page.captureScreenshot", format="png")["data"])
        assert float(pixels.std()) > 20, f"{path.name} rendered blank"
    report = open_page(browser)
    report.load(pages[0].as_uri())
    text = report.evaluate("document.body.innerText")
    assert "Audit outcomes" in text and "expected drift" in text.lower()
