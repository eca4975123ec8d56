"""The UI benchmark, small: it serves real pages and prints every figure with its baseline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_ui_smoke() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_ui.py"), "--rows", "1500", "--pages", "6"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = {row["bench"]: row for row in map(json.loads, done.stdout.splitlines())}
    assert {"ui.records_page.sqlite", "ui.record_page.sqlite"} <= set(lines)
    filters = {name.split(".", 3)[3] for name in lines if name.startswith("ui.filter.sqlite.")}
    # every filter the UI offers is timed, each with a common and a rare value
    for name in ("model", "scheduler", "seed", "seed_min", "prompt", "experiment", "tag", "status"):
        assert any(case.split("=")[0] == name for case in filters), name
    assert {"modality=image", "modality=audio", "since=old", "since=recent", "tag=old"} <= filters
    for line in lines.values():
        assert line["rows"] == 1500 and line["samples"] >= 1
        assert line["figure"] > 0 and line["baseline"] > 0 and line["ratio"] > 0
        assert line["pass"] == (line["figure"] <= float(line["target"].split()[1]))
    assert lines["ui.records_page.sqlite"]["samples"] == 6
