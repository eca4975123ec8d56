"""Load: the recording proxy under many concurrent clients, and many concurrent writers.

1. Proxy: a real `seedledger proxy` subprocess in front of a `seedledger
   reference-server` subprocess; C concurrent clients (asyncio, one connection each)
   send one-image tasks for D seconds. Afterwards the proxy is stopped with SIGTERM (it
   drains its spool) and the ledger must hold every output a client received exactly
   once (same task and output UUIDs, no extra rows). The proxy's resident memory is
   sampled from /proc every 0.25 s: peak, after warm-up (half the run) and at the end
   are printed, with the curve at every eighth; "flat" means the second half grows by
   at most max(16 MiB, 10 %).
   Baseline: the same clients straight at the reference server for the same time
   (requests per second without the proxy).
2. Writers: W writer processes (SQLite) or W writer threads each with its own
   connection pool (PostgreSQL) add records through ``Ledger.add`` in small batches;
   every writer also re-adds one shared batch, racing the others. Every key must land
   exactly once. Baseline: one writer adding the same number of records.

Targets: exactly once everywhere, memory flat; full run: 200 clients for 60 s,
8 SQLite writer processes, 32 PostgreSQL writers. ``--smoke``: ~10 s, 30 clients,
small writer counts.

    .venv/bin/python bench/bench_load.py [--smoke] [--clients N] [--seconds S]
        [--engine sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger.core.records import Modality, NewRecord, SeedOrigin
from ledger.store import Ledger, migrate
from ledger.store import engine as engines
from ledger.store.schema import records

PG_ADMIN = os.environ.get("SEEDLEDGER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
_SCRIPT = Path(sys.executable).with_name("seedledger")
SEEDLEDGER = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "ledger"]
KEY = "sk-load-not-a-real-key"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def figure(
    bench: str, value: float, unit: str, baseline: float, baseline_name: str, target: str, ok: bool
) -> None:
    ratio = value / baseline if baseline else 0.0
    print(
        json.dumps(
            {
                "bench": bench,
                "figure": round(value, 3),
                "unit": unit,
                "baseline": round(baseline, 3),
                "baseline_name": baseline_name,
                "ratio": round(ratio, 3),
                "target": target,
                "pass": bool(ok),
            }
        ),
        flush=True,
    )


# -- databases --------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(engine_name: str, workdir: Path) -> Iterator[str]:
    """A migrated, empty ledger: a SQLite file, or a PostgreSQL database dropped after."""
    if engine_name == "sqlite":
        url = f"sqlite:///{workdir / f'load-{uuid.uuid4().hex[:8]}.db'}"
        engine = engines.create(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield url
        return
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"sl_load_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        engine = engines.create(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def stored_keys(url: str) -> list[tuple[str | None, str | None]]:
    with Ledger.open(url) as ledger, ledger.reading() as conn:
        return [tuple(r) for r in conn.execute(select(records.c.task_uuid, records.c.output_uuid))]


# -- processes --------------------------------------------------------------------------


def _banner_url(proc: subprocess.Popen[str], pattern: str, timeout: float = 30.0) -> str:
    """Read stderr lines until ``pattern`` (one group: the URL) appears."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise RuntimeError(f"process exited before announcing itself (code {proc.poll()})")
        match = re.search(pattern, line)
        if match:
            return match.group(1)
    raise RuntimeError("process did not announce its address in time")


def _drain_stderr(proc: subprocess.Popen[str], sink: list[str]) -> threading.Thread:
    def run() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            sink.append(line)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@contextlib.contextmanager
def reference_server() -> Iterator[str]:
    """`seedledger reference-server` on a free loopback port; yields its base URL."""
    proc = subprocess.Popen(
        [*SEEDLEDGER, "reference-server", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    reader: threading.Thread | None = None
    try:
        assert proc.stdout is not None
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("reference server exited")
            match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
            if match:
                url = match.group(1)
        if url is None:
            raise RuntimeError("reference server did not announce its address")
        reader = threading.Thread(target=lambda: [None for _ in proc.stdout or ()], daemon=True)
        reader.start()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if reader is not None:
            reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()


@dataclass
class ProxyRun:
    base: str
    pid: int
    stderr: list[str] = field(default_factory=list)
    exit_code: int | None = None


@contextlib.contextmanager
def recording_proxy(upstream: str, db_url: str, spool: Path, *extra: str) -> Iterator[ProxyRun]:
    """A real `seedledger proxy` subprocess; stopped with SIGTERM (drain) on exit."""
    proc = subprocess.Popen(
        [
            *SEEDLEDGER,
            "--db",
            db_url,
            *extra,
            "proxy",
            "--upstream",
            upstream,
            "--listen",
            "127.0.0.1:0",
            "--spool",
            str(spool),
            "--no-fingerprint",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    run = ProxyRun("", proc.pid)
    reader: threading.Thread | None = None
    try:
        run.base = _banner_url(proc, r"listening on (http://\S+)")
        reader = _drain_stderr(proc, run.stderr)
        yield run
        proc.send_signal(signal.SIGTERM)
        run.exit_code = proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if reader is not None:
            reader.join(10)
        if proc.stderr is not None:
            proc.stderr.close()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time the process has used so far."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class RssSampler:
    """Samples a process's resident memory every ``interval`` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.cpu = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            value = rss_bytes(self.pid)
            if value is not None:
                self.samples.append((time.monotonic() - start, value))
            cpu = cpu_seconds(self.pid)
            if cpu is not None:
                self.cpu = cpu
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, seconds: float) -> int:
        """The first sample taken at or after ``seconds``."""
        for when, value in self.samples:
            if when >= seconds:
                return value
        return self.samples[-1][1]


# -- clients ----------------------------------------------------------------------------


@dataclass
class Traffic:
    requests: int = 0
    errors: int = 0
    #: Why requests failed: "HTTP 502", "ReadTimeout", … with counts.
    reasons: dict[str, int] = field(default_factory=dict)

    def failed(self, reason: str) -> None:
        self.errors += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    #: (taskUUID, imageUUID) of every output a client received.
    outputs: list[tuple[str, str]] = field(default_factory=list)


def _task(seed: int) -> dict[str, Any]:
    return {
        "taskType": "imageInference",
        "taskUUID": str(uuid.uuid4()),
        "model": "runware:101@1",
        "positivePrompt": "load test: a lighthouse",
        "width": 64,
        "height": 64,
        "steps": 1,
        "scheduler": "Euler",
        "seed": seed,
        "outputType": "URL",
    }


async def _client_loop(base: str, stop_at: float, traffic: Traffic, number: int) -> None:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60.0, headers=headers) as client:
        i = 0
        # Every client sends at least once: on a busy machine opening 30 clients can
        # outlast a short run, and a client that never sent tests nothing.
        while i == 0 or time.monotonic() < stop_at:
            i += 1
            task = _task(number * 1_000_000 + i)
            try:
                response = await client.post("/v1", json=[task])
                body = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                traffic.failed(type(exc).__name__)
                continue
            traffic.requests += 1
            if response.status_code != 200:
                traffic.failed(f"HTTP {response.status_code}: {response.text[:160]}")
                continue
            for item in body.get("data", []):
                if item.get("imageUUID"):
                    traffic.outputs.append((item["taskUUID"], item["imageUUID"]))


def drive(base: str, clients: int, seconds: float) -> Traffic:
    traffic = Traffic()

    async def main() -> None:
        stop_at = time.monotonic() + seconds
        await asyncio.gather(*(_client_loop(base, stop_at, traffic, n) for n in range(clients)))

    asyncio.run(main())
    return traffic


@dataclass(frozen=True)
class ProxyResult:
    engine: str
    clients: int
    seconds: float
    requests: int
    errors: int
    error_reasons: dict[str, int]
    outputs: int
    records_landed: int
    exactly_once: bool
    missing: int
    extra: int
    duplicates: int
    rss_start: int
    rss_warm: int
    rss_end: int
    rss_peak: int
    proxy_exit: int | None
    secret_in_stderr: bool
    #: RSS at every eighth of the run (the shape of the curve: flat or climbing).
    rss_curve: tuple[int, ...] = ()
    #: CPU seconds the proxy used during the traffic.
    proxy_cpu: float = 0.0

    @property
    def memory_flat(self) -> bool:
        return self.rss_end - self.rss_warm <= max(16 << 20, self.rss_warm // 10)


def proxy_load(
    upstream: str, db_url: str, engine_name: str, clients: int, seconds: float, workdir: Path
) -> ProxyResult:
    """Drive the proxy, stop it (drain), then compare the ledger with what clients got."""
    spool = workdir / f"spool-{uuid.uuid4().hex[:8]}"
    with recording_proxy(upstream, db_url, spool) as proxy, RssSampler(proxy.pid) as sampler:
        traffic = drive(proxy.base, clients, seconds)
    stored = stored_keys(db_url)
    expected = set(traffic.outputs)
    got = set(stored)
    samples = [v for _, v in sampler.samples] or [0]
    return ProxyResult(
        engine=engine_name,
        clients=clients,
        seconds=seconds,
        requests=traffic.requests,
        errors=traffic.errors,
        error_reasons=traffic.reasons,
        outputs=len(traffic.outputs),
        records_landed=len(stored),
        exactly_once=got == expected
        and len(stored) == len(expected)
        and len(traffic.outputs) == len(expected),
        missing=len(expected - got),
        extra=len(got - expected),
        duplicates=len(stored) - len(got),
        rss_start=samples[0],
        rss_warm=sampler.at(seconds / 2),
        rss_curve=tuple(sampler.at(seconds * q / 8) for q in range(9)),
        proxy_cpu=sampler.cpu,
        rss_end=samples[-1],
        rss_peak=max(samples),
        proxy_exit=proxy.exit_code,
        secret_in_stderr=any(KEY in line for line in proxy.stderr),
    )


# -- writers ----------------------------------------------------------------------------


def _writer_record(key: str, seed: int) -> NewRecord:
    return NewRecord(
        backend="runware",
        task_type="imageInference",
        modality=Modality.IMAGE,
        model="runware:101@1",
        seed=seed,
        seed_origin=SeedOrigin.REQUEST,
        prompt=f"writer load {key}",
        params={"positivePrompt": f"writer load {key}", "seed": seed},
        task_uuid=key,
        output_uuid=key,
        idempotency_key=f"load:{key}",
    )


SHARED_BATCH = 10


def write_records(url: str, writer: int, batches: int, batch_size: int) -> int:
    """One writer: its own batches, then the shared batch that every writer races for."""
    with Ledger.open(url) as ledger:
        for b in range(batches):
            ledger.add(
                [
                    _writer_record(f"w{writer}-{b}-{i}", writer * 100_000 + b * 100 + i)
                    for i in range(batch_size)
                ]
            )
        ledger.add([_writer_record(f"shared-{i}", 7_000_000 + i) for i in range(SHARED_BATCH)])
    return batches * batch_size


def _writer_process(url: str, writer: int, batches: int, batch_size: int, start: Any, out: Any) -> None:
    out.put((writer, -1, None))  # imported and ready: the clock starts when all are
    start.wait()
    try:
        out.put((writer, write_records(url, writer, batches, batch_size), None))
    except Exception as exc:  # reported back to the parent, which fails the run
        out.put((writer, 0, f"{type(exc).__name__}: {exc}"))


@dataclass(frozen=True)
class WriterResult:
    engine: str
    writers: int
    expected: int
    landed: int
    distinct: int
    errors: tuple[str, ...]
    seconds: float

    @property
    def exactly_once(self) -> bool:
        return not self.errors and self.landed == self.distinct == self.expected


def concurrent_writers(
    url: str, engine_name: str, writers: int, batches: int, batch_size: int, *, processes: bool
) -> WriterResult:
    errors: list[str] = []
    began = time.perf_counter()
    if processes:
        # fork: the children start at once (spawn would re-import everything per writer).
        ctx = multiprocessing.get_context(
            "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        )
        start, out = ctx.Event(), ctx.Queue()
        procs = [
            ctx.Process(target=_writer_process, args=(url, w, batches, batch_size, start, out))
            for w in range(writers)
        ]
        for p in procs:
            p.start()
        for _ in procs:
            out.get(timeout=120)
        began = time.perf_counter()
        start.set()
        for _ in procs:
            _, _, error = out.get(timeout=300)
            if error:
                errors.append(error)
        for p in procs:
            p.join(60)
            if p.exitcode != 0:
                errors.append(f"writer process exited with {p.exitcode}")
    else:
        barrier = threading.Barrier(writers)

        def run(w: int) -> None:
            try:
                barrier.wait()
                write_records(url, w, batches, batch_size)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=run, args=(w,)) for w in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    seconds = time.perf_counter() - began
    keys = [k for k, _ in stored_keys(url)]
    return WriterResult(
        engine=engine_name,
        writers=writers,
        expected=writers * batches * batch_size + SHARED_BATCH,
        landed=len(keys),
        distinct=len(set(keys)),
        errors=tuple(errors),
        seconds=seconds,
    )


# -- main -------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="~10 s, 30 clients, small writer counts")
    parser.add_argument("--clients", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="sqlite")
    args = parser.parse_args()
    clients = args.clients or (30 if args.smoke else 200)
    seconds = args.seconds or (5.0 if args.smoke else 60.0)
    sqlite_writers, pg_writers = (3, 6) if args.smoke else (8, 32)
    batches, batch_size = (10, 5) if args.smoke else (50, 10)
    proxy_engines = ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]
    ok = True
    # A fresh reference server per run: its throughput drops once it has served a few
    # thousand requests to many clients, which would make whichever run came later look slow.
    with tempfile.TemporaryDirectory(prefix="seedledger-load-") as tmp:
        workdir = Path(tmp)
        log(f"{clients} clients for {seconds:g}s per run")
        with reference_server() as upstream:
            direct = drive(upstream, clients, seconds)
        direct_rps = direct.requests / seconds
        log(
            f"direct: {direct.requests} requests ({direct_rps:.0f}/s), "
            f"{direct.errors} errors {direct.reasons or ''}"
        )
        for engine_name in proxy_engines:
            with reference_server() as upstream, fresh_database(engine_name, workdir) as url:
                result = proxy_load(upstream, url, engine_name, clients, seconds, workdir)
            log(
                f"proxy/{engine_name}: requests served {result.requests}, errors {result.errors} "
                f"{result.error_reasons or ''}, "
                f"outputs {result.outputs}, records landed {result.records_landed} "
                f"(missing {result.missing}, extra {result.extra}, duplicates {result.duplicates}); "
                f"RSS start {result.rss_start >> 20} MiB, warm {result.rss_warm >> 20} MiB, "
                f"end {result.rss_end >> 20} MiB, peak {result.rss_peak >> 20} MiB "
                f"(every eighth: {[v >> 20 for v in result.rss_curve]}); exit {result.proxy_exit}; "
                f"proxy CPU {result.proxy_cpu:.1f}s "
                f"({result.proxy_cpu / max(1, result.requests) * 1000:.1f} ms/request)"
            )
            good = result.exactly_once and result.errors == 0 and not result.secret_in_stderr
            figure(
                f"load_proxy_requests_per_s_{engine_name}",
                result.requests / seconds,
                "requests/s",
                direct_rps,
                f"{clients} clients straight at the reference server",
                f"every response recorded exactly once ({result.records_landed}/{result.outputs})",
                good,
            )
            figure(
                f"load_proxy_peak_rss_{engine_name}",
                result.rss_peak / 2**20,
                "MiB",
                result.rss_warm / 2**20,
                "proxy RSS at mid-run",
                f"flat: end {result.rss_end / 2**20:.1f} MiB within max(16 MiB, 10%) of mid-run",
                result.memory_flat,
            )
            ok = ok and good and result.memory_flat
    for engine_name, writers, use_processes in (
        ("sqlite", sqlite_writers, True),
        ("postgresql", pg_writers, False),
    ):
        with tempfile.TemporaryDirectory(prefix="seedledger-writers-") as tmp:
            with fresh_database(engine_name, Path(tmp)) as url:
                single = concurrent_writers(url, engine_name, 1, batches, batch_size, processes=False)
            with fresh_database(engine_name, Path(tmp)) as url:
                result = concurrent_writers(
                    url, engine_name, writers, batches, batch_size, processes=use_processes
                )
        log(
            f"writers/{engine_name}: {writers} {'processes' if use_processes else 'threads'}, "
            f"expected {result.expected}, landed {result.landed}, distinct {result.distinct}, "
            f"errors {list(result.errors)[:3]}, {result.seconds:.1f}s"
        )
        figure(
            f"load_writers_records_per_s_{engine_name}",
            result.landed / result.seconds,
            "records/s",
            single.landed / single.seconds,
            "one writer",
            f"{writers} concurrent writers lose nothing ({result.landed}/{result.expected})",
            result.exactly_once,
        )
        ok = ok and result.exactly_once and single.exactly_once
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
