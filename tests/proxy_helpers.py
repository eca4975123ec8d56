"""Helpers for the proxy guard tests: a recording upstream on loopback (it answers
Runware-shaped task responses and remembers every request it got) as the ``origin`` and
``forged`` fixtures, raw-socket HTTP exchanges, and a way to see uvicorn's own errors."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ledger.capture import Recorder
from ledger.core.records import Source
from ledger.store import Ledger
from tests.test_capture import image_task


@dataclass
class Upstream:
    """A real HTTP server on a loopback port; ``requests`` is what reached it."""

    base_url: str
    port: int
    requests: list[dict[str, Any]] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.upstream.requests.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers.items()), "body": body}
        )
        try:
            tasks = json.loads(body) if body else []
        except ValueError:
            tasks = []
        data = [
            # An async task (webhook or deliveryMethod=async) is acknowledged without output.
            {"taskType": task.get("taskType"), "taskUUID": task.get("taskUUID")}
            if task.get("webhookURL") or task.get("deliveryMethod") == "async"
            else {
                "taskType": task.get("taskType", "imageInference"),
                "taskUUID": task.get("taskUUID"),
                "imageUUID": f"{self.server.upstream.port}-{task.get('taskUUID')}",
                "imageURL": f"http://127.0.0.1:{self.server.upstream.port}/out.png",
                "seed": task.get("seed", 1),
            }
            for task in tasks
            if isinstance(task, dict)
        ]
        payload = json.dumps({"data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        # A hop-by-hop header named by Connection: the proxy must not relay it.
        self.send_header("Connection", "X-Hop-Response")
        self.send_header("X-Hop-Response", "upstream-only")
        self.send_header("X-End-To-End", "relayed")
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_OPTIONS = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return


@contextlib.contextmanager
def upstream_server() -> Iterator[Upstream]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = server.server_address[1]
    server.upstream = Upstream(base_url=f"http://127.0.0.1:{port}", port=port)  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.upstream  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def port_of(base_url: str) -> int:
    return int(base_url.rsplit(":", 1)[1])


def raw_exchange(port: int, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send raw bytes to 127.0.0.1:port and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(data)
        chunks = []
        while True:
            try:
                chunk = conn.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def chunked(*parts: bytes) -> bytes:
    """A chunked transfer-coding body (RFC 9112 §7.1)."""
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p) + b"0\r\n\r\n"


def status_of(response: bytes) -> int:
    """The status code of a raw HTTP response (0 when the server sent nothing)."""
    if not response:
        return 0
    return int(response.split(b" ", 2)[1])


# Imported by the test modules under these names; pytest finds them as `origin`, `forged`.
@pytest.fixture(name="origin")
def origin_fixture() -> Iterator[Upstream]:
    with upstream_server() as server:
        yield server


@pytest.fixture(name="forged")
def forged_fixture() -> Iterator[Upstream]:
    with upstream_server() as server:
        yield server


def recorder_for(tmp_path: Path, db_url: str) -> Recorder:
    return Recorder(tmp_path / "spool", db_url, source=Source.PROXY, fingerprint=False, max_backoff=0.2)


def task_body() -> bytes:
    return json.dumps([image_task(seed=4242)]).encode()


def post_bytes(target: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST "
        + target
        + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def landed(db_url: str) -> list[Any]:
    with Ledger.open(db_url) as ledger:
        return ledger.query()


@contextlib.contextmanager
def uvicorn_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Let caplog see uvicorn's own log ("Exception in ASGI application" and the like):
    uvicorn's logging config does not propagate to the root logger."""
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(caplog.handler)
    try:
        yield
    finally:
        logger.removeHandler(caplog.handler)
