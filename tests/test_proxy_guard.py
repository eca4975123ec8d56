"""The recording proxy under attack: no relay to other hosts, no forged records, no
details for strangers. Real proxy (uvicorn on loopback), real upstream servers on
loopback, raw sockets for the request targets no HTTP client would send. Body limits:
test_proxy_limits.py."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.capture import Recorder, proxy_auth
from ledger.capture.proxy import RecordingProxy
from tests.cli import COMMAND, seedledger
from tests.proxy_helpers import (
    Upstream,
    forged_fixture,  # noqa: F401  (a fixture)
    landed,
    origin_fixture,  # noqa: F401  (a fixture)
    port_of,
    post_bytes,
    raw_exchange,
    recorder_for,
    status_of,
    task_body,
    uvicorn_errors,
)
from tests.test_capture import image_task, running_proxy, video_task

SECRET = "webhook-secret-for-tests-0123"
CLIENT = "client-token-for-tests-0123"


# -- request targets -----------------------------------------------------------------------


def test_request_targets_that_leave_the_origin_are_refused(
    origin: Upstream, forged: Upstream, sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    b = forged.port
    body = task_body()
    attacks = [
        b"GET @127.0.0.1:%d/secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % b,
        post_bytes(b"@127.0.0.1:%d/v1" % b, body),  # the forged-record attack of issue 23
        b"GET :%d/secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % b,
        post_bytes(b"http://127.0.0.1:%d/v1" % b, body),
        b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % (b, b),
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET //127.0.0.1:%d/secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % b,
        post_bytes(b"/v1/../../secret", body),
        post_bytes(b"/%2e%2e/secret", body),
        post_bytes(b"/v1/%2E%2E/%2e%2e/secret", body),
        post_bytes(b"/v1/..%2fsecret", body),
        post_bytes(b"/v1/%252e%252e/secret", body),
        post_bytes(b"/v1/./v1", body),
        post_bytes(b"/\\127.0.0.1:%d/v1" % b, body),
        post_bytes(b"/v1%5c..%5csecret", body),
        post_bytes(b"/v1#@127.0.0.1:%d" % b, body),
    ]
    recorder = recorder_for(tmp_path, sqlite_url)
    with running_proxy(origin.base_url + "/api", recorder) as proxy, uvicorn_errors(caplog):
        port = port_of(proxy)
        for attack in attacks:
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="ledger.capture.proxy"):
                response = raw_exchange(port, attack)
            shown = attack.split(b"\r\n", 1)[0]
            assert status_of(response) == 400, (shown, response[:200])
            refused = [r for r in caplog.records if r.name == "ledger.capture.proxy"]
            assert len(refused) == 1 and "refused" in refused[0].getMessage(), shown
        assert forged.requests == [] and origin.requests == []
        assert recorder.counters.snapshot()["spooled"] == 0
        assert not [r for r in caplog.records if r.name.startswith("uvicorn")]  # no 500, no traceback
        # The control: an origin-form target is forwarded to the origin, under its prefix.
        good = raw_exchange(port, post_bytes(b"/v1?x=1", body))
        assert status_of(good) == 200
        assert [r["path"] for r in origin.requests] == ["/api/v1?x=1"]
    assert recorder.close(drain_timeout=10)
    assert forged.requests == []
    assert [r.seed for r in landed(sqlite_url)] == [4242]


def test_hop_by_hop_headers_named_in_connection_are_dropped_both_ways(
    origin: Upstream, sqlite_url: str, tmp_path: Path
) -> None:
    recorder = recorder_for(tmp_path, sqlite_url)
    with running_proxy(origin.base_url, recorder) as proxy, httpx.Client(base_url=proxy) as client:
        response = client.post(
            "/v1",
            content=task_body(),
            headers={
                "Connection": "keep-alive, X-Hop-Request",
                "X-Hop-Request": "proxy-only",
                "Proxy-Authorization": "Basic cHJveHk6b25seQ==",
                "X-End-To-End": "forwarded",
            },
        )
    recorder.close(drain_timeout=10)
    assert response.status_code == 200
    assert response.headers["x-end-to-end"] == "relayed" and "x-hop-response" not in response.headers
    (seen,) = origin.requests
    sent = {k.lower(): v for k, v in seen["headers"].items()}
    assert sent["x-end-to-end"] == "forwarded"
    assert "x-hop-request" not in sent and "proxy-authorization" not in sent


# -- who may use the proxy -------------------------------------------------------------------


def test_webhook_deliveries_need_the_secret(
    origin: Upstream, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = proxy_auth.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(proxy_auth.hmac, "compare_digest", spy)
    recorder = recorder_for(tmp_path, sqlite_url)
    task = {**video_task(), "webhookURL": f"http://proxy/_seedledger/webhook/{SECRET}"}
    result = {"taskType": "videoInference", "taskUUID": task["taskUUID"], "videoUUID": "v-1", "seed": 666}
    delivery = {"data": [{**result, "videoURL": "https://example.invalid/v-1.mp4", "status": "success"}]}
    with (
        running_proxy(origin.base_url, recorder, webhook_token=SECRET) as proxy,
        httpx.Client(base_url=proxy) as client,
    ):
        assert client.post("/v1", content=json.dumps([task]).encode()).status_code == 200  # now pending
        for path in ("/_seedledger/webhook", "/_seedledger/webhook/", "/_seedledger/webhook/wrong-secret-xx"):
            assert client.post(path, json=delivery).status_code == 404, path
        assert recorder.counters.snapshot()["spooled"] == 0
        assert compared and all(b == SECRET.encode() for _, b in compared)
        assert client.post(f"/_seedledger/webhook/{SECRET}", json=delivery).json() == {"recorded": 1}
    assert recorder.close(drain_timeout=10)
    (record,) = landed(sqlite_url)
    assert (record.output_uuid, record.seed) == ("v-1", 666)  # the authentic delivery, once
    assert SECRET not in json.dumps(record.params)


def test_proxy_without_webhook_token_generates_a_private_secret(origin: Upstream, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    args = ["proxy", "--upstream", origin.base_url, "--listen", "127.0.0.1:0", "--spool", str(spool)]
    with proxy_process(args) as (base, banner):
        secret_file = spool / "webhook-token"
        secret = secret_file.read_text().strip()
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600 and len(secret) >= 32
        assert str(secret_file) in banner and secret not in banner
        delivery = {"taskUUID": "t-1", "taskType": "imageInference", "imageUUID": "i", "seed": 1}
        assert httpx.post(base + "/_seedledger/webhook", json=delivery, timeout=30).status_code == 404
        assert (
            httpx.post(f"{base}/_seedledger/webhook/{secret}", json=delivery, timeout=30).status_code == 200
        )
    # A restart keeps the secret, so deliveries for tasks pending across it are accepted.
    with proxy_process(args):
        assert secret_file.read_text().strip() == secret


def test_binding_beyond_loopback_needs_a_client_token(origin: Upstream, tmp_path: Path) -> None:
    args = ["proxy", "--upstream", origin.base_url, "--listen", "0.0.0.0:0", "--spool", str(tmp_path / "s")]
    refused = seedledger(*args, timeout=60)
    assert refused.code == 2 and "--client-token" in refused.err and "Traceback" not in refused.err
    short = seedledger(*args, "--client-token", "short", timeout=60)
    assert short.code == 2 and "at least 16" in short.err
    with proxy_process([*args, "--client-token", CLIENT]) as (base, _):
        local = base.replace("0.0.0.0", "127.0.0.1")
        assert httpx.post(local + "/v1", content=task_body(), timeout=30).status_code == 401
        assert (
            httpx.get(local + "/_seedledger/health", timeout=30).status_code == 200
        )  # health needs no token
        ok = httpx.post(
            local + "/v1", content=task_body(), headers={"X-Seedledger-Token": CLIENT}, timeout=30
        )
        assert ok.status_code == 200
    (seen,) = origin.requests  # the refused request never left the proxy
    assert not any(k.lower() == "x-seedledger-token" for k in seen["headers"])


def test_websocket_upgrades_get_the_same_checks(
    origin: Upstream, forged: Upstream, sqlite_url: str, tmp_path: Path
) -> None:
    recorder = recorder_for(tmp_path, sqlite_url)
    upgrade = (
        b"Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    )
    with running_proxy(origin.base_url, recorder, client_token=CLIENT) as proxy:
        port = port_of(proxy)
        token = b"X-Seedledger-Token: " + CLIENT.encode() + b"\r\n"
        for target, extra in (
            (b"/v1", b""),
            (b"/v1/../x", token),
            (b"@127.0.0.1:%d/v1" % forged.port, token),
        ):
            response = raw_exchange(port, b"GET " + target + b" HTTP/1.1\r\n" + upgrade + extra + b"\r\n")
            assert status_of(response) in (400, 403), (target, response[:100])
    recorder.close(drain_timeout=0)
    assert forged.requests == [] and origin.requests == []


def test_health_shows_paths_and_database_details_only_to_loopback(origin: Upstream, tmp_path: Path) -> None:
    db_url = "postgresql+psycopg://ledger-user@127.0.0.1:1/secret-db-name"  # unreachable on purpose
    recorder = Recorder(tmp_path / "spool", db_url, fingerprint=False, max_backoff=0.2)
    app = RecordingProxy(origin.base_url, recorder, owns_recorder=False, webhook_token=SECRET)
    try:
        task = image_task(seed=3)
        result = {"taskType": "imageInference", "taskUUID": task["taskUUID"], "imageUUID": "i", "seed": 3}
        assert recorder.record_exchange(json.dumps([task]).encode(), json.dumps({"data": [result]}).encode())
        deadline = time.monotonic() + 10
        while recorder.writer.last_error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        local = asyncio.run(asgi_get(app, "/_seedledger/health", ("127.0.0.1", 5000)))
        remote = asyncio.run(asgi_get(app, "/_seedledger/health", ("192.0.2.7", 5000)))
    finally:
        recorder.close(drain_timeout=0)
    assert local["spool"] == str(tmp_path / "spool") and local["database_error"]
    assert remote["database"] == "unavailable" and remote["status"] == local["status"] == "degraded"
    assert remote["problems"] == ["database unreachable"] and "ledger-user" in json.dumps(local)
    shown = json.dumps(remote)
    assert str(tmp_path) not in shown and "ledger-user" not in shown and "secret-db-name" not in shown
    assert "127.0.0.1:1" not in shown and set(local) - set(remote) == {"spool", "database_error"}


# -- helpers ---------------------------------------------------------------------------------


async def asgi_get(app: RecordingProxy, path: str, client: tuple[str, int]) -> Any:
    """One GET through the ASGI app with a chosen peer address (uvicorn sets it from the socket)."""
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [],
        "client": client,
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 200
    return json.loads(sent[1]["body"])


class proxy_process:
    """`seedledger proxy` as a subprocess; yields (base URL, banner lines)."""

    def __init__(self, args: list[str]) -> None:
        self.args = args

    def __enter__(self) -> tuple[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEEDLEDGER_")}
        self.child = subprocess.Popen(
            [*COMMAND, *self.args, "--no-fingerprint"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=Path(self.args[self.args.index("--spool") + 1]).parent,
        )
        assert self.child.stderr is not None
        banner = self.child.stderr.readline()
        match = re.search(r"listening on (http://\S+)", banner)
        assert match, banner + self.child.stderr.read()
        # The second line names the webhook secret's file (when it was not given). Read in
        # a thread: a proxy that prints no such line must fail the test, not hang it.
        second: list[str] = []
        reader = threading.Thread(target=lambda: second.append(self.child.stderr.readline()), daemon=True)
        reader.start()
        reader.join(30)
        banner += "".join(second)
        base = match.group(1)
        deadline = time.monotonic() + 30  # the shared CI machine can be slow
        while True:
            try:
                httpx.get(base.replace("0.0.0.0", "127.0.0.1") + "/_seedledger/health", timeout=30)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "proxy did not answer"
                time.sleep(0.05)
        return base, banner

    def __exit__(self, *_: object) -> None:
        self.child.terminate()
        try:
            self.child.wait(20)
        finally:
            self.child.kill()
            assert self.child.stderr is not None
            self.child.stderr.close()
