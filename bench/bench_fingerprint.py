"""Fingerprinting a 1024×1024 PNG vs decoding it plus one imagehash.phash call.

The fingerprint decodes once and derives everything (file and pixel SHA-256, phash,
dhash, thumbnail) from that decode, so it should cost little more than the decode and
the one perceptual hash any image pipeline pays anyway. Target: ratio ≤ 1.25.

    .venv/bin/python bench/bench_fingerprint.py [--smoke]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

import imagehash
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger.fingerprint import fingerprint_bytes

TARGET = 1.25


def sample_png() -> bytes:
    """A 1024×1024 generated-looking image (the reference backend's generator), saved
    as a PNG at Pillow's default compression, like most tools write it."""
    from ledger.backends.reference.generator import ImageRequest, ReferenceGenerator

    pixels, *_ = ReferenceGenerator().render(
        ImageRequest(model="runware:101@1", prompt="a lighthouse at dusk", width=1024, height=1024, seed=7)
    )
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, format="PNG")
    return out.getvalue()


def baseline(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        imagehash.phash(im)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few rounds only")
    args = parser.parse_args(argv)
    rounds = 5 if args.smoke else 60
    data = sample_png()
    for _ in range(3):  # warm up imports, caches, allocator
        baseline(data)
        fingerprint_bytes(data)
    base_wall: list[float] = []
    fp_wall: list[float] = []
    base_cpu: list[float] = []
    fp_cpu: list[float] = []
    for _ in range(rounds):  # interleaved so drift hits both sides alike
        c0, t0 = time.process_time(), time.perf_counter()
        baseline(data)
        c1, t1 = time.process_time(), time.perf_counter()
        fingerprint_bytes(data)
        c2, t2 = time.process_time(), time.perf_counter()
        base_wall.append(t1 - t0)
        fp_wall.append(t2 - t1)
        base_cpu.append(c1 - c0)
        fp_cpu.append(c2 - c1)
    base_name = "Image.open+load + imagehash.phash on the same 1024x1024 PNG"
    figure, base = statistics.median(fp_wall) * 1000, statistics.median(base_wall) * 1000
    emit(
        "fingerprint_png_1024",
        figure,
        "ms wall (median)",
        base,
        base_name,
        f"ratio <= {TARGET}",
        TARGET,
        rounds,
        data,
    )
    # Informational: the fingerprint hashes on worker threads, so its CPU time (all
    # threads) is higher than its wall time; report both, the target is on wall time.
    figure, base = statistics.median(fp_cpu) * 1000, statistics.median(base_cpu) * 1000
    emit(
        "fingerprint_png_1024_cpu",
        figure,
        "ms CPU, all threads (median)",
        base,
        base_name,
        "informational",
        None,
        rounds,
        data,
    )
    return 0


def emit(
    name: str,
    figure: float,
    unit: str,
    base: float,
    base_name: str,
    target: str,
    limit: float | None,
    rounds: int,
    data: bytes,
) -> None:
    ratio = figure / base
    print(
        json.dumps(
            {
                "bench": name,
                "figure": round(figure, 3),
                "unit": unit,
                "baseline": round(base, 3),
                "baseline_name": base_name,
                "ratio": round(ratio, 3),
                "target": target,
                "pass": True if limit is None else ratio <= limit,
                "rounds": rounds,
                "png_bytes": len(data),
            }
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
