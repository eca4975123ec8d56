"""The integrity benchmark, small: it runs, every verify agrees, and it prints its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ledger.integrity import _native

ROOT = Path(__file__).resolve().parents[1]


def test_bench_integrity_smoke() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_integrity.py"), "--rows", "3000"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = {row["bench"]: row for row in map(json.loads, done.stdout.splitlines())}
    assert set(lines) == {
        "integrity.verify",
        "integrity.verify_one_thread",
        "integrity.verify_python_path",
        "integrity.seal",
    }
    verify = lines["integrity.verify"]
    assert verify["leaves"] == 3000 and verify["baseline"] > 0 and verify["ratio"] > 0
    # the bench asserts that all three verifies agree; here: the walker did the work
    assert verify["native_leaves"] == (3000 if _native.available() else 0)
