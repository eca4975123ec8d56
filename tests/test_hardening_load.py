"""Load, small: the smoke variant of bench/bench_load.py as a CI test.

A real `seedledger proxy` subprocess in front of a real reference server subprocess,
30 concurrent clients for a few seconds, then SIGTERM (drain): every output a client
received is in the ledger exactly once, on SQLite and on PostgreSQL. Concurrent
writers (SQLite processes, PostgreSQL threads) racing on a shared batch lose nothing
and duplicate nothing. The full run (200 clients, 60 s, 8 and 32 writers) is
`.venv/bin/python bench/bench_load.py --engine both`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.bench_load import KEY, concurrent_writers, proxy_load, reference_server


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with reference_server() as url:
        yield url


def test_proxy_under_concurrent_clients_records_every_response_exactly_once(
    upstream: str, db_url: str, tmp_path: Path
) -> None:
    engine = "postgresql" if db_url.startswith("postgresql") else "sqlite"
    result = proxy_load(upstream, db_url, engine, clients=30, seconds=4.0, workdir=tmp_path)
    print(
        f"{engine}: requests served {result.requests}, records landed {result.records_landed}, "
        f"peak RSS {result.rss_peak >> 20} MiB (warm {result.rss_warm >> 20}, end {result.rss_end >> 20})"
    )
    assert result.requests >= 30 and result.errors == 0
    assert (result.missing, result.extra, result.duplicates) == (0, 0, 0)
    assert result.exactly_once and result.records_landed == result.outputs
    assert result.proxy_exit in (0, -15)
    assert not result.secret_in_stderr, KEY
    assert result.rss_peak > 0


def test_sqlite_writer_processes_lose_nothing(sqlite_url: str) -> None:
    result = concurrent_writers(sqlite_url, "sqlite", 4, 5, 5, processes=True)
    assert result.errors == ()
    assert (result.landed, result.distinct) == (result.expected, result.expected) == (4 * 25 + 10,) * 2


@pytest.mark.postgres
def test_postgresql_concurrent_writers_lose_nothing(pg_url: str) -> None:
    result = concurrent_writers(pg_url, "postgresql", 32, 3, 5, processes=False)
    assert result.errors == ()
    assert (result.landed, result.distinct) == (result.expected, result.expected) == (32 * 15 + 10,) * 2
