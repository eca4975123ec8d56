"""The proxy abuse benchmark, small: it runs, refuses every oversized body and prints its figures."""

from __future__ import annotations

from pathlib import Path

from bench.run import run_one

ROOT = Path(__file__).resolve().parents[1]


def test_bench_proxy_abuse_smoke() -> None:
    rows, error = run_one(ROOT / "bench" / "bench_proxy_abuse.py", smoke=True, timeout=300)
    assert error is None, error
    lines = {row["bench"]: row for row in rows}
    assert set(lines) == {
        "proxy_abuse.health_p50_under_trickle_ms",
        "proxy_abuse.health_p99_under_trickle_ms",
        "proxy_abuse.rss_peak_oversized_mib",
    }
    for row in lines.values():
        assert row["figure"] > 0 and row["baseline"] > 0
    rss = lines["proxy_abuse.rss_peak_oversized_mib"]
    assert "all refused" in rss["target"] and rss["pass"] is True
