"""``runware-sdk`` on ``transport="rest"``, unchanged in its own venv, records in process
through ``RuntimeDependencies(session=recording_session(…))``, with no proxy: one record
per output the SDK received (async tasks polled with getResponse included), a failing
task as a failed record, the API key nowhere on disk. The middleware itself is also
checked with plain aiohttp: what it does not record passes untouched."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.backends.reference.server import ReferenceServer
from ledger.capture import Recorder
from ledger.capture.aiohttp_hook import recording_session
from ledger.core.records import SeedOrigin, Status
from tests.conftest import SENTINEL_KEY
from tests.ws_support import IMAGE, assert_no_sentinel, assert_recorded_once, records, results_of, sdk_python

ROOT = Path(__file__).resolve().parent.parent

REST_CLIENT = r"""
import asyncio, json, sys, uuid
from runware import Runware, RuntimeDependencies
from ledger.capture import Recorder
from ledger.capture.aiohttp_hook import recording_session

url, key, spool, db, plan = sys.argv[1:6]
recorder = Recorder(spool, db, fingerprint=False)

async def main():
    async with recording_session(recorder) as session:
        deps = RuntimeDependencies(session=session)
        async with Runware(api_key=key, transport="rest", http_base_url=url, dependencies=deps) as client:
            for case in json.loads(plan):
                task = {"taskType": "imageInference", "taskUUID": str(uuid.uuid4()), **case["params"]}
                try:
                    items = await client.run(task)
                except Exception as exc:
                    code = getattr(exc, "code", None) or type(exc).__name__
                    print(json.dumps({"case": case["name"], "taskUUID": task["taskUUID"], "error": code}))
                    continue
                for item in items:
                    print(json.dumps({"case": case["name"], "taskUUID": task["taskUUID"],
                                      "imageUUID": item["imageUUID"], "seed": item["seed"]}))

asyncio.run(main())
assert recorder.close(drain_timeout=30)
"""

PLAN = [
    {"name": "seeded", "params": {**IMAGE, "seed": 42}},
    {"name": "unseeded", "params": dict(IMAGE)},
    {"name": "three", "params": {**IMAGE, "seed": 7, "numberResults": 3}},
    {"name": "failing", "params": {**IMAGE, "model": "nosuch:1@1", "seed": 5}},
]


@pytest.fixture(scope="module")
def reference() -> Iterator[ReferenceServer]:
    with ReferenceServer.running(api_key=SENTINEL_KEY) as server:  # only answers the real key
        yield server


@pytest.mark.slow
def test_new_sdk_on_rest_records_in_process(
    reference: ReferenceServer, sqlite_url: str, tmp_path: Path
) -> None:
    sdk_site = next(sdk_python("runware-sdk").parent.parent.glob("lib/python3*/site-packages"))
    spool = tmp_path / "spool"
    requests_before = reference.stats.requests
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            REST_CLIENT,
            reference.url,
            SENTINEL_KEY,
            str(spool),
            sqlite_url,
            json.dumps(PLAN),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        # seedledger first; the SDK (unchanged) and its own dependencies from its venv after it.
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(sdk_site)])},
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (tmp_path / "client.log").write_text(done.stdout + done.stderr)  # scanned for the key below
    received = results_of(done.stdout.splitlines(keepends=True))
    by_case: dict[str, list[dict[str, Any]]] = {}
    for item in received:
        by_case.setdefault(item["case"], []).append(item)
    assert sorted(by_case) == sorted(c["name"] for c in PLAN)
    assert len(by_case["three"]) == 3 and len({r["seed"] for r in by_case["three"]}) == 3
    assert by_case["failing"][0].get("error") and not by_case["failing"][0].get("imageUUID")
    # The SDK sends deliveryMethod "async": acknowledgements, then getResponse polls.
    assert reference.stats.requests - requests_before > len(PLAN)

    stored = assert_recorded_once(sqlite_url, received)
    assert len(stored) == 5 + 1  # five outputs, one failed task
    (failed,) = [r for r in stored if r.status == Status.FAILED]
    assert failed.task_uuid == by_case["failing"][0]["taskUUID"] and failed.error_code == "invalidModel"
    (unseeded,) = [r for r in stored if r.task_uuid == by_case["unseeded"][0]["taskUUID"]]
    assert unseeded.seed_origin == SeedOrigin.RESPONSE and unseeded.seed == by_case["unseeded"][0]["seed"]
    (seeded,) = [r for r in stored if r.task_uuid == by_case["seeded"][0]["taskUUID"]]
    assert seeded.seed == 42 and seeded.seed_origin == SeedOrigin.REQUEST
    assert all(r.source.value == "hook" for r in stored)
    assert SENTINEL_KEY not in done.stdout + done.stderr
    assert_no_sentinel(tmp_path)


def test_middleware_records_tasks_and_passes_everything_else(
    reference: ReferenceServer, sqlite_url: str, tmp_path: Path
) -> None:
    recorder = Recorder(tmp_path / "spool", sqlite_url, fingerprint=False)
    task = {"taskType": "imageInference", "taskUUID": str(uuid.uuid4()), **IMAGE, "seed": 3}
    auth = {"Authorization": f"Bearer {SENTINEL_KEY}"}

    async def scenario() -> tuple[dict[str, Any], int, bytes]:
        async with recording_session(recorder) as session:
            async with session.post(reference.url, json=[task], headers=auth) as response:
                envelope = await response.json()  # the SDK's own read, after the middleware's
            async with session.get(reference.base_url + "/health") as health:
                status = health.status
            async with session.post(reference.url, data=b"not tasks", headers=auth) as other:
                other_body = await other.read()
        return envelope, status, other_body

    envelope, status, other_body = asyncio.run(scenario())
    assert recorder.close(drain_timeout=30)
    (result,) = envelope["data"]
    assert status == 200 and other_body  # passed through and answered
    (record,) = records(sqlite_url)
    assert (record.task_uuid, record.output_uuid, record.seed) == (task["taskUUID"], result["imageUUID"], 3)
    assert record.source.value == "hook"
    assert_no_sentinel(tmp_path)


def test_recording_session_refuses_undecoded_bodies(tmp_path: Path) -> None:
    async def make() -> None:
        recording_session(db=f"sqlite:///{tmp_path / 'l.db'}", auto_decompress=False)

    with pytest.raises(ValueError, match="auto_decompress"):
        asyncio.run(make())
    assert not (tmp_path / "l.db").exists()  # refused before a recorder was made
