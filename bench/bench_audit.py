"""The auditor's throughput: 1,000 replays against the reference server at 200 ms latency.

Figure (one JSON line):

- ``audit_1000_replays_200ms_c16``: wall-clock seconds for ``run_audit`` over 1,000
  records (64×64 PNG originals with stored fingerprints) at ``--concurrency 16``,
  against the reference server answering every task after 200 ms. The run does
  everything a real one does: select, plan, replay over HTTP (task + download),
  fingerprint each replay, compare, store each result, mark the run finished.
  Baseline: the ideal ``1000 × 0.2 / 16`` s (latency-bound, zero overhead).
  Target: ratio ≤ 1.25.
- ``audit_{n}_replays_engine_only_c16``: the same run against an in-process stand-in
  backend that sleeps 200 ms and returns the original bytes: everything but HTTP and
  the server. Same baseline and target. Shows how much of the first figure is the
  engine and how much the server and the machine.

The server runs in its own process (``seedledger reference-server``) so its image
rendering does not share the auditor's interpreter. ``--smoke``: 64 replays.

    .venv/bin/python bench/bench_audit.py [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger.audit import AuditOptions, Policy, Selection, run_audit
from ledger.audit.originals import generate_originals, store_originals
from ledger.backends import (
    AsyncBackend,
    GeneratedOutput,
    GenerationRequest,
    GenerationResult,
    open_backend,
    register_backend,
    request_from_params,
)
from ledger.store import Ledger

LATENCY_S = 0.2
CONCURRENCY = 16
TARGET_RATIO = 1.25


def emit(
    bench: str, figure: float, unit: str, baseline: float, baseline_name: str, target: str, ok: bool
) -> None:
    print(
        json.dumps(
            {
                "bench": bench,
                "figure": round(figure, 4),
                "unit": unit,
                "baseline": round(baseline, 4),
                "baseline_name": baseline_name,
                "ratio": round(figure / baseline, 4) if baseline else None,
                "target": target,
                "pass": ok,
            }
        ),
        flush=True,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def reference_server(latency_ms: float) -> Iterator[str]:
    """A reference server in its own process; yields its API URL."""
    port = _free_port()
    seedledger = Path(sys.executable).with_name("seedledger")
    command = [str(seedledger)] if seedledger.exists() else [sys.executable, "-m", "ledger"]
    proc = subprocess.Popen(
        [*command, "reference-server", "--port", str(port), "--latency-ms", str(latency_ms)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("SEEDLEDGER_")},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the reference server did not start")
            time.sleep(0.1)
        yield f"{base}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


class _Sleeper(AsyncBackend):
    """Answers every replay after exactly LATENCY_S with the original's bytes."""

    name = "sleeper"

    def __init__(self, outputs: dict[int, bytes]) -> None:
        self.outputs = outputs

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        await asyncio.sleep(LATENCY_S)
        data = self.outputs[request.seed or 0]
        output = GeneratedOutput(data=data, seed=request.seed, media_type="image/png")
        return GenerationResult(backend=self.name, request=request, task_uuid=None, outputs=(output,))


def timed_audit(ledger: Ledger, options: AuditOptions, count: int) -> float:
    started = time.perf_counter()
    outcome = asyncio.run(run_audit(ledger, Selection(), options, Policy()))
    elapsed = time.perf_counter() - started
    summary = outcome.run.summary or {}
    if summary.get("results") != count or summary.get("outcomes") != {"pass": count}:
        raise SystemExit(f"bench_audit: unexpected results {summary}")
    return elapsed


def make_originals(ledger: Ledger, url: str, count: int) -> dict[int, bytes]:
    requests = [
        request_from_params(
            "reference",
            {
                "model": "runware:101@1",
                "positivePrompt": f"benchmark scene {i}",
                "width": 64,
                "height": 64,
                "steps": 12,
                "scheduler": "DPM++ 2M Karras",
                "outputFormat": "PNG",
            },
            seed=1000 + i,
        )
        for i in range(count)
    ]

    async def generate() -> list:
        backend = open_backend("reference", url)
        try:
            return await generate_originals(backend, requests, concurrency=16)
        finally:
            await backend.aclose()

    generated = asyncio.run(generate())
    store_originals(ledger, generated)
    return {g.record.seed or 0: g.data for g in generated}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="64 replays instead of 1,000")
    args = parser.parse_args()
    count = 64 if args.smoke else 1000
    ideal = count * LATENCY_S / CONCURRENCY
    target = f"ratio <= {TARGET_RATIO}"
    baseline_name = f"ideal {count} x {LATENCY_S} / {CONCURRENCY} s"
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger.open(f"sqlite:///{tmp}/bench.db")
        with reference_server(0) as url:
            outputs = make_originals(ledger, url, count)
        with reference_server(LATENCY_S * 1000) as url:
            options = AuditOptions(backend_url=url, concurrency=CONCURRENCY, check_inputs=False)
            elapsed = timed_audit(ledger, options, count)
        emit(
            f"audit_{count}_replays_200ms_c{CONCURRENCY}",
            elapsed,
            "s",
            ideal,
            baseline_name,
            target,
            elapsed / ideal <= TARGET_RATIO,
        )
        register_backend("sleeper", lambda **_options: _Sleeper(outputs))
        options = AuditOptions(backend="sleeper", concurrency=CONCURRENCY, check_inputs=False)
        engine_only = timed_audit(ledger, options, count)
        emit(
            f"audit_{count}_replays_engine_only_c{CONCURRENCY}",
            engine_only,
            "s",
            ideal,
            baseline_name,
            target,
            engine_only / ideal <= TARGET_RATIO,
        )
        ledger.close()


if __name__ == "__main__":
    main()
