"""The proxy's health endpoint counts its WebSocket traffic: sockets, frames each way,
tasks submitted and paired, records queued, resumes and upstream errors; a peer beyond
loopback sees the same counts (they are counts only)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from ledger.backends.reference.server import ReferenceServer
from ledger.capture import Recorder
from ledger.capture.proxy import RecordingProxy
from tests.conftest import SENTINEL_KEY
from tests.test_proxy_guard import asgi_get
from tests.ws_support import IMAGE, assert_no_sentinel, proxy, records

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference() -> Iterator[ReferenceServer]:
    with ReferenceServer.running(api_key=SENTINEL_KEY, ws_split_results=True) as server:
        yield server


def image(**params: Any) -> dict[str, Any]:
    return {"taskType": "imageInference", "taskUUID": str(uuid.uuid4()), **IMAGE, **params}


async def authenticate(ws: ClientConnection, session: str | None = None) -> str:
    message: dict[str, Any] = {"taskType": "authentication", "apiKey": SENTINEL_KEY}
    if session:
        message["connectionSessionUUID"] = session
    await ws.send(json.dumps([message]))
    reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
    return str(reply["data"][0]["connectionSessionUUID"])


async def frames_until(ws: ClientConnection, items: int) -> int:
    """Read frames until ``items`` result/error items arrived; return how many frames."""
    seen = frames = 0
    while seen < items:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
        frames += 1
        seen += len(frame.get("data", [])) + len(frame.get("errors", []))
    return frames


def health(base: str) -> dict[str, Any]:
    value: dict[str, Any] = httpx.get(base + "/_seedledger/health", timeout=30).json()
    return value


def wait_for_open_sockets(base: str, count: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while (counts := health(base)["websocket"])["open_sockets"] != count:
        assert time.monotonic() < deadline, counts
        time.sleep(0.05)
    return counts


def test_health_counts_websocket_traffic_through_a_real_proxy(
    reference: ReferenceServer, sqlite_url: str, tmp_path: Path
) -> None:
    spool, log = tmp_path / "spool", tmp_path / "proxy.log"
    with proxy(sqlite_url, spool, reference.base_url, log) as running:
        assert health(running.base)["websocket"] == {
            "open_sockets": 0,
            "sockets_opened": 0,
            "frames_from_clients": 0,
            "frames_to_clients": 0,
            "tasks_submitted": 0,
            "tasks_paired": 0,
            "records_queued": 0,
            "resumes": 0,
            "upstream_errors": 0,
        }

        async def first() -> tuple[str, int, dict[str, Any]]:
            async with connect(running.ws_url) as ws:
                session = await authenticate(ws)
                tasks = [image(seed=1), image(seed=2, numberResults=3), image(model="nosuch:1@1", seed=3)]
                await ws.send(json.dumps(tasks))
                frames = await frames_until(ws, 5)  # 1 + 3 results, 1 error
                await ws.send(json.dumps([{"taskType": "ping", "ping": True}]))
                await asyncio.wait_for(ws.recv(), 30)
                during = await asyncio.to_thread(health, running.base)
            return session, frames, during

        session, frames, during = asyncio.run(first())
        counts = during["websocket"]
        assert counts["open_sockets"] == 1 and counts["sockets_opened"] == 1
        assert counts["frames_from_clients"] == 3  # authentication, the tasks, the ping
        assert counts["frames_to_clients"] == 1 + frames + 1  # auth reply, results, pong
        assert (counts["tasks_submitted"], counts["tasks_paired"], counts["records_queued"]) == (3, 3, 5)
        assert counts["resumes"] == counts["upstream_errors"] == 0
        assert during["spooled"] == 5

        async def resume() -> None:
            async with connect(running.ws_url) as ws:
                assert await authenticate(ws, session) == session

        asyncio.run(resume())
        counts = wait_for_open_sockets(running.base, 0)
        assert counts["resumes"] == 1 and counts["sockets_opened"] == 2
        running.stop()
    assert len(records(sqlite_url)) == 5
    assert_no_sentinel(tmp_path)


def test_health_counts_upstream_errors(sqlite_url: str, tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        dead = f"ws://127.0.0.1:{closed.getsockname()[1]}"
    spool, log = tmp_path / "spool", tmp_path / "proxy.log"
    with proxy(sqlite_url, spool, "http://127.0.0.1:9", log, "127.0.0.1:0", "--ws-upstream", dead) as running:

        async def refused() -> int:
            with pytest.raises(InvalidStatus) as caught:
                async with connect(running.ws_url):
                    pass
            return caught.value.response.status_code

        assert asyncio.run(refused()) == 502
        counts = health(running.base)["websocket"]
        assert counts["upstream_errors"] == 1 and counts["sockets_opened"] == counts["open_sockets"] == 0


def test_remote_peers_see_websocket_counts_only(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "spool", f"sqlite:///{tmp_path / 'l.db'}", fingerprint=False)
    app = RecordingProxy("http://127.0.0.1:9", recorder, owns_recorder=False)
    app.ws_relay.counters.frames_to_clients = 7
    app.ws_relay.counters.upstream_errors = 2
    try:
        local = asyncio.run(asgi_get(app, "/_seedledger/health", ("127.0.0.1", 5000)))
        remote = asyncio.run(asgi_get(app, "/_seedledger/health", ("192.0.2.7", 5000)))
    finally:
        recorder.close(drain_timeout=0)
    assert remote["websocket"] == local["websocket"]
    assert remote["websocket"]["frames_to_clients"] == 7 and remote["websocket"]["upstream_errors"] == 2
    assert all(isinstance(v, int) for v in remote["websocket"].values())
    assert str(tmp_path) not in json.dumps(remote) and "127.0.0.1:9" not in json.dumps(remote)
