"""Web UI page times over a large ledger: the records page and a record page.

Fills a fresh ledger (SQLite file, or a throwaway PostgreSQL database with
``--engine postgresql``) with Runware-shaped records (bench_integrity's rows), serves
``seedledger ui`` on a loopback port with uvicorn in this process, and times real HTTP
requests with httpx, one at a time:

- ``ui.records_page``: ``/`` pages, newest first and deep in the keyset (``?before=``),
  plus filtered pages (``?scheduler=``, ``?seed_min=&seed_max=``); target p50 <= 100 ms.
  Baseline: the same store queries alone (``browse.record_page`` + ``fingerprinted_ids``
  with the same filter and cursor), p50.
- ``ui.record_page``: ``/records/ID`` for random ids; target p50 <= 50 ms. Baseline: the
  record row alone (``Ledger.get``), p50.

    .venv/bin/python bench/bench_ui.py [--smoke] [--rows N] [--pages K] [--engine sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_integrity import SCHEDULERS, fill, open_ledger  # the same rows as the integrity bench

from ledger.audit.store import fingerprinted_ids
from ledger.store import Ledger, RecordFilter, browse
from ledger.ui import UIConfig, create_app

RECORDS_TARGET_MS = 100.0
RECORD_TARGET_MS = 50.0


def emit(bench: str, figure: float, baseline: float, target: float, samples: int, **extra: Any) -> None:
    line = {
        "bench": bench,
        "figure": round(figure, 3),
        "unit": "ms p50",
        "baseline": round(baseline, 3),
        "baseline_name": extra.pop("baseline_name"),
        "ratio": round(figure / baseline, 3) if baseline else None,
        "target": f"<= {target:g} ms",
        "pass": figure <= target,
        "samples": samples,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        **extra,
    }
    print(json.dumps(line), flush=True)


def p50_ms(calls: list[Callable[[], Any]], repeat: int = 3) -> float:
    """Median wall time of every call, each run ``repeat`` times (the first warms caches)."""
    times = []
    for call in calls:
        for _ in range(repeat):
            started = time.perf_counter()
            call()
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


class Served:
    """The UI on an ephemeral loopback port, in a thread of this process."""

    def __init__(self, ledger: Ledger) -> None:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        app = create_app(UIConfig(), ledger=ledger)
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the UI did not start")
            time.sleep(0.01)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=20, help="Distinct pages timed per kind.")
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--smoke", action="store_true", help="2,000 rows, 6 pages (bench/run.py --smoke).")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.pages = 2000, 6
    rng = random.Random(7)
    with open_ledger(args.engine, default_json=False) as ledger:
        fill_s = fill(ledger, args.rows)
        print(f"filled {args.rows} rows in {fill_s:.1f} s", file=sys.stderr)
        if args.engine == "postgresql":
            with ledger.writing() as conn:
                conn.exec_driver_sql("ANALYZE")
        top = args.rows
        # (query string, filter, cursor): newest, deep keyset pages, filtered pages
        cases: list[tuple[dict[str, Any], RecordFilter, int | None]] = [({}, RecordFilter(), None)]
        for _ in range(args.pages - 1):
            before = rng.randint(100, top)
            kind = rng.randrange(3)
            if kind == 0:
                cases.append(({"before": before}, RecordFilter(), before))
            elif kind == 1:
                scheduler = rng.choice(SCHEDULERS)
                cases.append(
                    ({"scheduler": scheduler, "before": before}, RecordFilter(scheduler=scheduler), before)
                )
            else:
                low = rng.randrange(2**64 - 2**60)
                high = low + 2**60
                query = {"seed_min": str(low), "seed_max": str(high)}
                cases.append((query, RecordFilter(seed_min=low, seed_max=high), None))
        ids = [rng.randint(1, top) for _ in range(args.pages)]
        served = Served(ledger)
        try:
            with httpx.Client(base_url=served.url, timeout=60) as client:

                def get(path: str, params: dict[str, Any] | None = None) -> None:
                    response = client.get(path, params=params)
                    response.raise_for_status()

                def store_page(where: RecordFilter, before: int | None) -> None:
                    page = browse.record_page(ledger, where, before=before, limit=50)
                    fingerprinted_ids(ledger, [r.id for r in page.records])

                http_list = p50_ms([lambda q=q: get("/", q) for q, _, _ in cases])
                store_list = p50_ms([lambda w=w, b=b: store_page(w, b) for _, w, b in cases])
                emit(
                    f"ui.records_page.{args.engine}",
                    http_list,
                    store_list,
                    RECORDS_TARGET_MS,
                    len(cases),
                    baseline_name="browse.record_page + fingerprinted_ids (the store queries alone)",
                    rows=args.rows,
                )
                http_one = p50_ms([lambda i=i: get(f"/records/{i}") for i in ids])
                store_one = p50_ms([lambda i=i: ledger.get(i) for i in ids])
                emit(
                    f"ui.record_page.{args.engine}",
                    http_one,
                    store_one,
                    RECORD_TARGET_MS,
                    len(ids),
                    baseline_name="Ledger.get (the record row alone)",
                    rows=args.rows,
                    peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                )
        finally:
            served.close()


if __name__ == "__main__":
    main()
