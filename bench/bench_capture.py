"""Capture overhead and writer drain rate.

1. Request time through the recording transport vs a plain httpx client, and through
   the recording proxy vs direct, against the reference server with 50 ms latency.
   The reference server and the proxy run as subprocesses (`seedledger
   reference-server`, `seedledger proxy`); requests alternate between the variants so
   drift hits them alike; the figure is the median. Fingerprinting is off in this part
   (it runs on the writer thread; the reference server would also serve the downloads).
   Targets: transport <= 1.02x plain, proxy <= 1.05x direct.
2. Writer drain: N spooled records (one exchange of one image each, the worst case for
   per-entry overhead) drained into a fresh SQLite file and a fresh PostgreSQL
   database by the writer (read, checksum, decode, bulk insert, idempotent); baseline:
   SQLAlchemy Core ``conn.execute(insert(records), rows)`` (executemany) of the same
   rows on the same schema. Targets: >= 20,000 records/s SQLite, >= 10,000 PostgreSQL.

    .venv/bin/python bench/bench_capture.py [--smoke] [--requests N] [--records N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx
from sqlalchemy import create_engine, insert, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger.capture import Recorder, RecordingTransport
from ledger.capture.entries import encode_entry
from ledger.capture.spool import Spool
from ledger.capture.writer import Counters, SpoolWriter
from ledger.core.records import utcnow
from ledger.core.runware import records_for_task
from ledger.store import Ledger, migrate
from ledger.store import engine as engines
from ledger.store.ledger import _to_row
from ledger.store.schema import records

PG_ADMIN = os.environ.get("SEEDLEDGER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SEEDLEDGER = [str(Path(sys.executable).with_name("seedledger"))]
KEY = "sk-bench-not-a-real-key"


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
                "figure": round(figure, 3),
                "unit": unit,
                "baseline": round(baseline, 3),
                "baseline_name": baseline_name,
                "ratio": round(ratio, 4),
                "target": target,
                "pass": ok,
            }
        ),
        flush=True,
    )


@contextmanager
def subprocess_server(args: list[str], pattern: str) -> Iterator[str]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    reader: threading.Thread | None = None
    try:
        while True:
            line = proc.stderr.readline()
            if not line:
                raise RuntimeError(f"{args[1]} exited before announcing its address")
            match = re.search(pattern, line)
            if match:
                break
        # Keep reading (and dropping) its log, access lines included: a full pipe would
        # block the server mid-write, which looks like a server that stops accepting.
        reader = threading.Thread(target=_discard, args=(proc.stderr,), daemon=True)
        reader.start()
        yield match.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if reader is not None:
            reader.join(10)
        proc.stderr.close()


def _discard(stream: IO[str]) -> None:
    for _ in stream:
        pass


def task() -> list[dict[str, Any]]:
    return [
        {
            "taskType": "imageInference",
            "taskUUID": str(uuid.uuid4()),
            "model": "runware:101@1",
            "positivePrompt": "a lighthouse at dusk",
            "width": 64,
            "height": 64,
            "steps": 4,
        }
    ]


def timed(post: Callable[[], httpx.Response]) -> float:
    start = time.perf_counter()
    response = post()
    elapsed = time.perf_counter() - start
    assert response.status_code == 200, response.text
    return elapsed


def bench_requests(n: int, workdir: Path) -> None:
    ref_args = [*SEEDLEDGER, "reference-server", "--port", "0", "--latency-ms", "50"]
    with subprocess_server(ref_args, r"at (http://\S+)/v1") as base:
        url = base + "/v1"
        db = f"sqlite:///{workdir}/requests.db"
        proxy_args = [
            *SEEDLEDGER,
            "--db",
            db + "-proxy",
            "proxy",
            "--upstream",
            base,
            "--listen",
            "127.0.0.1:0",
            "--spool",
            str(workdir / "proxy-spool"),
            "--no-fingerprint",
        ]
        with subprocess_server(proxy_args, r"listening on (http://\S+) ") as proxy:
            recorder = Recorder(workdir / "spool", db, fingerprint=False)
            headers = {"Authorization": f"Bearer {KEY}"}
            plain = httpx.Client(headers=headers)
            recording = httpx.Client(transport=RecordingTransport(recorder=recorder), headers=headers)
            via_proxy = httpx.Client(headers=headers)
            variants: dict[str, Callable[[], httpx.Response]] = {
                "plain": lambda: plain.post(url, json=task()),
                "transport": lambda: recording.post(url, json=task()),
                "direct": lambda: plain.post(url, json=task()),
                "proxy": lambda: via_proxy.post(proxy + "/v1", json=task()),
            }
            for post in variants.values():  # warm connections
                for _ in range(5):
                    timed(post)
            # Wait until both writers have opened the ledger and landed the warm-up
            # records, so start-up work (imports, schema check) is not measured.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                landed_proxy = plain.get(proxy + "/_seedledger/health").json()["recorded"]
                if landed_proxy >= 5 and recorder.counters.recorded >= 5:
                    break
                time.sleep(0.1)
            times: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(n):
                for name, post in variants.items():
                    times[name].append(timed(post))
            for client in (plain, recording, via_proxy):
                client.close()
            recorder.close(drain_timeout=30)
            landed = recorder.counters.recorded
            log(f"requests: {n} per variant; the transport recorded {landed}")
    med = {name: statistics.median(values) * 1000 for name, values in times.items()}
    emit(
        "capture.transport_median_ms",
        med["transport"],
        "ms",
        med["plain"],
        "plain httpx client",
        "<= 1.02x",
        med["transport"] <= 1.02 * med["plain"],
    )
    emit(
        "capture.proxy_median_ms",
        med["proxy"],
        "ms",
        med["direct"],
        "direct to the server",
        "<= 1.05x",
        med["proxy"] <= 1.05 * med["direct"],
    )


# -- drain -----------------------------------------------------------------------------------


def make_records(n: int) -> list[Any]:
    out = []
    for i in range(n):
        t = task()[0]
        t["seed"] = 1000 + i
        result = {
            "taskType": "imageInference",
            "taskUUID": t["taskUUID"],
            "imageUUID": str(uuid.uuid4()),
            "imageURL": f"https://im.example/{uuid.uuid4()}.jpg",
            "seed": 1000 + i,
        }
        out.extend(records_for_task(t, [result]))
    return out


@contextmanager
def fresh_database(engine_name: str, workdir: Path, label: str) -> Iterator[str]:
    if engine_name == "sqlite":
        url = f"sqlite:///{workdir}/{label}.db"
        engine = engines.create(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield url
        return
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"sl_bench_{label}_{uuid.uuid4().hex[:8]}"
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


def bench_drain(n: int, engine_name: str, workdir: Path, target: float) -> None:
    spool_records = make_records(n)
    base_records = make_records(n)
    spool_dir = workdir / f"drain-{engine_name}"
    with Spool(spool_dir) as spool:
        for record in spool_records:
            spool.append(encode_entry([record]))
    with fresh_database(engine_name, workdir, "writer") as url:
        with Spool(spool_dir) as spool:
            counters = Counters()
            writer = SpoolWriter(spool, url, counters)
            writer._open()  # connect first: the figure is the drain, not the connection
            start = time.perf_counter()
            assert writer.drain(timeout=600)
            elapsed = time.perf_counter() - start
            writer.stop(drain=False)
        with Ledger.open(url) as ledger:
            assert ledger.count() == n, ledger.count()
        rate = n / elapsed
    with fresh_database(engine_name, workdir, "core") as url:
        ledger = Ledger.open(url)
        now = utcnow()
        rows = [_to_row(r, now) for r in base_records]
        with ledger.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            conn.commit()
            start = time.perf_counter()
            with conn.begin():
                for chunk in range(0, n, 5000):
                    conn.execute(insert(records), rows[chunk : chunk + 5000])
            baseline_elapsed = time.perf_counter() - start
        ledger.close()
        baseline = n / baseline_elapsed
    log(f"drain {engine_name}: {n} records in {elapsed:.2f}s; Core executemany {baseline_elapsed:.2f}s")
    emit(
        f"capture.drain_{engine_name}",
        rate,
        "records/s",
        baseline,
        "SQLAlchemy Core executemany, same rows",
        f">= {target:,.0f} records/s",
        rate >= target,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes")
    parser.add_argument("--requests", type=int, default=None, help="requests per variant")
    parser.add_argument("--records", type=int, default=None, help="records to drain")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--only", choices=("requests", "drain"), help="run one part")
    args = parser.parse_args()
    n_requests = args.requests or (10 if args.smoke else 200)
    n_records = args.records or (2000 if args.smoke else 100_000)
    with tempfile.TemporaryDirectory(prefix="bench-capture-") as tmp:
        workdir = Path(tmp)
        if args.only != "drain":
            bench_requests(n_requests, workdir)
        if args.only == "requests":
            return
        bench_drain(n_records, "sqlite", workdir, 20_000)
        if not args.skip_postgres:
            bench_drain(n_records, "postgresql", workdir, 10_000)


if __name__ == "__main__":
    main()
