"""The recording proxy's availability bounds: body caps (413), body deadlines (408),
bodies in flight (503), JSON depth (400), clients that go away mid-body; health answers
throughout. Real proxy, real upstream on loopback, raw sockets."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
from pathlib import Path

import httpx
import pytest

from ledger.capture.proxy_limits import ProxyLimits
from tests import proxy_helpers as h
from tests.proxy_helpers import Upstream, origin_fixture  # noqa: F401  (a fixture)
from tests.test_capture import image_task, running_proxy

SECRET = "webhook-secret-for-tests-0123"


def test_oversized_bodies_are_refused_with_413(origin: Upstream, sqlite_url: str, tmp_path: Path) -> None:
    recorder = h.recorder_for(tmp_path, sqlite_url)
    limits = ProxyLimits(max_body=8 * 1024, max_webhook_body=1024)
    too_big = [b" " * 4096] * 5
    with running_proxy(origin.base_url, recorder, limits=limits, webhook_token=SECRET) as proxy:
        port = h.port_of(proxy)
        # Declared too large: refused before a byte of the body is sent or read.
        declared = h.raw_exchange(port, b"POST /v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n")
        assert h.status_of(declared) == 413 and b"connection: close" in declared.lower()
        te = b"Host: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        # Chunked task request (read for recording), chunked upload (streamed on), webhook.
        for head in (b"POST /v1", b"PUT /upload", b"POST /_seedledger/webhook/" + SECRET.encode()):
            response = h.raw_exchange(port, head + b" HTTP/1.1\r\n" + te + h.chunked(*too_big))
            assert h.status_of(response) == 413, (head, response[:200])
        webhook = h.raw_exchange(port, h.post_bytes(b"/_seedledger/webhook/" + SECRET.encode(), b" " * 2048))
        assert h.status_of(webhook) == 413
        assert httpx.post(proxy + "/v1", content=h.task_body()).status_code == 200  # under the cap: fine
    recorder.close(drain_timeout=10)
    assert [r["method"] for r in origin.requests if r["method"] == "POST"] == ["POST"]
    assert [r.seed for r in h.landed(sqlite_url)] == [4242]


def test_deeply_nested_json_is_refused_before_parsing(
    origin: Upstream, sqlite_url: str, tmp_path: Path
) -> None:
    recorder = h.recorder_for(tmp_path, sqlite_url)
    deep = b"[" * 100_000 + b"]" * 100_000
    bracket_strings = json.dumps([image_task(seed=4242, positivePrompt="[[[[" * 100)]).encode()
    with (
        running_proxy(origin.base_url, recorder, webhook_token=SECRET) as proxy,
        httpx.Client(base_url=proxy) as client,
    ):
        assert client.post("/v1", content=deep).status_code == 400
        assert client.post(f"/_seedledger/webhook/{SECRET}", content=deep).status_code == 400
        assert client.post("/v1", content=bracket_strings).status_code == 200  # brackets in strings
    recorder.close(drain_timeout=10)
    assert [r["body"] for r in origin.requests] == [bracket_strings]
    assert recorder.counters.snapshot()["parse_errors"] == 0
    assert [r.seed for r in h.landed(sqlite_url)] == [4242]


def trickle(conn: socket.socket, until: float) -> bytes:
    """Send a byte every 0.1 s until ``until`` (monotonic), then wait for the answer."""
    conn.settimeout(0.1)
    while time.monotonic() < until:
        conn.sendall(b" ")
        with contextlib.suppress(TimeoutError):
            if data := conn.recv(65536):
                return data
    conn.settimeout(5)
    return conn.recv(65536)


def test_trickling_and_aborted_bodies_are_bounded_and_health_answers(
    origin: Upstream, sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = h.recorder_for(tmp_path, sqlite_url)
    limits = ProxyLimits(body_timeout=1.0, max_inflight_bodies=2)
    head = b"POST /v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n[{"
    with running_proxy(origin.base_url, recorder, limits=limits) as proxy, h.uvicorn_errors(caplog):
        port = h.port_of(proxy)
        started = time.monotonic()
        tricklers = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        try:
            for conn in tricklers:
                conn.sendall(head)
            time.sleep(0.2)
            busy = httpx.post(proxy + "/v1", content=h.task_body())
            assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
            assert httpx.get(proxy + "/_seedledger/health").status_code == 200
            # Bytes keep arriving, yet the body deadline holds.
            answers = [trickle(conn, started + 0.7) for conn in tricklers]
            assert [h.status_of(a) for a in answers] == [408, 408]
        finally:
            for conn in tricklers:
                conn.close()
        with socket.create_connection(("127.0.0.1", port)) as aborted:
            aborted.sendall(head)
            time.sleep(0.1)
        time.sleep(0.3)
        assert httpx.post(proxy + "/v1", content=h.task_body()).status_code == 200
    recorder.close(drain_timeout=10)
    assert [r.seed for r in h.landed(sqlite_url)] == [4242]
    assert len([r for r in origin.requests if r["method"] == "POST"]) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("disconnected mid-body" in r.getMessage() for r in caplog.records)
