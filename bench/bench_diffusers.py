"""record_pipeline overhead: a recorded call of the tiny diffusers pipeline vs the
bare call of the same pipeline (goal: ratio <= 1.01).

The tiny pipeline (tests/tiny_pipeline.py: random weights, 4 steps at 64x64 on CPU)
is the worst case for the hook: its calls are far shorter than a real model's, so the
per-call recording work (seed check, argument capture, PNG encode, spool append)
weighs the most. Calls alternate bare / recorded so drift hits both alike; the spool
writer lands the records in the background, into a throwaway SQLite ledger.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET = 1.01


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few rounds only")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.smoke else 40)

    import torch
    from diffusers import StableDiffusionPipeline

    from ledger.capture import Recorder, record_pipeline
    from ledger.store import Ledger
    from tests.tiny_pipeline import build_tiny_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = build_tiny_pipeline(work / "model")
        url = f"sqlite:///{work / 'ledger.db'}"
        Ledger.open(url).close()
        pipe = StableDiffusionPipeline.from_pretrained(model)
        pipe.set_progress_bar_config(disable=True)
        recorder = Recorder(work / "spool", url)
        recorded = record_pipeline(pipe, recorder=recorder)
        call = {"num_inference_steps": 4, "guidance_scale": 6.0, "height": 64, "width": 64}

        def bare(seed: int) -> None:
            pipe("a lighthouse", generator=torch.Generator("cpu").manual_seed(seed), **call)

        def hooked(seed: int) -> None:
            recorded("a lighthouse", generator=torch.Generator("cpu").manual_seed(seed), **call)

        for seed in range(2):  # warm up
            bare(seed)
            hooked(seed)
        bare_s: list[float] = []
        hooked_s: list[float] = []
        for seed in range(rounds):
            t0 = time.perf_counter()
            bare(seed)
            t1 = time.perf_counter()
            hooked(seed)
            t2 = time.perf_counter()
            bare_s.append(t1 - t0)
            hooked_s.append(t2 - t1)
        assert recorder.close(drain_timeout=60)
        with Ledger.open(url) as ledger:
            landed = len(ledger.query())
    figure, base = statistics.median(hooked_s) * 1000, statistics.median(bare_s) * 1000
    ratio = figure / base
    print(
        json.dumps(
            {
                "bench": "diffusers.record_pipeline",
                "figure": round(figure, 3),
                "unit": "ms wall per call (median)",
                "baseline": round(base, 3),
                "baseline_name": "the same tiny pipeline called bare",
                "ratio": round(ratio, 4),
                "target": f"ratio <= {TARGET}",
                "pass": ratio <= TARGET,
                "rounds": rounds,
                "records_landed": landed,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
