"""The reference backend's speed: one 1024×1024 image, and images per second over HTTP.

Figures (one JSON line each):

- ``reference_image_1024_png``: seconds to render and PNG-encode a 1024×1024 image
  (median). Baseline: Pillow alone PNG-encoding a 1024×1024 image of the same kind
  (the part any generator pays). Target: under 0.5 s, "well under a second" on 2 cores.
- ``reference_server_512_images_per_s``: 512×512 PNG images per second through the
  HTTP server with 8 concurrent clients (base64 output). Baseline: the in-process
  generator rendering the same images one after another. Target: ratio ≥ 0.7 (the
  server's JSON/HTTP/base64 overhead costs less than 30 %).

    .venv/bin/python bench/bench_reference.py [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger.backends.reference.generator import ImageRequest, ReferenceGenerator
from ledger.backends.reference.server import ReferenceServer

MODEL = "runware:101@1"


def emit(
    bench: str, figure: float, unit: str, baseline: float, baseline_name: str, target: str, ok: bool
) -> None:
    print(
        json.dumps(
            {
                "bench": bench,
                "figure": round(figure, 6),
                "unit": unit,
                "baseline": round(baseline, 6),
                "baseline_name": baseline_name,
                "ratio": round(figure / baseline, 4) if baseline else None,
                "target": target,
                "pass": ok,
            }
        ),
        flush=True,
    )


def bench_image(rounds: int) -> None:
    gen = ReferenceGenerator()
    req = ImageRequest(
        model=MODEL, prompt="a lighthouse at dusk", width=1024, height=1024, seed=7, output_format="PNG"
    )
    pixels, *_ = gen.render(req)
    img = Image.fromarray(pixels, "RGB")

    def encode_only() -> None:
        img.save(io.BytesIO(), "PNG", compress_level=1)

    for _ in range(2):  # warm up
        gen.image(req)
        encode_only()
    gen_times, enc_times = [], []
    for i in range(rounds):  # interleaved so machine drift hits both alike
        t = time.perf_counter()
        gen.image(ImageRequest(**{**req.__dict__, "seed": 100 + i}))
        gen_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        encode_only()
        enc_times.append(time.perf_counter() - t)
    figure, base = statistics.median(gen_times), statistics.median(enc_times)
    emit(
        "reference_image_1024_png",
        figure,
        "s",
        base,
        "Pillow PNG encode (compress_level=1) of a 1024x1024 image alone",
        "< 0.5 s per image",
        figure < 0.5,
    )


def bench_server(count: int, concurrency: int = 8) -> None:
    def task(seed: int) -> dict[str, object]:
        return {
            "taskType": "imageInference",
            "taskUUID": str(uuid.uuid4()),
            "model": MODEL,
            "positivePrompt": "a lighthouse at dusk",
            "width": 512,
            "height": 512,
            "seed": seed,
            "outputFormat": "PNG",
            "outputType": "base64Data",
        }

    gen = ReferenceGenerator()
    gen.image(ImageRequest(model=MODEL, prompt="x", width=512, height=512, seed=1, output_format="PNG"))
    t = time.perf_counter()
    for i in range(count):
        gen.image(
            ImageRequest(
                model=MODEL,
                prompt="a lighthouse at dusk",
                width=512,
                height=512,
                seed=i + 1,
                output_format="PNG",
            )
        )
    base_rate = count / (time.perf_counter() - t)

    async def run(url: str) -> float:
        sem = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=concurrency)) as client:

            async def one(seed: int) -> None:
                async with sem:
                    resp = await client.post(url, json=[task(seed)])
                    resp.raise_for_status()

            await one(0 + 1)  # warm up the connection
            t0 = time.perf_counter()
            await asyncio.gather(*(one(i + 1) for i in range(count)))
            return count / (time.perf_counter() - t0)

    with ReferenceServer.running() as server:
        rate = asyncio.run(run(server.url))
    emit(
        "reference_server_512_images_per_s",
        rate,
        "images/s",
        base_rate,
        "in-process generator, sequential, same images",
        "ratio >= 0.7",
        rate / base_rate >= 0.7,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few rounds only")
    args = parser.parse_args(argv)
    bench_image(3 if args.smoke else 30)
    bench_server(8 if args.smoke else 80)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
