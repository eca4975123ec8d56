"""Compliance reports over a 100,000-record ledger with audits, on SQLite and PostgreSQL.

The fixture (``tests/reports_data.populate``, Core executemany) holds records of every
kind, a fingerprint with a thumbnail per record, two audit runs (latest result per
record matters), record warnings, and a sealed, signed log (records and fingerprints:
200,000 leaves). Then each format (html, json, csv, md) is written by a fresh
subprocess running ``write_report`` exactly as ``seedledger report`` does, including
``verify`` of the whole log, and the child reports its wall time and peak RSS
(``resource.getrusage``).

Figures, per engine (one JSON line each):

- ``report_100k_<engine>_seconds``: the slowest of the four formats. Target ≤ 30 s.
  Baseline: a keyset scan that only fetches every selected record row (the least any
  per-record report must do), in a subprocess of its own.
- ``report_100k_<engine>_peak_rss``: the largest peak RSS (VmHWM) of the four children, MB.
  Target ≤ 500 MB. Baseline: peak RSS of a child that imports seedledger and opens
  the ledger without reporting.

    .venv/bin/python bench/bench_report.py [--smoke] [--records N] [--engine sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG_ADMIN = os.environ.get("SEEDLEDGER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
FORMATS = ("html", "json", "csv", "md")
TARGET_SECONDS = 30.0
TARGET_MB = 500.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(
    bench: str, figure: float, unit: str, baseline: float, baseline_name: str, target: str, ok: bool
) -> None:
    print(
        json.dumps(
            {
                "bench": bench,
                "figure": round(figure, 3),
                "unit": unit,
                "baseline": round(baseline, 3),
                "baseline_name": baseline_name,
                "ratio": round(figure / baseline, 3) if baseline else None,
                "target": target,
                "pass": ok,
            }
        ),
        flush=True,
    )


# -- the child: one measured job in a fresh interpreter ---------------------------------------


def child(mode: str, url: str, out: str) -> None:
    from ledger.store import Ledger

    started = time.perf_counter()
    with Ledger.open(url) as ledger:
        if mode == "scan":
            sum(1 for _ in ledger.iter_records())
        elif mode == "idle":
            ledger.count()
        else:
            from ledger.reports import write_report

            write_report(ledger, None, mode, Path(out))
    elapsed = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    peak_mb = _peak_rss_mb(usage)
    print(json.dumps({"seconds": elapsed, "cpu_seconds": cpu, "peak_mb": peak_mb}))


def _peak_rss_mb(usage: resource.struct_rusage) -> float:
    """This process's own peak RSS. Linux's ru_maxrss keeps the parent's peak across
    fork+exec (the bench parent built the fixture), so read VmHWM where it exists."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return usage.ru_maxrss / 1024  # KiB on Linux


def measure(mode: str, url: str, out: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--url", url, "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise SystemExit(f"child {mode} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the parent -------------------------------------------------------------------------------


def build(url: str, n: int) -> None:
    from ledger.integrity import Signer, seal
    from ledger.store import Ledger, migrate
    from ledger.store import engine as engines
    from tests.reports_data import populate

    engine = engines.create(url)
    migrate.upgrade(engine)
    engine.dispose()
    with Ledger.open(url) as ledger:
        t0 = time.perf_counter()
        populated = populate(ledger, n)
        t1 = time.perf_counter()
        result = seal(ledger, Signer.generate("bench.example/report"), batch_size=20_000)
        t2 = time.perf_counter()
        # What autovacuum (PostgreSQL) or `PRAGMA optimize` (SQLite) would do after a bulk
        # load; the report's queries are also written to plan well without statistics.
        with ledger.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    log(
        f"  fixture: {n} records ({populated.audited} audited) in {t1 - t0:.1f}s; "
        f"sealed {result.sealed} leaves in {t2 - t1:.1f}s"
    )


def run_engine(engine: str, url: str, n: int, workdir: Path) -> None:
    log(f"{engine}: building the fixture")
    build(url, n)
    scan = measure("scan", url, workdir / "none")
    idle = measure("idle", url, workdir / "none")
    log(f"  baseline scan {scan['seconds']:.2f}s; idle child peak {idle['peak_mb']:.0f} MB")
    slowest = {"seconds": 0.0, "peak_mb": 0.0}
    for fmt in FORMATS:
        out = workdir / f"report-{engine}.{fmt}"
        got = measure(fmt, url, out)
        size_mb = out.stat().st_size / 1e6
        log(
            f"  {fmt}: {got['seconds']:.2f}s wall, {got['cpu_seconds']:.2f}s CPU, "
            f"peak {got['peak_mb']:.0f} MB, {size_mb:.1f} MB file, load average {os.getloadavg()[0]:.1f}"
        )
        slowest["seconds"] = max(slowest["seconds"], got["seconds"])
        slowest["peak_mb"] = max(slowest["peak_mb"], got["peak_mb"])
    size = "100k" if n == 100_000 else f"{n // 1000}k" if n >= 1000 else str(n)
    emit(
        f"report_{size}_{engine}_seconds",
        slowest["seconds"],
        "s",
        scan["seconds"],
        "keyset scan of every record row",
        f"<= {TARGET_SECONDS:g} s (slowest of html/json/csv/md, verify included)",
        slowest["seconds"] <= TARGET_SECONDS,
    )
    emit(
        f"report_{size}_{engine}_peak_rss",
        slowest["peak_mb"],
        "MB",
        idle["peak_mb"],
        "idle child: import and open the ledger",
        f"<= {TARGET_MB:g} MB",
        slowest["peak_mb"] <= TARGET_MB,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="~5,000 records")
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.url, args.out)
        return
    n = args.records or (5_000 if args.smoke else 100_000)
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        workdir = Path(tmp)
        if args.engine in ("sqlite", "both"):
            run_engine("sqlite", f"sqlite:///{workdir / 'ledger.db'}", n, workdir)
        if args.engine in ("postgresql", "both"):
            from sqlalchemy import create_engine, text

            admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            name = f"sl_bench_report_{uuid.uuid4().hex[:8]}"
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                run_engine("postgresql", PG_ADMIN.rsplit("/", 1)[0] + "/" + name, n, workdir)
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()


if __name__ == "__main__":
    main()
