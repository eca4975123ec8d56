"""The auditor's throughput: 1,000 replays against the reference server at 200 ms latency.

Figure (one JSON line):

- ``audit_1000_replays_200ms_c16``: wall-clock seconds for ``run_audit`` over 1,000
  records (64×64 PNG originals with stored fingerprints) at ``--concurrency 16``,
  against the reference server answering every task after 200 ms. The run does
  everything a real one does: select, plan, replay over HTTP (task + download),
  fingerprint each replay, compare, store each result, mark the run finished.
  Baseline: the ideal ``1000 × 0.2 / 16`` s (latency-bound, zero overhead).
  Target: ratio ≤ 1.25.

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
from ledger.backends import open_backend, request_from_params
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


def make_originals(ledger: Ledger, url: str, count: int) -> None:
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

    store_originals(ledger, asyncio.run(generate()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="64 replays instead of 1,000")
    args = parser.parse_args()
    count = 64 if args.smoke else 1000
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger.open(f"sqlite:///{tmp}/bench.db")
        with reference_server(0) as url:
            make_originals(ledger, url, count)
        with reference_server(LATENCY_S * 1000) as url:
            options = AuditOptions(backend_url=url, concurrency=CONCURRENCY, check_inputs=False)
            started = time.perf_counter()
            outcome = asyncio.run(run_audit(ledger, Selection(), options, Policy()))
            elapsed = time.perf_counter() - started
        ledger.close()
    summary = outcome.run.summary or {}
    if summary.get("results") != count or summary.get("outcomes") != {"pass": count}:
        raise SystemExit(f"bench_audit: unexpected results {summary}")
    ideal = count * LATENCY_S / CONCURRENCY
    ratio = elapsed / ideal
    emit(
        f"audit_{count}_replays_200ms_c{CONCURRENCY}",
        elapsed,
        "s",
        ideal,
        f"ideal {count} x {LATENCY_S} / {CONCURRENCY} s",
        f"ratio <= {TARGET_RATIO}",
        ratio <= TARGET_RATIO,
    )


if __name__ == "__main__":
    main()
