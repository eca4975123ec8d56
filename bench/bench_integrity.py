"""Sealing rate and `verify` time over 1,000,000 leaves on SQLite.

Fills a fresh SQLite ledger with Runware-shaped records (Core executemany in big
batches), seals them all in one ``seal()`` call, then runs the full ``verify()`` (every
leaf recomputed from its row, the tree rebuilt, every checkpoint checked) three ways:
with the native walker on its default threads (the shipped default), with the native
walker on one thread, and on the Python path alone (``native=False``).

Baselines, measured in the same run over the same rows:

- ``sha256``: SHA-256 of the same canonical leaf bytes in one Python loop (the bytes
  are prepared beforehand, chunk by chunk, outside the timing);
- ``leaf+sha256``: building the canonical leaf bytes from rows already in memory, then
  SHA-256, in one Python loop (the sealing rate's baseline).

    .venv/bin/python bench/bench_integrity.py [--smoke] [--rows N] [--default-json]
        [--engine sqlite|postgresql]

``--default-json`` writes JSON columns the way SQLAlchemy does by default (and
ledgers from before seedledger wrote them compactly hold): the walker then parses and
re-encodes them instead of copying them.

``--engine postgresql`` runs the same on a throwaway PostgreSQL database (figures named
``….postgresql``; no one-thread run: rows come through psycopg, on one thread).

Prints one JSON line per figure: verify vs sha256 (target <= 3x, wall clock), the
one-thread and Python-path verify (informational), and the sealing rate (target
>= 20,000 leaves/s). Each line carries the process CPU time and the load average, since
a busy machine slows wall-clock figures and not CPU time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger.integrity import _native
from ledger.integrity.leaves import RECORD
from ledger.integrity.note import Signer
from ledger.integrity.seal import seal
from ledger.integrity.verify import verify
from ledger.store import Ledger, migrate
from ledger.store import engine as engines
from ledger.store.schema import records

SEAL_TARGET = 20_000.0
RATIO_TARGET = 3.0
SCHEDULERS = ("DPM++ 2M Karras", "Euler", "Euler a", "DDIM", "UniPC")


def emit(
    bench: str,
    figure: float,
    unit: str,
    baseline: float | None,
    baseline_name: str,
    target: str,
    passed: bool | None,
    **extra: Any,
) -> None:
    ratio = None if not baseline else round(figure / baseline, 3)
    line = {
        "bench": bench,
        "figure": round(figure, 3),
        "unit": unit,
        "baseline": None if baseline is None else round(baseline, 3),
        "baseline_name": baseline_name,
        "ratio": ratio,
        "target": target,
        "pass": passed,
        **extra,
    }
    print(json.dumps(line), flush=True)


def make_rows(start: int, count: int, base: datetime) -> list[dict[str, Any]]:
    rows = []
    for n in range(start, start + count):
        task_uuid = str(uuid.UUID(int=n + 1))
        seed = (n * 0x9E3779B97F4A7C15) % 2**64
        scheduler = SCHEDULERS[n % len(SCHEDULERS)]
        params = {
            "taskType": "imageInference",
            "taskUUID": task_uuid,
            "model": "runware:101@1",
            "positivePrompt": f"a lighthouse at dusk, variation {n}",
            "negativePrompt": "blurry, low quality",
            "width": 1024,
            "height": 1024,
            "steps": 30,
            "CFGScale": 7.5,
            "scheduler": scheduler,
            "seed": seed,
            "outputFormat": "PNG",
            "numberResults": 1,
        }
        response = {
            "taskType": "imageInference",
            "taskUUID": task_uuid,
            "imageUUID": str(uuid.UUID(int=n + 2**64)),
            "imageURL": f"https://im.runware.example/image/{n}.png",
            "seed": seed,
            "cost": 0.0038,
        }
        created = base + timedelta(milliseconds=n)
        rows.append(
            {
                "idempotency_key": f"runware:{task_uuid}:0",
                "backend": "runware",
                "task_type": "imageInference",
                "modality": "image",
                "model": "runware:101@1",
                "scheduler_requested": scheduler,
                "scheduler": scheduler,
                "seed": seed,
                "seed_origin": "request",
                "prompt": params["positivePrompt"],
                "negative_prompt": params["negativePrompt"],
                "width": 1024,
                "height": 1024,
                "steps": 30,
                "cfg_scale": 7.5,
                "output_format": "PNG",
                "params": params,
                "response": response,
                "task_uuid": task_uuid,
                "output_uuid": response["imageUUID"],
                "output_index": 0,
                "cost": 0.0038,
                "source": "api",
                "experiment_id": None,
                "parent_id": None,
                "tags": ["bench"],
                "status": "ok",
                "error_code": None,
                "error": None,
                "created_at": created,
                "recorded_at": created + timedelta(milliseconds=5),
            }
        )
    return rows


def fill(ledger: Ledger, total: int, chunk: int = 50_000) -> float:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    started = time.perf_counter()
    for start in range(0, total, chunk):
        rows = make_rows(start, min(chunk, total - start), base)
        with ledger.writing() as conn:
            conn.execute(insert(records), rows)
    return time.perf_counter() - started


def baselines(ledger: Ledger, chunk: int = 20_000) -> tuple[float, float]:
    """(sha256 loop seconds, leaf-bytes + sha256 loop seconds) over every sealed row."""
    sha_time = leaf_time = 0.0
    last = 0
    sha256 = hashlib.sha256
    index = 0
    while True:
        with ledger.reading() as conn:
            rows = conn.execute(
                select(records).where(records.c.id > last).order_by(records.c.id).limit(chunk)
            ).all()
        if not rows:
            break
        mappings = [r._mapping for r in rows]
        # leaf bytes + sha256 from rows in memory
        t = time.perf_counter()
        for i, m in enumerate(mappings):
            sha256(b"\x00" + RECORD.leaf_bytes(index + i, m)).digest()
        leaf_time += time.perf_counter() - t
        prepared = [RECORD.leaf_bytes(index + i, m) for i, m in enumerate(mappings)]
        # sha256 alone over the same bytes
        t = time.perf_counter()
        for data in prepared:
            sha256(b"\x00" + data).digest()
        sha_time += time.perf_counter() - t
        index += len(rows)
        last = int(rows[-1].id)
    return sha_time, leaf_time


def timed_verify(ledger: Ledger, signer: Signer, **kwargs: Any) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of every thread of the process, report)."""
    started, cpu = time.perf_counter(), time.process_time()
    report = verify(ledger, [signer.verifier], **kwargs)
    return time.perf_counter() - started, time.process_time() - cpu, report


@contextmanager
def _migrated(url: str, options: dict[str, Any]) -> Iterator[Ledger]:
    engine = engines.create(url, **options)
    migrate.upgrade(engine)
    ledger = Ledger(engine)
    try:
        yield ledger
    finally:
        ledger.close()


@contextmanager
def open_ledger(engine_name: str, default_json: bool) -> Iterator[Ledger]:
    """A fresh ledger: a SQLite file in a temporary directory, or a throwaway PostgreSQL
    database (``SEEDLEDGER_BENCH_PG_URL``, default the local test server), dropped after."""
    options: dict[str, Any] = {"json_serializer": json.dumps} if default_json else {}
    if engine_name == "sqlite":
        with (
            tempfile.TemporaryDirectory(prefix="bench-integrity-") as tmp,
            _migrated(str(Path(tmp) / "ledger.db"), options) as ledger,
        ):
            yield ledger
        return
    admin_url = os.environ.get("SEEDLEDGER_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    name = f"bench_integrity_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        with _migrated(admin_url.rsplit("/", 1)[0] + "/" + name, options) as ledger:
            yield ledger
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="about 20,000 records")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument(
        "--default-json", action="store_true", help="JSON columns in json.dumps' default form"
    )
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    total = args.rows or (20_000 if args.smoke else 1_000_000)
    threads = _native.threads() if args.engine == "sqlite" else 1  # PostgreSQL: rows come through psycopg
    suffix = "" if args.engine == "sqlite" else ".postgresql"

    with open_ledger(args.engine, args.default_json) as ledger:
        signer = Signer.generate("bench.example/log")
        fill_s = fill(ledger, total)
        print(f"# filled {total} records in {fill_s:.1f} s", file=sys.stderr, flush=True)

        started, cpu = time.perf_counter(), time.process_time()
        result = seal(ledger, signer, batch_size=10_000)
        seal_s, seal_cpu = time.perf_counter() - started, time.process_time() - cpu
        assert result.size == total, result
        rate = total / seal_s
        print(f"# sealed {total} leaves in {seal_s:.1f} s", file=sys.stderr, flush=True)

        rss_before = peak_rss_mib()
        verify_s, verify_cpu, report = timed_verify(ledger, signer)
        rss_growth = peak_rss_mib() - rss_before
        assert report.ok and report.size == total, report.divergence
        native_leaves = report.native_leaves
        print(
            f"# verified {total} leaves in {verify_s:.1f} s ({threads} threads)", file=sys.stderr, flush=True
        )

        compared: list[tuple[str, float, float]] = []
        if args.engine == "sqlite":
            os.environ[_native.ENV_THREADS] = "1"
            one_s, one_cpu, one = timed_verify(ledger, signer)
            del os.environ[_native.ENV_THREADS]
            assert one.ok and one.native_leaves == native_leaves
            print(f"# verified {total} leaves in {one_s:.1f} s (1 thread)", file=sys.stderr, flush=True)
            compared.append(("integrity.verify_one_thread", one_s, one_cpu))

        python_s, python_cpu, exact = timed_verify(ledger, signer, native=False)
        assert exact == report and exact.native_leaves == 0
        print(f"# verified {total} leaves in {python_s:.1f} s (Python path)", file=sys.stderr, flush=True)
        compared.append(("integrity.verify_python_path", python_s, python_cpu))

        sha_s, leaf_s = baselines(ledger)
    # Wall-clock figures depend on what else runs; CPU time and load are shown beside them.
    load = round(os.getloadavg()[0], 2)
    json_form = "json.dumps default" if args.default_json else "compact (seedledger's)"

    emit(
        "integrity.verify" + suffix,
        verify_s,
        "s",
        sha_s,
        f"SHA-256 of the same {total} canonical leaves in one Python loop",
        f"<= {RATIO_TARGET:g}x baseline",
        verify_s <= RATIO_TARGET * sha_s,
        leaves=total,
        threads=threads,
        native_leaves=native_leaves,
        json_columns=json_form,
        verify_cpu_s=round(verify_cpu, 3),
        cpu_ratio=round(verify_cpu / sha_s, 3),
        peak_rss_growth_mib=round(rss_growth, 1),
        load_average=load,
    )
    for name, seconds, cpu_s in compared:
        emit(
            name + suffix,
            seconds,
            "s",
            sha_s,
            f"SHA-256 of the same {total} canonical leaves in one Python loop",
            "informational",
            None,
            leaves=total,
            verify_cpu_s=round(cpu_s, 3),
        )
    emit(
        "integrity.seal" + suffix,
        rate,
        "leaves/s",
        total / leaf_s if leaf_s else None,
        "leaf bytes + SHA-256 rate from rows in memory",
        f">= {SEAL_TARGET:,.0f} leaves/s",
        rate >= SEAL_TARGET,
        leaves=total,
        batch_size=10_000,
        cpu_rate=round(total / seal_cpu, 1),
        load_average=load,
    )


def peak_rss_mib() -> float:
    """The process's peak resident set (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
