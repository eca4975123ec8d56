"""The WebSocket benchmark, small: it runs, every delivered result lands exactly once, and
it prints its figures (speed goals are checked in the full run, not here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_websocket_smoke() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_websocket.py"),
            "--smoke",
            "--clients",
            "8",
            "--seconds",
            "1",
            "--samples",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr  # non-zero when a delivered result was not landed once
    lines = {row["bench"]: row for row in map(json.loads, done.stdout.splitlines())}
    assert set(lines) == {"websocket.proxy_task_median_ms", "websocket.load_results_per_s"}
    latency = lines["websocket.proxy_task_median_ms"]
    assert latency["baseline"] >= 50 and latency["figure"] >= 50  # the server's 50 ms, both paths
    load = lines["websocket.load_results_per_s"]
    assert load["figure"] > 0 and load["baseline"] > 0
    assert "exactly once: True" in done.stderr
