"""Abuse: the recording proxy's memory and health under oversized and trickling bodies.

A real `seedledger proxy` subprocess (default limits: 16 MiB bodies, 60 s body deadline,
128 bodies in flight) in front of a small upstream on loopback.

1. Health under trickle: T clients each open a connection, declare a 1 MiB body and
   trickle it a byte at a time, then disconnect. Health latency (p50/p99 of sequential
   GETs) during the attack vs the same GETs with the proxy idle (the baseline).
2. Oversized bodies: 4 concurrent POSTs of 100 MiB each, streamed chunked (the proxy
   must read up to its cap to refuse them), then 4 with a declared Content-Length. The
   proxy's peak resident memory during them vs its RSS before (the baseline); every one
   must be refused (413 or the connection closed), none relayed.

Targets: health p99 under attack < 1 s and every health answered; RSS growth < 256 MiB.
``--smoke``: 100 tricklers, 8 × 8 MiB bodies against a 2 MiB cap.

    .venv/bin/python bench/bench_proxy_abuse.py [--smoke] [--tricklers N] [--body-mib M]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_load import SEEDLEDGER, rss_bytes

MIB = 1024 * 1024


class _Upstream(BaseHTTPRequestHandler):
    relayed = 0

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        type(self).relayed += 1
        body = b'{"data":[]}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@contextlib.contextmanager
def running(workdir: Path, max_body: int) -> Iterator[tuple[str, int]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = subprocess.Popen(
        [
            *SEEDLEDGER,
            "--db",
            f"sqlite:///{workdir / 'ledger.db'}",
            "proxy",
            "--upstream",
            f"http://127.0.0.1:{server.server_address[1]}",
            "--listen",
            "127.0.0.1:0",
            "--spool",
            str(workdir / "spool"),
            "--no-fingerprint",
            "--max-body",
            str(max_body),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proxy.stderr is not None
        match = re.search(r"listening on (http://\S+)", proxy.stderr.readline())
        assert match, "proxy did not start"
        base = match.group(1)
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(base + "/_seedledger/health")
                break
            time.sleep(0.05)
        yield base, proxy.pid
    finally:
        proxy.terminate()
        proxy.wait(30)
        server.shutdown()
        server.server_close()


async def health_latencies(base: str, count: int) -> list[float]:
    out = []
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        for _ in range(count):
            started = time.perf_counter()
            response = await client.get("/_seedledger/health")
            response.raise_for_status()
            out.append(time.perf_counter() - started)
            await asyncio.sleep(0.01)
    return out


async def trickler(port: int, seconds: float) -> None:
    with contextlib.suppress(OSError):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n[")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not reader.at_eof():
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.5)
        writer.close()  # disconnect mid-body


async def under_trickle(base: str, tricklers: int, samples: int) -> list[float]:
    port = int(base.rsplit(":", 1)[1])
    attack = [asyncio.create_task(trickler(port, 30)) for _ in range(tricklers)]
    await asyncio.sleep(2.0)  # let every trickler connect
    try:
        return await health_latencies(base, samples)
    finally:
        for task in attack:
            task.cancel()
        await asyncio.gather(*attack, return_exceptions=True)


async def oversized(base: str, body_mib: int, pid: int) -> tuple[int, list[str]]:
    """Peak RSS while 4 chunked and then 4 declared-length oversized POSTs are refused."""
    peak = rss_bytes(pid) or 0
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes(pid) or 0)
            await asyncio.sleep(0.05)

    async def chunks() -> object:
        block = b" " * MIB
        for _ in range(body_mib):
            yield block

    async def post(client: httpx.AsyncClient, declared: bool) -> str:
        try:
            if declared:
                response = await client.post("/v1", content=b" " * (body_mib * MIB))
            else:
                response = await client.post("/v1", content=chunks())
            return str(response.status_code)
        except httpx.HTTPError:
            return "closed"

    sampler = asyncio.create_task(sample())
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        outcomes = list(await asyncio.gather(*(post(client, False) for _ in range(4))))
        outcomes += await asyncio.gather(*(post(client, True) for _ in range(4)))
    done.set()
    await sampler
    return peak, outcomes


def emit(bench: str, figure: float, unit: str, baseline: float, name: str, target: str, ok: bool) -> None:
    row = {
        "bench": bench,
        "figure": round(figure, 4),
        "unit": unit,
        "baseline": round(baseline, 4),
        "baseline_name": name,
        "ratio": round(figure / baseline, 3) if baseline else None,
        "target": target,
        "pass": ok,
    }
    print(json.dumps(row), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--tricklers", type=int)
    parser.add_argument("--body-mib", type=int)
    args = parser.parse_args()
    tricklers = args.tricklers or (100 if args.smoke else 2000)
    body_mib = args.body_mib or (8 if args.smoke else 100)
    samples = 30 if args.smoke else 100
    max_body = 2 * MIB if args.smoke else 16 * MIB  # the default cap, full size
    with tempfile.TemporaryDirectory() as tmp, running(Path(tmp), max_body) as (base, pid):
        idle = asyncio.run(health_latencies(base, samples))
        attacked = asyncio.run(under_trickle(base, tricklers, samples))
        before = rss_bytes(pid) or 0
        peak, outcomes = asyncio.run(oversized(base, body_mib, pid))
    p99 = sorted(attacked)[max(0, int(len(attacked) * 0.99) - 1)]
    emit(
        "proxy_abuse.health_p50_under_trickle_ms",
        statistics.median(attacked) * 1000,
        "ms",
        statistics.median(idle) * 1000,
        f"health p50 with the proxy idle; {tricklers} tricklers",
        "informational",
        None,  # type: ignore[arg-type]
    )
    emit(
        "proxy_abuse.health_p99_under_trickle_ms",
        p99 * 1000,
        "ms",
        sorted(idle)[max(0, int(len(idle) * 0.99) - 1)] * 1000,
        f"health p99 with the proxy idle; {tricklers} tricklers",
        "p99 < 1000 ms, every health answered",
        p99 < 1.0 and len(attacked) == samples,
    )
    growth = (peak - before) / MIB
    refused = all(o in ("413", "closed") for o in outcomes) and _Upstream.relayed == 0
    emit(
        "proxy_abuse.rss_peak_oversized_mib",
        peak / MIB,
        "MiB",
        before / MIB,
        f"proxy RSS before 8 x {body_mib} MiB POSTs (4 chunked, 4 declared; cap {max_body // MIB} MiB)",
        f"growth < 256 MiB and all refused ({','.join(sorted(set(outcomes)))})",
        growth < 256 and refused,
    )
    return 0 if refused else 1


if __name__ == "__main__":
    sys.exit(main())
