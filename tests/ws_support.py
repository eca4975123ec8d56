"""Shared pieces of the WebSocket tests: a `seedledger proxy` subprocess, the SDK
venvs, the ledger and on-disk checks."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.core.records import Record
from ledger.store import Ledger
from scripts import sdk_venvs
from tests.cli import COMMAND, seedledger
from tests.conftest import IN_CI, SENTINEL_KEY

IMAGE = {"model": "runware:101@1", "positivePrompt": "a lighthouse at dusk", "width": 128, "height": 128}
# One task per case of the acceptance list; `failing` uses a model the server does not know.
PLAN: list[dict[str, Any]] = [
    {"name": "seeded", "params": {**IMAGE, "seed": 42}},
    {"name": "unseeded", "params": dict(IMAGE)},
    {"name": "three", "params": {**IMAGE, "seed": 7, "numberResults": 3}},
    {"name": "stochastic", "params": {**IMAGE, "seed": 9, "scheduler": "Euler a"}},
    {"name": "async", "params": {**IMAGE, "seed": 11, "deliveryMethod": "async"}},
    {"name": "failing", "params": {**IMAGE, "model": "nosuch:1@1", "seed": 5}},
    {"name": "maxseed", "params": {**IMAGE, "seed": 2**63 - 1}},
]
SDK_CLIENT = Path(__file__).with_name("sdk_client.py")
# The legacy SDK waits up to 30 s for a poll answer that carries results; its own
# environment settings shorten that (the SDK itself is unchanged).
LEGACY_ENV = {"RUNWARE_VIDEO_INITIAL_TIMEOUT": "1500", "RUNWARE_IMAGE_POLLING_DELAY": "300"}


def sdk_python(name: str) -> Path:
    """The SDK venv's interpreter (built once, cached); fails in CI when it cannot be built."""
    try:
        return sdk_venvs.build(name)
    except (OSError, subprocess.SubprocessError) as exc:
        if IN_CI:
            pytest.fail(f"cannot build the {name} SDK venv: {exc}")
        pytest.skip(f"cannot build the {name} SDK venv here: {exc}")


def run_sdk(
    name: str, url: str, plan: list[dict[str, Any]], workdir: Path, timeout: float = 120
) -> subprocess.Popen[str]:
    plan_path = workdir / f"plan-{name}.json"
    plan_path.write_text(json.dumps(plan))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEEDLEDGER_", "RUNWARE_"))}
    if name == "runware":
        env.update(LEGACY_ENV)
    env.pop("PYTHONPATH", None)  # the SDK venv must not see seedledger
    python = sdk_python(name)
    with (workdir / f"sdk-{name}.log").open("w") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [str(python), str(SDK_CLIENT), url, SENTINEL_KEY, str(plan_path)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
            cwd=workdir,
        )


def results_of(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.endswith("\n") and line.strip()]


@dataclass
class Proxy:
    process: subprocess.Popen[str]
    base: str
    log: Path

    @property
    def ws_url(self) -> str:
        return "ws" + self.base[len("http") :] + "/v1"

    def stop(self) -> None:
        """SIGTERM: uvicorn finishes, the recorder drains."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(60) in (0, -signal.SIGTERM)


@contextlib.contextmanager
def proxy(
    db_url: str, spool: Path, upstream: str, log: Path, listen: str = "127.0.0.1:0", *extra: str
) -> Iterator[Proxy]:
    handle = log.open("a")
    process = subprocess.Popen(
        [
            *COMMAND,
            "--db",
            db_url,
            "proxy",
            "--upstream",
            upstream,
            "--listen",
            listen,
            "--spool",
            str(spool),
            "--no-fingerprint",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=handle,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        match = None
        while match is None:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            match = re.findall(r"listening on (http://\S+)", log.read_text())
            match = match[-1] if match else None
            time.sleep(0.05)
        while True:  # the banner comes when the port is bound, before uvicorn listens
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(match + "/_seedledger/health", timeout=5).status_code == 200:
                    break
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield Proxy(process, match, log)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)
        handle.close()


def drain(db_url: str, spool: Path) -> None:
    run = seedledger("--json", "--db", db_url, "spool", "drain", "--spool", str(spool), "--no-fingerprint")
    assert run.code == 0, run.err
    assert SENTINEL_KEY not in run.out + run.err


def records(db_url: str) -> list[Record]:
    with Ledger.open(db_url) as ledger:
        return ledger.query()


def assert_recorded_once(db_url: str, received: list[dict[str, Any]]) -> list[Record]:
    """Every output the client received is in the ledger exactly once, with the seed it saw."""
    stored = records(db_url)
    by_output: dict[str, list[Record]] = {}
    for record in stored:
        if record.output_uuid:
            by_output.setdefault(record.output_uuid, []).append(record)
    outputs = [r for r in received if r.get("imageUUID")]
    assert outputs
    for result in outputs:
        found = by_output.get(result["imageUUID"], [])
        assert len(found) == 1, result
        assert found[0].seed == result["seed"], result
    assert all(len(v) == 1 for v in by_output.values())
    return stored


def assert_no_sentinel(*roots: Path) -> None:
    """The API key is nowhere on disk: database (and WAL), spool, logs."""
    needles = (SENTINEL_KEY.encode(), SENTINEL_KEY[:12].encode())  # nor a prefix of it
    checked = 0
    for root in roots:
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file():
                checked += 1
                data = path.read_bytes()
                assert not any(n in data for n in needles), path
    assert checked
