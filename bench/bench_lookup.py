"""Reverse lookup at Hamming radius 8 over 1,000,000 stored fingerprints.

Stores synthetic fingerprints (phash-like: 32 of 64 bits set, top bit set as the DCT's
DC term always is) plus a few hundred real ones (reference-backend outputs and the
calibration photos) in a fresh SQLite file and a fresh PostgreSQL database, with the
same record ids on both. Then, for each query image, times ``Ledger.find_image(fp, 8)``
(exact pixel hash, multi-index chunk probes, exact re-check, full comparison of every
match) and, on a subset, the same lookup by full scan. Checks that the indexed search
returns exactly what the full scan returns, and the same matches on both engines.

    .venv/bin/python bench/bench_lookup.py [--smoke] [--rows N] [--pg-url URL]

Prints one JSON line per engine (target: p50 <= 20 ms) and one for result agreement.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger.fingerprint import Fingerprint, fingerprint_bytes
from ledger.store import Ledger, migrate
from ledger.store import engine as engines
from ledger.store import fingerprints as fp_store
from ledger.store.schema import fingerprints as fingerprints_table

RADIUS = 8
TARGET_MS = 20.0
CALIBRATION = Path(__file__).resolve().parents[2] / "shared" / "calibration"
PG_ADMIN = os.environ.get("SEEDLEDGER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CREATED = "2026-01-01 00:00:00.000000"

_FP_COLUMNS = (
    "record_id, version, media_type, file_sha256, pixel_sha256, width, height, phash, dhash, "
    "phash_c0, phash_c1, phash_c2, phash_c3, thumbnail, created_at"
)
_REC_COLUMNS = (
    "id, idempotency_key, backend, task_type, modality, model, seed_origin, params, response, "
    "output_index, source, tags, status, created_at, recorded_at"
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- data --------------------------------------------------------------------------------


def synthetic_phashes(n: int, seed: int = 1) -> np.ndarray:
    """n phash-like uint64 values: the top bit set and 31 of the other 63 bits."""
    rng = np.random.default_rng(seed)
    out = np.empty(n, dtype=np.uint64)
    weights = (np.uint64(1) << np.arange(62, -1, -1, dtype=np.uint64)).astype(np.uint64)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        order = np.argpartition(rng.random((m, 63)), 31, axis=1)[:, :31]
        bits = np.zeros((m, 63), dtype=bool)
        np.put_along_axis(bits, order, True, axis=1)
        values = (bits.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
        out[start : start + m] = values | (np.uint64(1) << np.uint64(63))
    return out


def real_fingerprints(count: int) -> tuple[list[Fingerprint], list[Fingerprint]]:
    """(stored, queries): reference-backend images and calibration photos, stored;
    queries are lossy copies and stochastic replays of some of them (not stored)."""
    from ledger.backends.reference.generator import ImageRequest, ReferenceGenerator

    gen = ReferenceGenerator()
    stored: list[Fingerprint] = []
    queries: list[Fingerprint] = []
    for path in sorted(CALIBRATION.glob("*.png")):
        data = path.read_bytes()
        stored.append(fingerprint_bytes(data))
        with Image.open(io.BytesIO(data)) as im:
            out = io.BytesIO()
            im.convert("RGB").save(out, format="JPEG", quality=85)
        queries.append(fingerprint_bytes(out.getvalue()))
    seed = 0
    while len(stored) < count:
        seed += 1
        scheduler = "Euler a" if seed % 3 == 0 else "DPM++ 2M Karras"
        req = ImageRequest(
            model="runware:101@1",
            prompt=f"prompt {seed % 7}",
            seed=seed,
            width=256,
            height=256,
            scheduler=scheduler,
        )
        stored.append(fingerprint_bytes(gen.image(req).data))
        if seed % 3 == 0:  # a stochastic replay: similar, not identical
            queries.append(fingerprint_bytes(gen.image(req).data))
        elif seed % 3 == 1:  # a JPEG copy of the same output
            queries.append(fingerprint_bytes(gen.image(dataclasses.replace(req, output_format="JPG")).data))
    return stored, queries


def _thumb() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (48, 48), (90, 90, 90)).save(out, format="PNG")
    return out.getvalue()


def fingerprint_rows(synthetic: np.ndarray, real: list[Fingerprint]) -> Iterator[tuple[Any, ...]]:
    """Rows in _FP_COLUMNS order; record ids 1..N, real ones spread through the range."""
    thumb = _thumb()
    n = len(synthetic) + len(real)
    real_at = {int(i): fp for i, fp in zip(np.linspace(1, n, len(real), dtype=np.int64), real, strict=True)}
    s = 0
    for rid in range(1, n + 1):
        fp = real_at.get(rid)
        if fp is None:
            phash = int(synthetic[s])
            s += 1
            fp_tuple = (
                "bench-synthetic",
                "image/png",
                f"{rid:064x}",
                f"{rid:064x}",
                64,
                64,
                phash,
                phash,
                thumb,
            )
        else:
            fp_tuple = (
                fp.version,
                fp.media_type,
                fp.file_sha256,
                fp.pixel_sha256,
                fp.width,
                fp.height,
                fp.phash,
                fp.dhash,
                fp.thumbnail,
            )
        version, media, fsha, psha, w, h, phash, dhash, thumbnail = fp_tuple
        c0, c1, c2, c3 = (
            (phash >> 48) & 0xFFFF,
            (phash >> 32) & 0xFFFF,
            (phash >> 16) & 0xFFFF,
            phash & 0xFFFF,
        )
        yield (
            rid,
            version,
            media,
            fsha,
            psha,
            w,
            h,
            fp_store.to_signed(phash),
            fp_store.to_signed(dhash),
            c0,
            c1,
            c2,
            c3,
            thumbnail,
            CREATED,
        )


def record_rows(n: int) -> Iterator[tuple[Any, ...]]:
    for rid in range(1, n + 1):
        yield (
            rid,
            f"bench:{rid}",
            "reference",
            "imageInference",
            "image",
            "runware:101@1",
            "unknown",
            "{}",
            "{}",
            0,
            "api",
            "[]",
            "ok",
            CREATED,
            CREATED,
        )


# -- loading -----------------------------------------------------------------------------


def load_sqlite(url: str, synthetic: np.ndarray, real: list[Fingerprint]) -> None:
    engine = engines.create(url)
    n = len(synthetic) + len(real)
    # Bulk load without the fingerprint indexes, then build them (same names and
    # columns, from the schema): minutes faster than maintaining them row by row.
    indexes = list(fingerprints_table.indexes)
    with engine.begin() as conn:
        for index in indexes:
            index.drop(conn)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("BEGIN")
        cur.executemany(f"INSERT INTO records ({_REC_COLUMNS}) VALUES ({','.join('?' * 15)})", record_rows(n))
        cur.executemany(
            f"INSERT INTO fingerprints ({_FP_COLUMNS}) VALUES ({','.join('?' * 15)})",
            fingerprint_rows(synthetic, real),
        )
        cur.execute("COMMIT")
        raw.commit()
    finally:
        raw.close()
    with engine.begin() as conn:
        for index in indexes:
            index.create(conn)
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()


def load_postgres(url: str, synthetic: np.ndarray, real: list[Fingerprint]) -> None:
    engine = engines.create(url)
    n = len(synthetic) + len(real)
    indexes = list(fingerprints_table.indexes)
    with engine.begin() as conn:
        for index in indexes:
            index.drop(conn)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy(f"COPY records ({_REC_COLUMNS}) FROM STDIN") as copy:
            for row in record_rows(n):
                copy.write_row(row)
        with cur.copy(f"COPY fingerprints ({_FP_COLUMNS}) FROM STDIN") as copy:
            for row in fingerprint_rows(synthetic, real):
                copy.write_row(row)
        raw.commit()
    finally:
        raw.close()
    with engine.begin() as conn:
        for index in indexes:
            index.create(conn)
    # VACUUM sets the visibility map so chunk probes are index-only scans (what
    # autovacuum does on a live database); ANALYZE gives the planner statistics.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE records"))
        conn.execute(text("VACUUM ANALYZE fingerprints"))
    engine.dispose()


# -- measuring ---------------------------------------------------------------------------


def signature(matches: list[fp_store.Match]) -> list[tuple[int, str, int]]:
    return [(m.record_id, str(m.verdict), m.comparison.phash_distance) for m in matches]


def full_scan_lookup(ledger: Ledger, fp: Fingerprint) -> list[fp_store.Match]:
    """The same lookup answered by reading every row (the baseline)."""
    with ledger.reading() as conn:
        ids = set(fp_store.with_pixel_hash(conn, fp.pixel_sha256))
        ids |= set(fp_store.within_radius_full_scan(conn, fp.phash, RADIUS))
        stored = fp_store.get_many(conn, ids)
    from ledger.fingerprint import compare

    return sorted(
        (fp_store.Match(rid, compare(fp, other)) for rid, other in stored.items()),
        key=fp_store.Match.sort_key,
    )


def measure(url: str, queries: list[Fingerprint], scan_queries: int) -> dict[str, Any]:
    with Ledger.open(url) as ledger:
        for fp in queries[:5]:  # warm the cache and the connection pool
            ledger.find_image(fp, RADIUS)
        times, results = [], []
        for fp in queries:
            t0 = time.perf_counter()
            matches = ledger.find_image(fp, RADIUS)
            times.append(time.perf_counter() - t0)
            results.append(signature(matches))
        scan_times, agree = [], True
        for i, fp in enumerate(queries[:scan_queries]):
            t0 = time.perf_counter()
            scanned = full_scan_lookup(ledger, fp)
            scan_times.append(time.perf_counter() - t0)
            agree = agree and signature(scanned) == results[i]
    return {
        "p50_ms": statistics.median(times) * 1000,
        "p95_ms": float(np.percentile(times, 95)) * 1000,
        "scan_p50_ms": statistics.median(scan_times) * 1000,
        "results": results,
        "agrees_with_scan": agree,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="20,000 rows, fewer queries")
    parser.add_argument("--rows", type=int, help="total stored fingerprints (default 1,000,000)")
    parser.add_argument("--pg-url", default=PG_ADMIN, help="PostgreSQL server (admin database) URL")
    args = parser.parse_args(argv)
    rows = args.rows or (20_000 if args.smoke else 1_000_000)
    n_real = 60 if args.smoke else 300
    scan_queries = 3 if args.smoke else 10

    t0 = time.perf_counter()
    real, lossy = real_fingerprints(n_real)
    synthetic = synthetic_phashes(rows - len(real))
    rng = np.random.default_rng(2)
    # Queries: stored real outputs, their lossy copies and replays, and random phash-like
    # values near stored synthetic ones (a few bits flipped) or anywhere.
    probe = [
        dataclasses.replace(real[0], phash=int(v), pixel_sha256=f"q{i}")
        for i, v in enumerate(synthetic_phashes(50, seed=3))
    ]
    near = []
    for i, v in enumerate(synthetic[rng.choice(len(synthetic), 50, replace=False)]):
        flipped = int(v)
        for b in rng.choice(64, int(rng.integers(0, 9)), replace=False):
            flipped ^= 1 << int(b)
        near.append(dataclasses.replace(real[0], phash=flipped, pixel_sha256=f"n{i}"))
    queries = real[: (25 if args.smoke else 100)] + lossy[: (25 if args.smoke else 100)] + near + probe
    order = rng.permutation(len(queries))
    queries = [queries[i] for i in order]
    took = time.perf_counter() - t0
    log(f"prepared {rows} fingerprints ({len(real)} real) and {len(queries)} queries in {took:.1f}s")

    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        Ledger.open(sqlite_url).close()  # creates the schema at head
        t0 = time.perf_counter()
        load_sqlite(sqlite_url, synthetic, real)
        log(f"sqlite: loaded in {time.perf_counter() - t0:.1f}s")
        out["sqlite"] = measure(sqlite_url, queries, scan_queries)

    admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
    name = f"sl_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        pg_url = args.pg_url.rsplit("/", 1)[0] + "/" + name
        engine = engines.create(pg_url)
        migrate.upgrade(engine)
        engine.dispose()
        t0 = time.perf_counter()
        load_postgres(pg_url, synthetic, real)
        log(f"postgresql: loaded in {time.perf_counter() - t0:.1f}s")
        out["postgresql"] = measure(pg_url, queries, scan_queries)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    for dialect, m in out.items():
        print(
            json.dumps(
                {
                    "bench": f"lookup_radius{RADIUS}_{dialect}",
                    "figure": round(m["p50_ms"], 3),
                    "unit": "ms p50 per find_image",
                    "baseline": round(m["scan_p50_ms"], 3),
                    "baseline_name": f"same lookup by full scan of all {rows} rows (p50 of {scan_queries})",
                    "ratio": round(m["p50_ms"] / m["scan_p50_ms"], 4),
                    "target": f"p50 <= {TARGET_MS} ms",
                    "pass": m["p50_ms"] <= TARGET_MS,
                    "p95_ms": round(m["p95_ms"], 3),
                    "rows": rows,
                    "queries": len(queries),
                    "matches_total": sum(len(r) for r in m["results"]),
                    "agrees_with_full_scan": m["agrees_with_scan"],
                }
            )
        )
    same = out["sqlite"]["results"] == out["postgresql"]["results"]
    print(
        json.dumps(
            {
                "bench": "lookup_results_agree",
                "figure": int(same and all(m["agrees_with_scan"] for m in out.values())),
                "unit": "1 if SQLite == PostgreSQL == full scan",
                "baseline": 1,
                "baseline_name": "full scan on each engine",
                "ratio": 1.0 if same else 0.0,
                "target": "identical result sets",
                "pass": bool(same and all(m["agrees_with_scan"] for m in out.values())),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
