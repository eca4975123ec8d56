"""The older ``{"error": …}`` envelope, in each shape servers sent it: one object, a list
(one item per failed task), a bare message. Each task-scoped item becomes a failed
record, over REST and over WebSocket, through a real proxy; a message that names no
task records nothing and never costs the results beside it."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from ledger.backends.reference.server import ReferenceServer
from ledger.capture import Recorder
from ledger.core.records import Record, Status
from tests.conftest import SENTINEL_KEY
from tests.ws_support import IMAGE, assert_no_sentinel, proxy, records

pytestmark = pytest.mark.slow


def image(**params: Any) -> dict[str, Any]:
    return {"taskType": "imageInference", "taskUUID": str(uuid.uuid4()), **IMAGE, **params}


def three_tasks() -> list[dict[str, Any]]:
    """One that succeeds, two that fail (unknown models)."""
    return [image(seed=1), image(model="nosuch:1@1", seed=2), image(model="nosuch:2@1", seed=3)]


def check(stored: list[Record], tasks: list[dict[str, Any]]) -> None:
    by_task = {r.task_uuid: r for r in stored}
    assert len(stored) == 3 and set(by_task) == {t["taskUUID"] for t in tasks}
    ok, *bad = (by_task[t["taskUUID"]] for t in tasks)
    assert ok.status == Status.OK and ok.seed == 1
    assert [(r.status, r.error_code, r.seed) for r in bad] == [
        (Status.FAILED, "invalidModel", 2),
        (Status.FAILED, "invalidModel", 3),
    ]


@pytest.mark.parametrize("shape", ["list", "object"])
def test_legacy_error_items_become_failed_records_over_rest_and_websocket(
    shape: str, sqlite_url: str, tmp_path: Path
) -> None:
    rest_tasks, ws_tasks = three_tasks(), three_tasks()
    with (
        ReferenceServer.running(api_key=SENTINEL_KEY, legacy_errors=shape) as server,
        proxy(sqlite_url, tmp_path / "spool", server.base_url, tmp_path / "proxy.log") as running,
    ):
        answer = httpx.post(
            running.base + "/v1", json=rest_tasks, headers={"Authorization": f"Bearer {SENTINEL_KEY}"}
        ).json()
        # REST: one envelope, both failures in the older field (a list, even for "object").
        assert "errors" not in answer and [e["taskUUID"] for e in answer["error"]] == [
            t["taskUUID"] for t in rest_tasks[1:]
        ]

        async def over_socket() -> list[dict[str, Any]]:
            frames = []
            async with connect(running.ws_url) as ws:
                await ws.send(json.dumps([{"taskType": "authentication", "apiKey": SENTINEL_KEY}]))
                await ws.recv()
                await ws.send(json.dumps(ws_tasks))
                while len(frames) < 3:
                    frames.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
            return frames

        frames = asyncio.run(over_socket())
        running.stop()
    failures = [f["error"] for f in frames if "error" in f]
    assert len(failures) == 2 and all(isinstance(f, list if shape == "list" else dict) for f in failures)
    stored = records(sqlite_url)
    check([r for r in stored if r.task_uuid in {t["taskUUID"] for t in rest_tasks}], rest_tasks)
    check([r for r in stored if r.task_uuid in {t["taskUUID"] for t in ws_tasks}], ws_tasks)
    assert_no_sentinel(tmp_path)


def test_every_shape_of_the_error_field_in_process(sqlite_url: str, tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "spool", sqlite_url, fingerprint=False)
    # A socket frame carrying one task's result and two tasks' errors in one list.
    tasks = three_tasks()
    recorder.record_socket_tasks(tasks)
    result = {"taskType": "imageInference", "taskUUID": tasks[0]["taskUUID"], "imageUUID": "i-1", "seed": 1}
    errors = [{"code": "invalidModel", "taskUUID": t["taskUUID"]} for t in tasks[1:]]
    frame = recorder.record_socket_frame(json.dumps({"data": [result], "error": errors}).encode())
    assert (frame.records, frame.tasks) == (3, 3)
    # A bare message names no task: nothing is recorded for it, the result beside it is.
    rest = image(seed=9)
    rest_result = {"taskType": "imageInference", "taskUUID": rest["taskUUID"], "imageUUID": "i-2", "seed": 9}
    body = json.dumps({"data": [rest_result], "error": "partial outage"}).encode()
    assert recorder.record_exchange(json.dumps([rest]).encode(), body) == 1
    alone = image(seed=10)
    assert recorder.record_exchange(json.dumps([alone]).encode(), b'{"error": "overloaded"}') == 0
    assert recorder.counters.snapshot()["failed"] == 0  # read, not refused
    assert recorder.close(drain_timeout=30)
    stored = records(sqlite_url)
    check([r for r in stored if r.task_uuid in {t["taskUUID"] for t in tasks}], tasks)
    assert {r.task_uuid for r in stored} == {t["taskUUID"] for t in tasks} | {rest["taskUUID"]}
