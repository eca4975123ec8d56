"""Downloads of output and input URLs, through the real code paths.

A hostile file server on loopback serves: a good PNG, an oversize body, a redirect
loop, a redirect to a link-local metadata address and to ``file://``, and a body that
trickles forever. Three callers fetch from it:

- the capture writer's fingerprint download (``ledger.capture.fingerprints``),
- the auditor's input check (``ledger.audit.inputs.InputChecker``),
- the Runware adapter's URL outputs (against the reference server).

Each refuses non-http(s) schemes, private/loopback/link-local addresses unless allowed
(the tests allow loopback explicitly where they need it), bodies over the cap, more
redirects than the bound, and bodies slower than the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from ledger.audit.inputs import InputChecker
from ledger.backends import DownloadError, GenerationRequest, HostPolicy
from ledger.backends.reference.server import ReferenceServer
from ledger.backends.runware import RunwareBackend
from ledger.capture.entries import Output
from ledger.capture.fingerprints import default_fingerprinter
from ledger.errors import BackendError
from ledger.store import Ledger
from tests.factories import new_record

_buffer = io.BytesIO()
Image.new("RGB", (32, 32), (200, 30, 30)).save(_buffer, "PNG")
PNG = _buffer.getvalue()
BIG = 256 * 1024


class Hostile(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", headers.pop("content_type", "image/png"))
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        if "Content-Length" not in {k.replace("_", "-") for k in headers}:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._route()

    def _route(self) -> None:
        path = self.path.split("?")[0]
        if path == "/ok.png":
            self._send(200, PNG)
        elif path == "/big.png":
            self._send(200, PNG + b"\0" * BIG)
        elif path == "/endless.png":  # no length, streams until the client gives up
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            for _ in range(10_000):
                self.wfile.write(b"\0" * 16384)
        elif path.startswith("/loop"):
            n = int(path[5:] or 0)
            self._send(302, Location=f"/loop{n + 1}")
        elif path == "/to-metadata":
            self._send(302, Location="http://169.254.169.254/latest/meta-data/")
        elif path == "/to-private":
            self._send(302, Location="http://10.1.2.3/x.png")
        elif path == "/to-file":
            self._send(302, Location="file:///etc/passwd")
        elif path == "/slow.png":  # headers at once, then a byte now and then
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            for byte in PNG[:40]:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.5)
        else:
            self._send(404, b"no", content_type="text/plain")


@pytest.fixture(scope="module")
def files() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


REFUSED_ALWAYS = ["file:///etc/passwd", "ftp://127.0.0.1/x.png", "gopher://x", "data:image/png;base64,AAAA"]


# -- the capture writer's fingerprint download -------------------------------------------


def _fingerprinted(url: str, db: str, **options: object) -> int:
    run = default_fingerprinter(**options)  # type: ignore[arg-type]
    assert run is not None
    with Ledger.open(db) as ledger:
        (rid,) = ledger.add([new_record()])
        return run(ledger, [(rid, Output(url=url))])


def test_capture_download_rules(files: str, sqlite_url: str) -> None:
    assert _fingerprinted(f"{files}/ok.png", sqlite_url) == 0  # loopback refused by default
    assert _fingerprinted(f"{files}/ok.png", sqlite_url, allow_private_downloads=True) == 1
    assert _fingerprinted(f"{files}/ok.png", sqlite_url, trusted_hosts=frozenset({"127.0.0.1"})) == 1
    allowed = {"allow_private_downloads": True}
    for url in REFUSED_ALWAYS:
        assert _fingerprinted(url, sqlite_url, **allowed) == 0, url
    capped = {**allowed, "max_download_bytes": BIG // 2}
    assert _fingerprinted(f"{files}/big.png", sqlite_url, **capped) == 0
    assert _fingerprinted(f"{files}/endless.png", sqlite_url, **capped) == 0
    assert _fingerprinted(f"{files}/loop", sqlite_url, **allowed) == 0
    assert _fingerprinted(f"{files}/to-file", sqlite_url, **allowed) == 0
    # Allowing loopback for our server does not open the metadata address.
    trusted = {"trusted_hosts": frozenset({"127.0.0.1"})}
    assert _fingerprinted(f"{files}/to-metadata", sqlite_url, **trusted) == 0
    assert _fingerprinted(f"{files}/to-private", sqlite_url, **trusted) == 0
    with Ledger.open(sqlite_url) as ledger:
        assert ledger.count() == 13  # records stay; only fingerprints were refused


# -- the auditor's input check -----------------------------------------------------------


def _inputs(urls: list[str], **options: object) -> dict[str, tuple[bool, str]]:
    async def main() -> dict[str, tuple[bool, str]]:
        checker = InputChecker(**options)  # type: ignore[arg-type]
        try:
            statuses = await asyncio.gather(*(checker.check(u) for u in urls))
        finally:
            await checker.aclose()
        return {u: (s.available, s.detail) for u, s in zip(urls, statuses, strict=True)}

    return asyncio.run(main())


def test_audit_input_check_rules(files: str) -> None:
    refused = _inputs([f"{files}/ok.png", *REFUSED_ALWAYS])
    assert not any(ok for ok, _ in refused.values())
    assert "url-refused" in refused[f"{files}/ok.png"][1]
    loopback = {"allow_loopback": True, "timeout": 0.5, "max_bytes": BIG // 2}
    got = _inputs(
        [
            f"{files}/ok.png",
            f"{files}/big.png",
            f"{files}/endless.png",
            f"{files}/loop",
            f"{files}/to-metadata",
            f"{files}/to-private",
            f"{files}/to-file",
            f"{files}/slow.png",
            *REFUSED_ALWAYS,
        ],
        **loopback,
    )
    assert got.pop(f"{files}/ok.png") == (True, "")
    assert not any(ok for ok, _ in got.values()), got
    assert "too-large" in got[f"{files}/big.png"][1] or "large" in got[f"{files}/big.png"][1]
    assert "redirect" in got[f"{files}/loop"][1]
    assert "url-refused" in got[f"{files}/to-metadata"][1]
    assert "url-refused" in got[f"{files}/to-file"][1]
    assert "timeout" in got[f"{files}/slow.png"][1] or "time" in got[f"{files}/slow.png"][1]


# -- the Runware adapter's URL outputs ---------------------------------------------------


def _replay(backend: RunwareBackend) -> None:
    async def main() -> None:
        try:
            request = GenerationRequest(
                protocol="runware",
                params={
                    "taskType": "imageInference",
                    "model": "runware:101@1",
                    "positivePrompt": "x",
                    "width": 64,
                    "height": 64,
                    "steps": 1,
                    "outputType": "URL",
                },
                seed=5,
            )
            result = await backend.generate(request)
            assert result.outputs[0].data and result.outputs[0].media_type.startswith("image/")
        finally:
            await backend.aclose()

    asyncio.run(main())


def test_runware_adapter_url_outputs_follow_the_host_policy(tmp_path: Path) -> None:
    # The server hands out output URLs on "localhost": not the API host (127.0.0.1),
    # and a loopback address, so refused unless loopback is allowed.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with ReferenceServer.running(port=port, public_url=f"http://localhost:{port}") as server:
        api = server.url
        with pytest.raises(DownloadError, match="a loopback address, not a public one") as refused:
            _replay(RunwareBackend(api, api_key="k", read_env=False))
        assert refused.value.code == "url-refused"
        _replay(RunwareBackend(api, api_key="k", read_env=False, host_policy=HostPolicy(allow_loopback=True)))
        capped = RunwareBackend(
            api,
            api_key="k",
            read_env=False,
            host_policy=HostPolicy(allow_loopback=True),
            max_download_bytes=64,
        )
        with pytest.raises(BackendError, match=r"cap|large|bytes"):
            _replay(capped)
    # Its own API host is trusted for its own outputs (the common, safe case).
    with ReferenceServer.running() as own:
        _replay(RunwareBackend(own.url, api_key="k", read_env=False))
