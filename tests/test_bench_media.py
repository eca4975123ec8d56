"""The media benchmark, small: it runs and prints both figures with their baselines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_media_smoke() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_media.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = {row["bench"]: row for row in map(json.loads, done.stdout.splitlines())}
    assert set(lines) == {"fingerprint_video_h264", "fingerprint_audio_mp3"}
    for row in lines.values():
        assert row["figure"] > 0 and row["baseline"] > 0 and row["ratio"] > 0
        assert row["cpu_figure"] > 0 and row["cpu_baseline"] > 0 and row["cpu_ratio"] > 0
