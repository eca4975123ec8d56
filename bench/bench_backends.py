"""Backend adapter overhead and behaviour under a 429 storm.

1. Replay overhead: N image replays (64×64 PNG, base64, concurrency 8) through the
   Runware adapter (``open_backend("reference", url)``, ``generate_many``) vs a plain
   ``httpx.AsyncClient`` posting the same task arrays and decoding the base64 itself.
   Both talk to one `seedledger reference-server` subprocess with 20 ms latency;
   rounds alternate between the two so drift hits them alike; figures are medians.
   Target: adapter <= 1.10x plain.
2. 429 storm: N replays against a server answering 429 to half the requests
   (``Retry-After: 0``), vs the same replays against a clean server. Pass when every
   replay completes, no output is duplicated, and the adapter reports retries.

    .venv/bin/python bench/bench_backends.py [--smoke] [--replays N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger.backends import GenerationResult, RetryPolicy, open_backend, request_from_params

SEEDLEDGER = [str(Path(sys.executable).with_name("seedledger"))]
CONCURRENCY = 8


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(
    bench: str, figure: float, unit: str, baseline: float, baseline_name: str, target: str, ok: bool
) -> None:
    ratio = figure / baseline if baseline else float("inf")
    print(
        json.dumps(
            {
                "bench": bench,
                "figure": round(figure, 4),
                "unit": unit,
                "baseline": round(baseline, 4),
                "baseline_name": baseline_name,
                "ratio": round(ratio, 4),
                "target": target,
                "pass": ok,
            }
        ),
        flush=True,
    )


@contextmanager
def reference_server(*flags: str) -> Iterator[str]:
    args = [*SEEDLEDGER, "reference-server", "--port", "0", *flags]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    try:
        while True:
            line = proc.stderr.readline()
            if not line:
                raise RuntimeError("the reference server exited before announcing its address")
            match = re.search(r"(http://[\w.:\[\]-]+)", line)
            if match:
                break
        yield match.group(1).rstrip("/") + "/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def params() -> dict[str, Any]:
    return {
        "taskType": "imageInference",
        "model": "runware:101@1",
        "positivePrompt": "a lighthouse on a cliff at dusk",
        "width": 64,
        "height": 64,
        "steps": 20,
        "scheduler": "DPM++ 2M Karras",
        "outputFormat": "PNG",
        "outputType": "base64Data",
    }


async def via_adapter(url: str, seeds: list[int], retry: RetryPolicy | None = None) -> list[Any]:
    requests = [request_from_params("reference", params(), seed=s) for s in seeds]
    async with open_backend("reference", url=url, retry=retry or RetryPolicy()) as backend:
        return await backend.generate_many(requests, concurrency=CONCURRENCY)


async def via_plain_httpx(url: str, seeds: list[int]) -> list[bytes]:
    gate = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(timeout=60) as client:

        async def one(seed: int) -> bytes:
            task = {**params(), "taskUUID": str(uuid.uuid4()), "seed": seed, "numberResults": 1}
            async with gate:
                response = await client.post(url, json=[task])
            response.raise_for_status()
            (result,) = response.json()["data"]
            return base64.b64decode(result["imageBase64Data"])

        return list(await asyncio.gather(*(one(s) for s in seeds)))


def timed(coroutine: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    value = asyncio.run(coroutine)
    return time.perf_counter() - started, value


def overhead(replays: int, rounds: int) -> None:
    seeds = list(range(1, replays + 1))
    adapter_times: list[float] = []
    plain_times: list[float] = []
    with reference_server("--latency-ms", "20") as url:
        timed(via_plain_httpx(url, seeds[:CONCURRENCY]))  # warm up the server
        for round_ in range(rounds):
            order = ("adapter", "plain") if round_ % 2 == 0 else ("plain", "adapter")
            for variant in order:
                if variant == "adapter":
                    elapsed, outcomes = timed(via_adapter(url, seeds))
                    assert all(isinstance(o, GenerationResult) for o in outcomes), outcomes
                    adapter_times.append(elapsed)
                else:
                    elapsed, _ = timed(via_plain_httpx(url, seeds))
                    plain_times.append(elapsed)
            log(f"round {round_ + 1}: adapter {adapter_times[-1]:.3f}s, plain {plain_times[-1]:.3f}s")
    adapter, plain = statistics.median(adapter_times), statistics.median(plain_times)
    emit(
        f"backends.replay_{replays}_c{CONCURRENCY}",
        adapter,
        "s",
        plain,
        "plain httpx.AsyncClient, same tasks",
        "<= 1.10x plain",
        adapter <= plain * 1.10,
    )


def storm(replays: int) -> None:
    seeds = list(range(10_000, 10_000 + replays))
    retry = RetryPolicy(max_attempts=30, base_delay=0.005, max_delay=0.05)
    with reference_server() as url:
        clean_time, clean = timed(via_adapter(url, seeds, retry))
    with reference_server("--rate-limit-rate", "0.5", "--retry-after", "0", "--knob-seed", "7") as url:
        storm_time, outcomes = timed(via_adapter(url, seeds, retry))
    results = [o for o in outcomes if isinstance(o, GenerationResult)]
    outputs = [out for r in results for out in r.outputs]
    unique = len({out.output_uuid for out in outputs})
    retries = sum(r.retries for r in results)
    complete = len(results) == replays and unique == replays
    seeds_ok = [out.seed for out in outputs] == seeds
    log(
        f"429 storm: {len(results)}/{replays} replays, {unique} unique outputs, {retries} retries reported; "
        f"clean run {clean_time:.3f}s ({len(clean)} replays)"
    )
    emit(
        f"backends.storm_429_half_{replays}",
        storm_time,
        "s",
        clean_time,
        "same replays, no 429s",
        "all complete, no duplicates, retries reported",
        complete and seeds_ok and retries > 0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes")
    parser.add_argument("--replays", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    replays = args.replays or (16 if args.smoke else 200)
    rounds = args.rounds or (2 if args.smoke else 6)
    overhead(replays, rounds)
    storm(replays if args.smoke else 100)


if __name__ == "__main__":
    main()
