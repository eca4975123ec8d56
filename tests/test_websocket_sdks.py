"""Both official Runware SDKs, unchanged, on their default WebSocket transport, through
`seedledger proxy` to the reference server: every output they receive is recorded once
with the seed they saw, and the API key is nowhere on disk. Then SIGKILL of the proxy
with results in flight: the new SDK reconnects, resumes its session and nothing it
received is lost or doubled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.backends.reference.server import ReferenceServer
from ledger.core.records import SeedOrigin, Status
from tests.conftest import SENTINEL_KEY
from tests.ws_support import (
    IMAGE,
    PLAN,
    assert_no_sentinel,
    assert_recorded_once,
    drain,
    proxy,
    results_of,
    run_sdk,
    sdk_python,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference() -> Iterator[ReferenceServer]:
    # The server requires the sentinel key: it only answers when the key got through.
    with ReferenceServer.running(api_key=SENTINEL_KEY, ws_split_results=True) as server:
        yield server


@pytest.mark.parametrize("sdk", ["runware", "runware-sdk"])
def test_sdk_on_its_default_websocket_transport_is_recorded_once(
    sdk: str, reference: ReferenceServer, sqlite_url: str, tmp_path: Path
) -> None:
    spool, log = tmp_path / "spool", tmp_path / "proxy.log"
    with proxy(sqlite_url, spool, reference.base_url, log) as running:
        client = run_sdk(sdk, running.ws_url, PLAN, tmp_path)
        out, _ = client.communicate(timeout=120)
        assert client.returncode == 0, (tmp_path / f"sdk-{sdk}.log").read_text()
        running.stop()
    received = results_of(out.splitlines(keepends=True))
    by_case: dict[str, list[dict]] = {}
    for item in received:
        by_case.setdefault(item["case"], []).append(item)
    # What the SDK saw: each case answered, three outputs for numberResults 3, the failure as an error.
    assert sorted(by_case) == sorted(c["name"] for c in PLAN)
    assert len(by_case["three"]) == 3 and len({r["seed"] for r in by_case["three"]}) == 3
    assert by_case["maxseed"][0]["seed"] == 2**63 - 1
    assert [r.get("error") for r in by_case["failing"]] not in ([None], [])

    stored = assert_recorded_once(sqlite_url, received)
    failed = [r for r in stored if r.status == Status.FAILED]
    assert [r.task_uuid for r in failed] == [by_case["failing"][0]["taskUUID"]]
    assert failed[0].error_code == "invalidModel"
    assert len(stored) == len([r for r in received if r.get("imageUUID")]) + 1
    (unseeded,) = [r for r in stored if r.task_uuid == by_case["unseeded"][0]["taskUUID"]]
    assert unseeded.seed_origin == SeedOrigin.RESPONSE and unseeded.seed == by_case["unseeded"][0]["seed"]
    (stochastic,) = [r for r in stored if r.task_uuid == by_case["stochastic"][0]["taskUUID"]]
    assert stochastic.scheduler == "Euler a" and stochastic.seed == 9
    assert all(r.source.value == "proxy" for r in stored)
    assert_no_sentinel(tmp_path)


def test_sigkill_of_the_proxy_mid_flight_new_sdk_resumes_and_nothing_is_lost(
    sqlite_url: str, tmp_path: Path
) -> None:
    spool, log = tmp_path / "spool", tmp_path / "proxy.log"
    # Slow tasks keep results in flight when the proxy dies.
    with ReferenceServer.running(api_key=SENTINEL_KEY, latency_ms=1500, async_polls=0) as server:
        with proxy(sqlite_url, spool, server.base_url, log) as first:
            listen = first.base.removeprefix("http://")
            plan = [
                {"name": "sync", "params": {**IMAGE, "deliveryMethod": "sync", "numberResults": 2}},
                {"name": "async", "params": {**IMAGE, "numberResults": 2}},
            ]
            for case in plan:
                case["repeat"] = 4
            client = run_sdk("runware-sdk", first.ws_url, plan, tmp_path)
            deadline = time.monotonic() + 60
            while server.ws.stats.tasks_received < 8:  # all submitted; results come 1.5 s later
                assert time.monotonic() < deadline and client.poll() is None
                time.sleep(0.01)
            assert server.stats.tasks == 0  # nothing answered yet: every result is in flight
            os.kill(first.process.pid, signal.SIGKILL)
            first.process.wait(10)
        deadline = time.monotonic() + 60
        while server.stats.tasks < 8:  # the results are made while the proxy is down
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.2)
        assert server.ws.stats.resumed == 0 and server.ws.stats.buffered_frames >= 4  # the sync results
        # Restarted on the same port: the SDK's reconnect finds it and resumes its session.
        with proxy(sqlite_url, spool, server.base_url, log, listen=listen) as second:
            out, _ = client.communicate(timeout=120)
            assert client.returncode == 0, (tmp_path / "sdk-runware-sdk.log").read_text()
            second.stop()
        assert server.ws.stats.resumed >= 1 and server.ws.stats.replayed_frames >= 1
    received = results_of(out.splitlines(keepends=True))
    outputs = [r for r in received if r.get("imageUUID")]
    assert len(outputs) >= 2, received
    drain(sqlite_url, spool)
    stored = assert_recorded_once(sqlite_url, received)
    # The sync tasks' results were buffered by the server while the proxy was dead and
    # replayed on the resumed session: the SDK had given up on them, the ledger has them.
    lost = {r["taskUUID"] for r in received if r["case"] == "sync"}
    assert len([r for r in stored if r.task_uuid in lost]) == 2 * len(lost) == 8
    assert_no_sentinel(tmp_path)


HOOK_CLIENT = r"""
import asyncio, json, sys, uuid
from runware import Runware, RuntimeDependencies
from ledger.capture import Recorder
from ledger.capture.ws_hook import recording_ws_connect

url, key, spool, db = sys.argv[1:5]
recorder = Recorder(spool, db, fingerprint=False)

async def main():
    deps = RuntimeDependencies(ws_connect=recording_ws_connect(recorder))
    async with Runware(api_key=key, ws_base_url=url, dependencies=deps) as client:
        for params in json.loads(sys.argv[5]):
            task = {"taskType": "imageInference", "taskUUID": str(uuid.uuid4()), **params}
            for item in await client.run(task):
                print(json.dumps({"case": "hook", "imageUUID": item["imageUUID"], "seed": item["seed"]}))

asyncio.run(main())
assert recorder.close(drain_timeout=30)
"""


def test_in_process_hook_for_the_new_sdk(reference: ReferenceServer, sqlite_url: str, tmp_path: Path) -> None:
    sdk_site = next(sdk_python("runware-sdk").parent.parent.glob("lib/python3*/site-packages"))
    params = [{**IMAGE, "seed": 5}, {**IMAGE, "numberResults": 3}]
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            HOOK_CLIENT,
            reference.ws_url,
            SENTINEL_KEY,
            str(tmp_path / "spool"),
            sqlite_url,
            json.dumps(params),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        # seedledger first; the SDK and its own dependencies from its venv after it.
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent.parent), str(sdk_site)])},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    received = results_of(done.stdout.splitlines(keepends=True))
    assert len(received) == 4
    stored = assert_recorded_once(sqlite_url, received)
    assert len(stored) == 4 and all(r.source.value == "hook" for r in stored)
    assert SENTINEL_KEY not in done.stdout + done.stderr
    assert_no_sentinel(tmp_path)


DEMO_CLIENT = r"""
import asyncio, json, sys
from ledger.demo import _task, _websocket_traffic
small = {"width": 64, "height": 64, "steps": 2}
tasks = [
    _task("runware:101@1", "a harbour", seed=3, numberResults=2, **small),
    _task("runware:101@1", "a bay", **small),
]
print(json.dumps(asyncio.run(_websocket_traffic(sys.argv[1], tasks))))
"""


def test_demo_speaks_websocket_with_the_official_sdk_when_installed() -> None:
    # Without the SDK (the project's own venv) test_demo.py sees the plain websockets client.
    sdk_site = next(sdk_python("runware-sdk").parent.parent.glob("lib/python3*/site-packages"))
    path = os.pathsep.join([str(Path(__file__).parent.parent), str(sdk_site)])
    with ReferenceServer.running() as server:  # open: the demo's own key
        done = subprocess.run(
            [sys.executable, "-c", DEMO_CLIENT, server.ws_url],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": path},
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [3, "runware-sdk"]
