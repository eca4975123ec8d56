"""Web UI page times over a large ledger: the records page (every filter) and a record page.

Fills a fresh ledger (SQLite file, or a throwaway PostgreSQL database with
``--engine postgresql``, dropped after) with 1,000,000 records spread like a real
ledger (bench/ui_rows.py: several models, schedulers, tags, experiments, statuses and
modalities), serves ``seedledger ui`` on a loopback port with uvicorn in this process,
and times real HTTP requests with httpx, one at a time:

- ``ui.records_page``: unfiltered ``/`` pages, newest first and deep in the keyset
  (``?before=``); target p50 <= 100 ms.
- ``ui.filter.<case>``: one figure per filter the UI offers (model, scheduler, seed,
  seed_min, prompt, experiment, tag, status, modality, since), each with a very common
  and a rare value (and, for tags and experiments, one only old records carry: the
  hardest case for a newest-first page), first page plus pages deep in the keyset;
  target p50 <= 100 ms each. ``ui.records_page_filtered`` is the slowest of them.
- ``ui.record_page``: ``/records/ID`` for random ids; target p50 <= 50 ms.

Baselines, same run: the same store queries alone (``browse.record_page`` +
``fingerprinted_ids`` with the same filter and cursor; ``Ledger.get`` for a record).

    .venv/bin/python bench/bench_ui.py [--smoke] [--rows N] [--pages K]
        [--engine sqlite|postgresql] [--db URL] [--only CASE]
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

import ui_rows
from bench_integrity import open_ledger  # a fresh SQLite file or a throwaway PostgreSQL database

from ledger.audit.store import fingerprinted_ids
from ledger.store import Ledger, browse
from ledger.ui import UIConfig, create_app
from ledger.ui.views import record_filter

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


def filter_cases(filled: ui_rows.Filled) -> dict[str, dict[str, Any]]:
    """URL query per case: a very common and a rare value of every filter."""
    rows = filled.rows
    seed_top = 2**64 - 2**64 // 1000  # about 0.1 % of random seeds are above
    recent = ui_rows.BASE + ui_rows.STEP * int(rows * 0.995)
    old = ui_rows.BASE + ui_rows.STEP * int(rows * 0.1)
    cases: dict[str, dict[str, Any]] = {
        "model=common": {"model": ui_rows.MODELS[0][0]},
        "model=rare": {"model": ui_rows.MODELS[-1][0]},
        "model=pattern": {"model": "runware:*"},
        "scheduler=common": {"scheduler": ui_rows.SCHEDULERS[0][0]},
        "scheduler=rare": {"scheduler": "UniPC"},
        "seed": {"seed": str(filled.a_seed)},
        "seed_min=most": {"seed_min": "1000"},
        "seed_min=few": {"seed_min": str(seed_top)},
        "prompt=common": {"prompt": "lighthouse"},
        "prompt=rare": {"prompt": ui_rows.RARE_WORD},
        "tag=every": {"tag": ["bench"]},
        "tag=common": {"tag": ["client:acme"]},
        "tag=rare": {"tag": ["review"]},
        "tag=old": {"tag": ["legacy"]},
        "tag=two": {"tag": ["bench", "approved"]},
        "status=ok": {"status": "ok"},
        "status=failed": {"status": "failed"},
        "modality=image": {"modality": "image"},
        "modality=audio": {"modality": "audio"},
        "since=old": {"since": old.isoformat()},
        "since=recent": {"since": recent.isoformat()},
        "model+status": {"model": ui_rows.MODELS[1][0], "status": "failed"},
    }
    if filled.experiments:
        cases["experiment=newest"] = {"experiment": filled.experiments[-1]}
        cases["experiment=oldest"] = {"experiment": filled.experiments[0]}
    return cases


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


def measure(ledger: Ledger, filled: ui_rows.Filled, pages: int, engine: str, only: str | None) -> None:
    rng = random.Random(7)
    rows = filled.rows
    served = Served(ledger)
    extra = {"rows": rows}
    try:
        with httpx.Client(base_url=served.url, timeout=120) as client:

            def get(path: str, params: dict[str, Any] | None = None) -> None:
                response = client.get(path, params=params)
                response.raise_for_status()

            def store_page(query: dict[str, Any]) -> None:
                before = query.get("before")
                page = browse.record_page(
                    ledger, record_filter({k: v for k, v in query.items() if k != "before"}),
                    before=None if before is None else int(before), limit=UIConfig().page_size,
                )  # fmt: skip
                fingerprinted_ids(ledger, [r.id for r in page.records])

            def timed(name: str, queries: list[dict[str, Any]], baseline_name: str) -> float:
                http = p50_ms([lambda q=q: get("/", q) for q in queries])
                store = p50_ms([lambda q=q: store_page(q) for q in queries])
                emit(name, http, store, RECORDS_TARGET_MS, len(queries), baseline_name=baseline_name, **extra)
                return http

            # newest page, then pages deep in the keyset (?before=)
            befores = [rng.randint(100, rows) for _ in range(pages - 1)]
            store_name = "browse.record_page + fingerprinted_ids (the store queries alone)"
            if only is None:
                timed(f"ui.records_page.{engine}", [{}] + [{"before": b} for b in befores], store_name)
            worst = ("", 0.0)
            for case, query in filter_cases(filled).items():
                if only is not None and only not in case:
                    continue
                deep = [query | {"before": b} for b in befores[: max(1, pages // 2 - 1)]]
                figure = timed(f"ui.filter.{engine}.{case}", [query, *deep], store_name)
                worst = max(worst, (case, figure), key=lambda x: x[1])
            if only is not None:
                return
            print(f"slowest filter: {worst[0]} {worst[1]:.1f} ms", file=sys.stderr)
            ids = [rng.randint(1, rows) for _ in range(pages)]
            http_one = p50_ms([lambda i=i: get(f"/records/{i}") for i in ids])
            store_one = p50_ms([lambda i=i: ledger.get(i) for i in ids])
            emit(
                f"ui.record_page.{engine}",
                http_one,
                store_one,
                RECORD_TARGET_MS,
                len(ids),
                baseline_name="Ledger.get (the record row alone)",
                peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                **extra,
            )
    finally:
        served.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=10, help="Distinct pages timed per kind.")
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--only", help="Time only the filter cases whose name contains this.")
    parser.add_argument(
        "--db", help="Time a ledger filled by an earlier run of bench/ui_rows.fill (kept; --rows ignored)."
    )
    parser.add_argument("--smoke", action="store_true", help="2,000 rows, 6 pages (bench/run.py --smoke).")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.pages = 2000, 6
    if args.db:
        ledger = Ledger.open(args.db)
        try:
            filled = ui_rows.describe(ledger)
            print(f"timing {filled.rows} rows already in {args.db}", file=sys.stderr)
            measure(ledger, filled, args.pages, ledger.engine.dialect.name, args.only)
        finally:
            ledger.close()
        return
    with open_ledger(args.engine, default_json=False) as ledger:
        filled = ui_rows.fill(ledger, args.rows)
        print(f"filled {args.rows} rows in {filled.seconds:.1f} s", file=sys.stderr)
        if args.engine == "postgresql":
            with ledger.writing() as conn:
                conn.exec_driver_sql("ANALYZE")
        measure(ledger, filled, args.pages, args.engine, args.only)


if __name__ == "__main__":
    main()
