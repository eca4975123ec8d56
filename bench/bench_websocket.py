"""WebSocket capture: per-task latency through the proxy, and many concurrent sockets.

1. Latency: a `seedledger reference-server` subprocess answering every WebSocket task
   after 50 ms, and a `seedledger proxy` subprocess in front of it. Two authenticated
   sockets, one straight at the server and one through the proxy, send one image task
   at a time in alternation (drift hits both alike); the figure is the median time from
   send to the result frame through the proxy, the baseline the same direct.
   Target: <= 1.05x.
2. Load: C concurrent WebSocket clients (one socket each, authenticated, one task in
   flight at a time) through the same proxy: all C sockets are opened first (at most
   64 handshakes at a time), then they all send for D seconds; then SIGTERM (the proxy
   drains) and the ledger must hold every output a client received through it exactly
   once (same task and output UUIDs, nothing extra). The proxy's resident memory is
   sampled over the D seconds as in bench_load.py; "flat" means RSS at the end is at
   most max(16 MiB, 10 %) above RSS at mid-run. Every socket must open and no client
   may see an error. Baseline: the same clients straight at the server (results per
   second). The soft open-files limit is raised to what C sockets need.

Full run: 500 clients for 60 s. ``--smoke``: 20 clients for 4 s, 40 latency samples.

    .venv/bin/python bench/bench_websocket.py [--smoke] [--clients N] [--seconds S] [--samples N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_capture import subprocess_server
from bench.bench_capture import task as one_task
from bench.bench_load import (
    SEEDLEDGER,
    ProxyRun,
    RssSampler,
    figure,
    fresh_database,
    log,
    recording_proxy,
    stored_keys,
)

KEY = "sk-ws-bench-not-a-real-key"


def ws_of(base: str) -> str:
    return "ws" + base.removeprefix("http") + "/v1"


def wait_ready(base: str, path: str) -> None:
    """The proxy announces itself once its port is bound, before uvicorn listens."""
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + path, timeout=5).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{base} did not answer {path}")
        time.sleep(0.05)


async def _open(url: str) -> ClientConnection:
    ws = await connect(url, max_size=None, open_timeout=60)
    await ws.send(json.dumps([{"taskType": "authentication", "apiKey": KEY}]))
    reply = json.loads(await ws.recv())
    assert reply["data"][0]["connectionSessionUUID"], reply
    return ws


async def _one(ws: ClientConnection) -> tuple[str, list[str]]:
    """Send one task; return its taskUUID and the output UUIDs of its result frame."""
    (task,) = one_task()
    await ws.send(json.dumps([task]))
    while True:
        frame = json.loads(await ws.recv())
        items = [
            i
            for i in frame.get("data", []) + frame.get("errors", [])
            if i.get("taskUUID") == task["taskUUID"]
        ]
        if items:
            return task["taskUUID"], [i["imageUUID"] for i in items if i.get("imageUUID")]


# -- 1. latency -------------------------------------------------------------------------


async def _latency(
    direct_url: str, proxy_url: str, samples: int, recorded: list[tuple[str, str]]
) -> tuple[float, float]:
    direct, proxied = await _open(direct_url), await _open(proxy_url)
    times: dict[str, list[float]] = {"direct": [], "proxy": []}
    try:
        for _ in range(5):  # warm both paths
            await _one(direct)
            task_uuid, outputs = await _one(proxied)
            recorded.extend((task_uuid, o) for o in outputs)
        for _ in range(samples):
            for name, ws in (("direct", direct), ("proxy", proxied)):
                start = time.perf_counter()
                task_uuid, outputs = await _one(ws)
                times[name].append(time.perf_counter() - start)
                assert outputs
                if ws is proxied:
                    recorded.extend((task_uuid, o) for o in outputs)
    finally:
        await direct.close()
        await proxied.close()
    return statistics.median(times["proxy"]) * 1000, statistics.median(times["direct"]) * 1000


def bench_latency(base: str, proxy: str, samples: int, recorded: list[tuple[str, str]]) -> None:
    via, direct = asyncio.run(_latency(ws_of(base), ws_of(proxy), samples, recorded))
    log(f"latency: {samples} tasks per path; median proxy {via:.2f} ms, direct {direct:.2f} ms")
    figure(
        "websocket.proxy_task_median_ms",
        via,
        "ms",
        direct,
        "direct to the server",
        "<= 1.05x",
        via <= 1.05 * direct,
    )


# -- 2. load ----------------------------------------------------------------------------


@dataclass
class Traffic:
    results: int = 0
    errors: int = 0
    opened: int = 0
    ramp_s: float = 0.0  # time to open (and authenticate) every socket
    outputs: list[tuple[str, str]] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)

    def failed(self, exc: BaseException) -> None:
        self.errors += 1
        reason = _reason(exc)
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


def _reason(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, ConnectionClosed):
        frame = exc.rcvd
        return f"closed {frame.code} {frame.reason}".strip() if frame else "closed without a close frame"
    return type(exc).__name__


async def _client(
    url: str, gate: asyncio.Semaphore, start: asyncio.Event, stop: list[float], traffic: Traffic
) -> None:
    try:
        async with gate:  # a bounded ramp: handshakes queue here, not in the kernel's backlog
            ws = await _open(url)
        traffic.opened += 1
    except Exception as exc:
        traffic.failed(exc)
        return
    try:
        await start.wait()  # every socket open before the clock starts
        while time.monotonic() < stop[0]:
            task_uuid, outputs = await _one(ws)
            traffic.results += 1
            traffic.outputs.extend((task_uuid, o) for o in outputs)
    except Exception as exc:
        traffic.failed(exc)
    finally:
        await ws.close()


async def _drive(
    url: str, clients: int, seconds: float, pid: int | None = None
) -> tuple[Traffic, RssSampler | None]:
    """``clients`` sockets open at once, then ``seconds`` of traffic on all of them;
    ``pid``'s memory is sampled over those seconds only (not the ramp)."""
    traffic = Traffic()
    gate, start, stop = asyncio.Semaphore(64), asyncio.Event(), [0.0]
    began = time.monotonic()
    jobs = [asyncio.ensure_future(_client(url, gate, start, stop, traffic)) for _ in range(clients)]
    while traffic.opened + traffic.errors < clients:
        await asyncio.sleep(0.05)
    traffic.ramp_s = time.monotonic() - began
    rss = RssSampler(pid) if pid is not None else None
    if rss is not None:
        rss.__enter__()
    stop[0] = time.monotonic() + seconds
    start.set()
    try:
        await asyncio.gather(*jobs)
    finally:
        if rss is not None:
            rss.__exit__()
    return traffic, rss


def bench_load(
    base: str, proxy: ProxyRun, clients: int, seconds: float
) -> tuple[Traffic, Traffic, RssSampler]:
    direct, _ = asyncio.run(_drive(ws_of(base), clients, seconds))
    traffic, rss = asyncio.run(_drive(ws_of(proxy.base), clients, seconds, proxy.pid))
    assert rss is not None
    return direct, traffic, rss


def report_load(
    direct: Traffic,
    traffic: Traffic,
    rss: RssSampler,
    stored: list[tuple[str | None, str | None]],
    earlier: list[tuple[str, str]],
    clients: int,
    seconds: float,
    proxy_exit: int | None,
) -> bool:
    expected = set(traffic.outputs) | set(earlier)
    once = (
        bool(traffic.outputs)
        and set(stored) == expected
        and len(stored) == len(expected) == len(traffic.outputs) + len(earlier)
    )
    warm, end = rss.at(seconds / 2), rss.samples[-1][1] if rss.samples else 0
    flat = end - warm <= max(16 << 20, warm // 10)
    log(
        f"load: {clients} clients x {seconds:.0f} s; {traffic.opened} sockets open through the proxy "
        f"after {traffic.ramp_s:.1f} s ({direct.opened} direct after {direct.ramp_s:.1f} s); "
        f"{traffic.results} results ({traffic.errors} errors) "
        f"through the proxy {traffic.reasons or ''}, {direct.results} direct {direct.reasons or ''}; "
        f"{len(stored)} records for {len(expected)} outputs; "
        f"exactly once: {once}; RSS warm {warm >> 20} MiB, end {end >> 20} MiB; proxy exit {proxy_exit}"
    )
    rate, base_rate = traffic.results / seconds, direct.results / seconds
    figure(
        "websocket.load_results_per_s",
        rate,
        "results/s",
        base_rate,
        f"{clients} clients straight at the server",
        "every result recorded exactly once, memory flat",
        once and flat and traffic.errors == 0 and traffic.opened == clients,
    )
    return once


def raise_fd_limit(clients: int) -> None:
    """The proxy holds two sockets per client, the server and this process one each:
    lift the soft descriptor limit (inherited by both subprocesses) to what that needs."""
    needed = 2 * clients + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(
            f"bench_websocket: {clients} clients need {needed} open files; the hard limit is {hard}"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--clients", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--samples", type=int)
    args = parser.parse_args()
    clients = args.clients or (20 if args.smoke else 500)
    seconds = args.seconds or (4.0 if args.smoke else 60.0)
    samples = args.samples or (40 if args.smoke else 400)
    raise_fd_limit(clients)
    server = [*SEEDLEDGER, "reference-server", "--port", "0", "--latency-ms", "50"]
    recorded: list[tuple[str, str]] = []  # outputs the latency part received through the proxy
    with (
        tempfile.TemporaryDirectory(prefix="bench-ws-") as tmp,
        subprocess_server(server, r"at (http://\S+)/v1") as base,
        fresh_database("sqlite", Path(tmp)) as db,
    ):
        with recording_proxy(base, db, Path(tmp) / "spool") as proxy:
            wait_ready(proxy.base, "/_seedledger/health")
            bench_latency(base, proxy.base, samples, recorded)
            direct, traffic, rss = bench_load(base, proxy, clients, seconds)
        # The proxy has drained on SIGTERM: the ledger holds what it recorded.
        once = report_load(direct, traffic, rss, stored_keys(db), recorded, clients, seconds, proxy.exit_code)
    return 0 if once else 1


if __name__ == "__main__":
    sys.exit(main())
