"""The media benchmark, small: it runs and prints both figures with their baselines."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_py_required() -> tuple[str, ...]:
    """The keys bench/run.py needs to keep a line (it drops any other line silently)."""
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.REQUIRED)


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
    assert set(lines) == {"fingerprint_video_h264", "fingerprint_video_h264_static", "fingerprint_audio_mp3"}
    # The static clip is printed for what it shows, with no target to meet.
    assert lines["fingerprint_video_h264_static"]["target"] is None
    assert lines["fingerprint_video_h264"]["target"] == "ratio <= 1.3"
    video, static = lines["fingerprint_video_h264"], lines["fingerprint_video_h264_static"]
    assert video["kbit_per_s"] > static["kbit_per_s"]
    assert static["pass"] is None and isinstance(video["pass"], bool)
    required = run_py_required()
    for row in lines.values():
        assert all(key in row for key in required), (row["bench"], required)
        assert row["figure"] > 0 and row["baseline"] > 0 and row["ratio"] > 0
        assert row["cpu_figure"] > 0 and row["cpu_baseline"] > 0 and row["cpu_ratio"] > 0
