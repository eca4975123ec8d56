"""The proxy abuse benchmark, small: it runs, refuses every oversized body and prints its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_proxy_abuse_smoke() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_proxy_abuse.py"), "--smoke", "--tricklers", "50"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = {row["bench"]: row for row in map(json.loads, done.stdout.splitlines())}
    assert set(lines) == {
        "proxy_abuse.health_p50_under_trickle_ms",
        "proxy_abuse.health_p99_under_trickle_ms",
        "proxy_abuse.rss_peak_oversized_mib",
    }
    for row in lines.values():
        assert row["figure"] > 0 and row["baseline"] > 0
    rss = lines["proxy_abuse.rss_peak_oversized_mib"]
    assert "all refused" in rss["target"] and rss["pass"] is True
