"""scripts/measure_wild.py on a tiny folder the test writes: the table counts right,
wrong and skipped fields honestly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests import reader_fixtures as rf
from tests.workflow_fixtures import a1111_png

ROOT = Path(__file__).resolve().parents[1]


def test_measure_wild_table(tmp_path: Path) -> None:
    a1111_png(tmp_path / "a.png")
    rf.png_with_text(tmp_path / "h.png", {"prompt": json.dumps(rf.two_pass_noop_seed_graph())})
    rf.png_with_text(tmp_path / "none.png", {"date:create": "x"})
    expected = [
        {"file": "a.png", "generator": "A1111", "entries": [{"seed": 4012345678, "steps": 30, "cfg": 6.5}]},
        # One field deliberately wrong in the reading: the table must count it.
        {
            "file": "h.png",
            "generator": "ComfyUI",
            "entries": [{"save_node": "9", "seed": 5550001, "steps": 99}],
        },
        {"file": "none.png", "generator": "-", "entries": []},
    ]
    (tmp_path / "expected.jsonl").write_text("\n".join(json.dumps(e) for e in expected) + "\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "measure_wild.py"), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )  # fmt: skip
    rows = {
        line.split(" | ")[0].strip("| "): line for line in done.stdout.splitlines() if line.startswith("| ")
    }
    # model, sampler, schedule, width, height: read, but not in this reading -> extra 5
    assert rows["A1111"] == "| A1111 | 1 | 1 | 0 | 0 | 1/1 | - | - | - | 1/1 | 1/1 | - | - | 5 |"
    assert rows["ComfyUI"].startswith("| ComfyUI | 1 | 1 | 0 | 0 | 1/1 | - | - | - | 0/1 | - |")
    assert rows["-"].startswith("| - | 1 | 0 | 1 | 0 |")
    assert "h.png [9] steps: read 20, expected 99" in done.stdout
