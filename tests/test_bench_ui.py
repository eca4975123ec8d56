"""The UI benchmark, small: it serves real pages and prints both figures with baselines."""

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
    assert set(lines) == {"ui.records_page.sqlite", "ui.record_page.sqlite"}
    for line in lines.values():
        assert line["rows"] == 1500 and line["samples"] == 6
        assert line["figure"] > 0 and line["baseline"] > 0 and line["ratio"] > 0
        assert line["pass"] == (line["figure"] <= float(line["target"].split()[1]))
