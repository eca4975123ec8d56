"""`seedledger proxy` relaying WebSocket to a scripted upstream (a real `websockets`
server on loopback): transparency (bytes, order, path and query, headers, size, pings,
close codes both ways) and recording across frames (several tasks per frame, one task
over several frames, the older ``error`` shape, a result seen twice, the API key kept
out of everything)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ledger.core.records import SeedOrigin, Status
from tests.conftest import SENTINEL_KEY
from tests.test_capture import image_task as _task
from tests.ws_support import Proxy, assert_no_sentinel, drain, proxy, records


class Upstream:
    """A scripted WebSocket server in a thread: echoes frames, obeys ``close:CODE``,
    and answers Runware tasks with whatever frames a test queued for them."""

    def __init__(self) -> None:
        self.handshakes: list[tuple[str, dict[str, str]]] = []
        self.received: list[str | bytes] = []
        self.closes: list[tuple[int, str]] = []
        self.script: list[str] = []  # frames to send after the next task frame
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future[None] | None = None

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.handshakes.append((ws.request.path, dict(ws.request.headers.raw_items())))
        try:
            async for message in ws:
                self.received.append(message)
                if isinstance(message, str) and message.startswith("close:"):
                    code = int(message.split(":")[1])
                    await ws.close(code, "bye")
                    return
                if isinstance(message, str) and "authentication" in message:
                    reply = {"taskType": "authentication", "connectionSessionUUID": "s-1"}
                    await ws.send(json.dumps({"data": [reply]}))
                elif isinstance(message, str) and "taskUUID" in message and self.script:
                    frames, self.script = self.script, []
                    for frame in frames:
                        await ws.send(frame)
                elif "taskType" not in (message if isinstance(message, str) else ""):
                    await ws.send(message)  # echo
        except ConnectionClosed:
            pass
        finally:
            if ws.close_code is not None:
                self.closes.append((ws.close_code, ws.close_reason or ""))

    def run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = self._loop.create_future()
            async with serve(self.handler, "127.0.0.1", 0, max_size=None) as server:
                self.port = server.sockets[0].getsockname()[1]
                self._ready.set()
                await self._stop

        asyncio.run(main())

    @contextlib.contextmanager
    def running(self) -> Iterator[Upstream]:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        assert self._ready.wait(10)
        try:
            yield self
        finally:
            assert self._loop is not None and self._stop is not None
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
            thread.join(10)


@contextlib.contextmanager
def _relay(db: str, tmp_path: Path) -> Iterator[tuple[Upstream, Proxy]]:
    upstream = Upstream()
    with upstream.running():
        target = f"http://127.0.0.1:{upstream.port}"  # known once it runs
        with proxy(db, tmp_path / "spool", target, tmp_path / "proxy.log") as running:
            yield upstream, running
            running.stop()


@pytest.fixture
def relayed(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[Upstream, Proxy]]:
    with _relay(sqlite_url, tmp_path) as pair:
        yield pair


@pytest.fixture
def relayed_db(db_url: str, tmp_path: Path) -> Iterator[tuple[Upstream, Proxy]]:
    """Recording on both engines (SQLite and PostgreSQL)."""
    with _relay(db_url, tmp_path) as pair:
        yield pair


def test_relay_is_transparent(relayed: tuple[Upstream, Proxy]) -> None:
    upstream, url = relayed[0], relayed[1].ws_url
    big = "ünïcødé ✓ " * 1_300_000  # ~18 MB in one text frame: past uvicorn's 16 MiB default, no limit

    async def scenario() -> None:
        async with connect(
            url + "?sdk=js&version=1.2.3",
            additional_headers={"X-SDK-Name": "python", "X-SDK-Version": "0.5.24"},
            user_agent_header="runware-test/1",
            max_size=None,
        ) as ws:
            frames = [f"frame {i} ✓" for i in range(50)]
            for frame in frames:
                await ws.send(frame)
            assert [await ws.recv() for _ in frames] == frames  # in order, unchanged
            await ws.send(big)
            assert await ws.recv() == big
            await ws.send(b"\x00\x01binary")
            assert await ws.recv() == b"\x00\x01binary"
            pong = await ws.ping()  # answered by the proxy's hop
            await asyncio.wait_for(pong, 5)
            app_ping = json.dumps([{"taskType": "ping", "ping": True}])
            await ws.send(app_ping)
            await ws.send("close:4001")
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "bye")
            assert app_ping in upstream.received  # application pings reach the upstream
        async with connect(url, max_size=None) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.close(4002, "client done")

    asyncio.run(scenario())
    path, headers = upstream.handshakes[0]
    assert path == "/v1?sdk=js&version=1.2.3"
    lower = {k.lower(): v for k, v in headers.items()}
    assert lower["x-sdk-name"] == "python" and lower["x-sdk-version"] == "0.5.24"
    assert lower["user-agent"] == "runware-test/1"
    assert big in upstream.received
    deadline = asyncio.run(_wait_for(lambda: (4002, "client done") in upstream.closes))
    assert deadline, upstream.closes


async def _wait_for(condition: Any, seconds: float = 10) -> bool:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return True
        await asyncio.sleep(0.05)
    return False


def _result(task: dict[str, Any], seed: int, image: str | None = None) -> dict[str, Any]:
    image = image or str(uuid.uuid4())
    return {
        "taskType": "imageInference",
        "taskUUID": task["taskUUID"],
        "imageUUID": image,
        "imageURL": f"https://im.example/{image}.jpg",
        "seed": seed,
    }


def test_recording_pairs_tasks_across_frames(
    relayed_db: tuple[Upstream, Proxy], db_url: str, tmp_path: Path
) -> None:
    relayed, sqlite_url = relayed_db, db_url  # either engine
    upstream, url = relayed[0], relayed[1].ws_url
    two, unseeded, legacy_fail, fail = _task(seed=3, numberResults=2), _task(), _task(seed=1), _task(seed=2)
    late = _task(seed=4, deliveryMethod="async")
    first, second, third = _result(two, 3), _result(two, 99), _result(unseeded, 123456789)
    upstream.script = [
        # One frame with items of two tasks, the rest of `two` in a later frame,
        json.dumps({"data": [first, third]}),
        json.dumps({"data": [second]}),
        # per-task errors in both shapes, and an async acknowledgement,
        json.dumps({"error": {"code": "invalidModel", "message": "no", "taskUUID": legacy_fail["taskUUID"]}}),
        json.dumps({"errors": [{"code": "timeoutProvider", "message": "x", "taskUUID": fail["taskUUID"]}]}),
        json.dumps({"data": [{"taskType": "imageInference", "taskUUID": late["taskUUID"]}]}),
    ]
    delivered = _result(late, 4)

    async def scenario() -> list[str]:
        got: list[str] = []
        async with connect(url) as ws:
            await ws.send(json.dumps([{"taskType": "authentication", "apiKey": SENTINEL_KEY}]))
            got.append(await ws.recv())
            await ws.send(json.dumps([two, unseeded, legacy_fail, fail, late]))
            got.extend([await ws.recv() for _ in range(5)])
            # getResponse polled twice, answered with the same result both times.
            for _ in range(2):
                upstream.script = [json.dumps({"data": [{**delivered, "status": "success"}]})]
                await ws.send(json.dumps([{"taskType": "getResponse", "taskUUID": late["taskUUID"]}]))
                got.append(await ws.recv())
        return got

    frames = asyncio.run(scenario())
    relayed[1].stop()
    assert SENTINEL_KEY not in "".join(frames)
    assert json.loads(frames[1]) == {"data": [first, third]}  # relayed unchanged
    drain(sqlite_url, tmp_path / "spool")
    stored = {(r.task_uuid, r.output_uuid): r for r in records(sqlite_url)}
    assert len(stored) == 6
    assert [stored[(two["taskUUID"], i["imageUUID"])].seed for i in (first, second)] == [3, 99]
    rec = stored[(unseeded["taskUUID"], third["imageUUID"])]
    assert rec.seed == 123456789 and rec.seed_origin == SeedOrigin.RESPONSE
    assert stored[(late["taskUUID"], delivered["imageUUID"])].seed == 4
    failed = {r.task_uuid: r.error_code for r in stored.values() if r.status == Status.FAILED}
    assert failed == {legacy_fail["taskUUID"]: "invalidModel", fail["taskUUID"]: "timeoutProvider"}
    assert_no_sentinel(tmp_path)


def test_cumulative_polls_record_each_output_once(
    relayed: tuple[Upstream, Proxy], sqlite_url: str, tmp_path: Path
) -> None:
    """getResponse may answer with every result so far, each time: [r1], [r1, r2], [r1, r2, r3]."""
    upstream, url = relayed[0], relayed[1].ws_url
    three = _task(seed=10, numberResults=3, deliveryMethod="async")
    results = [_result(three, seed) for seed in (10, 11, 12)]
    upstream.script = [json.dumps({"data": [{"taskType": "imageInference", "taskUUID": three["taskUUID"]}]})]

    async def scenario() -> None:
        async with connect(url) as ws:
            await ws.send(json.dumps([{"taskType": "authentication", "apiKey": SENTINEL_KEY}]))
            await ws.recv()
            await ws.send(json.dumps([three]))
            await ws.recv()
            for upto in (1, 2, 3):
                so_far = [{**r, "status": "success"} for r in results[:upto]]
                upstream.script = [json.dumps({"data": so_far})]
                await ws.send(json.dumps([{"taskType": "getResponse", "taskUUID": three["taskUUID"]}]))
                await ws.recv()

    asyncio.run(scenario())
    relayed[1].stop()
    drain(sqlite_url, tmp_path / "spool")
    stored = sorted((r.output_uuid, r.seed) for r in records(sqlite_url))
    assert stored == sorted((r["imageUUID"], r["seed"]) for r in results)


def test_refused_targets_and_unreachable_upstream(sqlite_url: str, tmp_path: Path) -> None:
    async def status_of(url: str) -> int:
        try:
            async with connect(url):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        dead = free.getsockname()[1]  # nothing listens here once the socket is closed
    with proxy(sqlite_url, tmp_path / "spool", f"http://127.0.0.1:{dead}", tmp_path / "proxy.log") as running:
        # A target that would climb out of the upstream's path is refused before any upstream is tried.
        assert asyncio.run(status_of(running.ws_url.replace("/v1", "/a/../v1"))) == 403
        assert asyncio.run(status_of(running.ws_url)) == 502  # upstream unreachable: the handshake says so
        running.stop()
    assert "websocket upstream" in (tmp_path / "proxy.log").read_text()
