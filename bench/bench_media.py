"""Video and audio fingerprints against the decoding they cannot avoid.

* video: fingerprinting a 10 s 1080p H.264 MP4 (every frame decoded and hashed, the
  sampled frames hashed like stills) vs decoding the same stream and converting the
  sampled frames to RGB, nothing else. Target: ratio <= 1.3, on a clip with what a
  generated clip has in every frame: fine texture that moves (a pan and a sway over a
  1/f field) and grain that changes frame to frame, ~2.5 Mbit/s at CRF 23. Also
  printed, with no target: a rigid whole-pixel pan over flat 8x8 blocks (~0.5 Mbit/s),
  whose decode is nearly free, so the fixed cost per decoded pixel (the content hash)
  weighs most there.
* audio: fingerprinting a 30 s MP3 in process vs ``fpcalc -raw`` (Chromaprint's own
  tool, which decodes and fingerprints the file). Target: ratio <= 1.3.

Each prints one JSON line: figure, baseline measured in the same run, ratio (wall,
medians of interleaved rounds), the same in CPU seconds of every thread (``cpu_ratio``:
steadier than wall on a shared machine; fpcalc's is its process's user+system time) and
the load average around the run.

    .venv/bin/python bench/bench_media.py [--smoke]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger.backends.reference.audio import encode_audio
from ledger.backends.reference.video import encode_video
from ledger.fingerprint.audio import fingerprint_audio
from ledger.fingerprint.video import DECODER_THREADS, MAX_SAMPLES, MIN_STEP_S, fingerprint_video

TARGET = 1.3


def generated_clip(width: int, height: int, seconds: float, fps: int) -> bytes:
    """Texture at every scale (a 1/f field, as natural images have) panned and swaying,
    with fresh grain in every frame: no frame is a copy of the last, as in a generated
    clip, so the encoder codes texture everywhere."""
    rng = np.random.default_rng(3)
    rows, cols = height + 64, width + 256
    freq = np.hypot(np.fft.fftfreq(rows)[:, None], np.fft.rfftfreq(cols)[None, :])
    freq[0, 0] = 1.0
    planes = []
    for _ in range(3):
        spectrum = (rng.normal(size=freq.shape) + 1j * rng.normal(size=freq.shape)) / freq
        plane = np.fft.irfft2(spectrum, s=(rows, cols))
        planes.append((plane - plane.mean()) / plane.std())
    field = np.clip(128 + 40 * np.stack(planes, -1), 0, 255).astype(np.float32)
    count = round(seconds * fps)
    frames = []
    for i in range(count):
        dx, dy = i * 256 // count, int(32 + 24 * math.sin(2 * math.pi * i / count))
        grain = rng.normal(0.0, 3.0, (height, width, 1)).astype(np.float32)
        frames.append(np.clip(field[dy : dy + height, dx : dx + width] + grain, 0, 255).astype(np.uint8))
    return encode_video(frames, fps=fps, crf=23)


def static_clip(width: int, height: int, seconds: float, fps: int) -> bytes:
    """A rigid pan by whole pixels over flat 8x8 blocks: every frame is the last one moved."""
    rng = np.random.default_rng(3)
    small = rng.integers(0, 255, (height // 8 + 2, width // 8 + 40, 3), dtype=np.uint8)
    field = np.kron(small, np.ones((8, 8, 1), np.uint8))
    count = round(seconds * fps)
    return encode_video([field[:height, i : i + width] for i in range(count)], fps=fps, crf=23)


def decode_sampled(data: bytes) -> None:
    """The baseline: decode every frame; convert the frames shown at the sample times."""
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        stream.thread_type = DECODER_THREADS  # the fingerprint's own setting
        duration = float(stream.duration * stream.time_base)
        step = max(MIN_STEP_S, duration / MAX_SAMPLES)
        times = [k * step for k in range(max(1, math.ceil(duration / step - 1e-9)))]
        prev, taken = None, 0
        for frame in container.decode(stream):
            while prev is not None and taken < len(times) and times[taken] < frame.time - 1e-4:
                prev.to_ndarray(format="rgb24")
                taken += 1
            prev = frame
        while prev is not None and taken < len(times):
            prev.to_ndarray(format="rgb24")
            taken += 1


def fpcalc_raw(command: list[str]) -> str:
    """fpcalc's fingerprint line (Debian's fpcalc exits 3 on a benign end-of-file note)."""
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    line = next((x for x in done.stdout.splitlines() if x.startswith("FINGERPRINT=")), None)
    if line is None:
        raise RuntimeError(f"fpcalc gave no fingerprint: {done.stderr.strip()[:200]}")
    return line


def timed(fn: Callable[[], object], rounds: int, *, child: bool = False) -> tuple[float, float]:
    """(median wall ms, median CPU ms): this process's threads, or its children's."""
    walls, cpus = [], []
    for _ in range(rounds):
        c0 = _cpu(child)
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(_cpu(child) - c0)
    return statistics.median(walls) * 1000, statistics.median(cpus) * 1000


def _cpu(child: bool) -> float:
    if not child:
        return time.process_time()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def emit(
    name: str,
    figure: list[tuple[float, float]],
    base: list[tuple[float, float]],
    base_name: str,
    load: tuple[float, float],
    *,
    target: bool = True,
    **extra: object,
) -> None:
    wall, cpu = (statistics.median(x[k] for x in figure) for k in (0, 1))
    base_wall, base_cpu = (statistics.median(x[k] for x in base) for k in (0, 1))
    ratio = wall / base_wall
    print(
        json.dumps(
            {
                "bench": name,
                "figure": round(wall, 3),
                "unit": "ms wall (median)",
                "baseline": round(base_wall, 3),
                "baseline_name": base_name,
                "ratio": round(ratio, 3),
                "target": f"ratio <= {TARGET}" if target else None,
                "pass": ratio <= TARGET if target else None,
                "cpu_figure": round(cpu, 3),
                "cpu_baseline": round(base_cpu, 3),
                "cpu_ratio": round(cpu / base_cpu, 3) if base_cpu else None,
                "rounds": len(figure),
                "load_before_after": [round(v, 2) for v in load],
                **extra,
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a small clip and a few rounds")
    args = parser.parse_args(argv)
    rounds = 2 if args.smoke else 7
    width, height, seconds = (320, 180, 2.0) if args.smoke else (1920, 1080, 10.0)
    for name, make, target in (
        ("fingerprint_video_h264", generated_clip, True),
        ("fingerprint_video_h264_static", static_clip, False),
    ):
        video = make(width, height, seconds, 24)
        fingerprint_video(video)  # warm up
        decode_sampled(video)
        load0 = os.getloadavg()[0]
        base, figure = [], []
        for _ in range(rounds):  # interleaved so load drift hits both alike
            base.append(timed(lambda v=video: decode_sampled(v), 1))
            figure.append(timed(lambda v=video: fingerprint_video(v), 1))
        emit(
            name,
            figure,
            base,
            "PyAV decode of every frame + RGB of the sampled frames",
            (load0, os.getloadavg()[0]),
            target=target,
            size=f"{width}x{height}",
            seconds=seconds,
            kbit_per_s=round(len(video) * 8 / seconds / 1000),
        )
    fpcalc = shutil.which("fpcalc")
    if fpcalc is None:
        print("fpcalc not found (scripts/install-media-deps.sh); audio bench skipped", file=sys.stderr)
        return 1
    t = np.arange(22050 * (5 if args.smoke else 30)) / 22050
    tone = 0.3 * np.sin(2 * np.pi * 440 * t * (1 + 0.01 * np.sin(2 * np.pi * 0.5 * t)))
    audio = encode_audio(tone + 0.05 * np.sin(2 * np.pi * 1200 * t), 22050, container="mp3")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tone.mp3"
        path.write_bytes(audio)
        run = [fpcalc, "-raw", "-length", "0", str(path)]
        fpcalc_raw(run)  # warm up
        fingerprint_audio(audio)
        load0 = os.getloadavg()[0]
        base, figure = [], []
        for _ in range(rounds * 4):  # short runs: more rounds for a steady median
            base.append(timed(lambda: fpcalc_raw(run), 1, child=True))
            figure.append(timed(lambda: fingerprint_audio(audio), 1))
    emit(
        "fingerprint_audio_mp3",
        figure,
        base,
        "fpcalc -raw on the same MP3 (process start included)",
        (load0, os.getloadavg()[0]),
        seconds=len(t) / 22050,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
