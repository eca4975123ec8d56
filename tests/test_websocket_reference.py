"""The reference server's WebSocket API (Runware's default transport), spoken directly
with the `websockets` client: authentication sessions, ping, per-task errors, async
delivery through getResponse, idle close, buffered results on resume. Plus the access
log's redaction of secret query values."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import uuid
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ledger.backends.reference.server import ReferenceServer
from tests.conftest import SENTINEL_KEY
from tests.test_capture import image_task as task


async def auth(ws: ClientConnection, key: str = SENTINEL_KEY, session: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"taskType": "authentication", "apiKey": key}
    if session:
        message["connectionSessionUUID"] = session
    await ws.send(json.dumps([message]))
    return json.loads(await ws.recv())


async def collect(ws: ClientConnection, wanted: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    """Items (results and errors) per taskUUID, read until each has its count."""
    items: dict[str, list[dict[str, Any]]] = {key: [] for key in wanted}
    while any(len(items[k]) < n for k, n in wanted.items()):
        frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
        for item in frame.get("data", []) + frame.get("errors", []):
            items.setdefault(item.get("taskUUID"), []).append(item)
    return items


async def frames_for(ws: ClientConnection, task_uuid: str, count: int) -> list[dict[str, Any]]:
    return (await collect(ws, {task_uuid: count}))[task_uuid]


def test_session_ping_errors_sync_and_async_delivery() -> None:
    async def scenario(url: str) -> None:
        async with connect(url) as ws:
            # Tasks before authentication are refused, per task.
            await ws.send(json.dumps([task()]))
            assert json.loads(await ws.recv())["errors"][0]["code"] == "unauthenticated"
            bad = await auth(ws, key="wrong-key-1234")
            assert bad["errors"][0]["code"] == "invalidApiKey" and SENTINEL_KEY not in json.dumps(bad)
            (reply,) = (await auth(ws))["data"]
            assert reply["taskType"] == "authentication" and uuid.UUID(reply["connectionSessionUUID"])
            await ws.send(json.dumps([{"taskType": "ping", "ping": True}]))
            assert json.loads(await ws.recv()) == {"data": [{"taskType": "ping", "pong": True}]}
            three, unknown = task(seed=5, numberResults=3), task(model="nosuch:1@1")
            await ws.send(json.dumps([three, unknown]))
            got = await collect(ws, {three["taskUUID"]: 3, unknown["taskUUID"]: 1})
            results, (error,) = got[three["taskUUID"]], got[unknown["taskUUID"]]
            assert results[0]["seed"] == 5 and len({r["imageUUID"] for r in results}) == 3
            assert error["code"] == "invalidModel"
            slow = task(seed=8, deliveryMethod="async")
            await ws.send(json.dumps([slow]))
            (ack,) = await frames_for(ws, slow["taskUUID"], 1)
            assert set(ack) == {"taskType", "taskUUID"}
            poll = [{"taskType": "getResponse", "taskUUID": slow["taskUUID"]}]
            await ws.send(json.dumps(poll))
            assert (await frames_for(ws, slow["taskUUID"], 1))[0]["status"] == "processing"
            await asyncio.sleep(0.3)
            await ws.send(json.dumps(poll))
            (done,) = await frames_for(ws, slow["taskUUID"], 1)
            assert done["status"] == "success" and done["seed"] == 8

    with ReferenceServer.running(api_key=SENTINEL_KEY, ws_split_results=True) as server:
        asyncio.run(scenario(server.ws_url))
        assert server.ws.stats.connections == 1


def test_idle_close_and_buffered_results_on_resume() -> None:
    async def scenario(server: ReferenceServer) -> None:
        async with connect(server.ws_url) as ws:
            session = (await auth(ws))["data"][0]["connectionSessionUUID"]
            pending = task(seed=21, numberResults=2)
            await ws.send(json.dumps([pending]))
        # Gone before the results: they wait for the session.
        await asyncio.sleep(0.8)
        async with connect(server.ws_url) as ws:
            assert (await auth(ws, session=session))["data"][0]["connectionSessionUUID"] == session
            results = await frames_for(ws, pending["taskUUID"], 2)
            assert sorted(r["seed"] for r in results)[0] > 0 and any(r["seed"] == 21 for r in results)
            try:
                await asyncio.wait_for(ws.recv(), 5)
                raise AssertionError("the idle socket was not closed")
            except ConnectionClosed as closed:
                assert closed.rcvd is not None
                assert (closed.rcvd.code, closed.rcvd.reason) == (1000, "idle timeout")
        async with connect(server.ws_url) as ws:  # a new session starts empty
            assert (await auth(ws))["data"][0]["connectionSessionUUID"] != session

    with ReferenceServer.running(latency_ms=300, ws_idle_seconds=1.5) as server:
        asyncio.run(scenario(server))
        assert server.ws.stats.resumed == 1 and server.ws.stats.replayed_frames == 1
        assert server.ws.stats.idle_closed >= 1


@pytest.mark.parametrize("shape", ["object", "list"])
def test_legacy_error_shape(shape: str) -> None:
    async def scenario(url: str) -> dict[str, Any]:
        async with connect(url) as ws:
            await auth(ws)
            await ws.send(json.dumps([task(model="nosuch:2@1")]))
            return json.loads(await ws.recv())

    with ReferenceServer.running(legacy_errors=shape) as server:
        frame = asyncio.run(scenario(server.ws_url))
    assert set(frame) == {"error"}
    items = frame["error"] if shape == "list" else [frame["error"]]
    assert [i["code"] for i in items] == ["invalidModel"]


def test_access_log_redacts_api_keys_in_query_strings() -> None:
    command = [sys.executable, "-m", "ledger", "reference-server", "--port", "0"]
    with subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stderr is not None
            match = re.search(r"(http://127\.0\.0\.1:\d+)/v1", proc.stderr.readline())
            assert match
            with httpx.Client(timeout=30) as c:
                assert c.get(f"{match[1]}/health?apiKey={SENTINEL_KEY}&x=1").status_code == 200
        finally:
            proc.terminate()
            out, err = proc.communicate(timeout=20)
    assert "GET /health?apiKey=" in out and "x=1" in out  # uvicorn's access line, without the key
    assert SENTINEL_KEY not in out + err
