"""Interrupt an audit run mid-way (SIGINT, SIGKILL) and resume it: every finished run
has exactly one result per selected record."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from sqlalchemy import func, select

from ledger.audit.store import get_run, list_runs, results_of
from ledger.backends.reference.server import ReferenceServer
from ledger.store import Ledger
from ledger.store.schema import audit_results, audit_run_records
from tests.cli import COMMAND, seedledger
from tests.test_audit import cli, image_request, make_originals

RECORDS = 24


def _results(ledger: Ledger) -> int:
    with ledger.reading() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_results)).scalar_one())


def _start(db: str, url: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEDLEDGER_")}
    return subprocess.Popen(
        [*COMMAND, "--db", db, "audit", "--backend-url", url, "--concurrency", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for_results(ledger: Ledger, proc: subprocess.Popen[str], at_least: int) -> None:
    deadline = time.monotonic() + 60
    while _results(ledger) < at_least:
        if proc.poll() is not None:
            _out, err = proc.communicate()
            pytest.fail(f"audit ended before it could be interrupted ({proc.returncode}): {err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("audit made no progress")
        time.sleep(0.05)


def _one_result_per_selected_record(ledger: Ledger, run_id: str) -> None:
    with ledger.reading() as conn:
        selected = sorted(
            r
            for (r,) in conn.execute(
                select(audit_run_records.c.record_id).where(audit_run_records.c.run_id == run_id)
            )
        )
        per_record = dict(
            conn.execute(
                select(audit_results.c.record_id, func.count())
                .where(audit_results.c.run_id == run_id)
                .group_by(audit_results.c.record_id)
            ).all()
        )
    assert len(selected) == RECORDS
    assert sorted(per_record) == selected
    assert set(per_record.values()) == {1}


@pytest.mark.parametrize("how", ["sigint", "sigkill"])
def test_interrupted_run_resumes_to_one_result_per_record(sqlite_url: str, how: str) -> None:
    ledger = Ledger.open(sqlite_url)
    with ReferenceServer.running(latency_ms=250) as server:
        make_originals(
            ledger, server.url, [image_request(seed=s, width=48, height=48) for s in range(1, RECORDS + 1)]
        )
        proc = _start(sqlite_url, server.url)
        _wait_for_results(ledger, proc, 4)
        if how == "sigint":
            proc.send_signal(signal.SIGINT)
        else:
            proc.kill()
        _out, err = proc.communicate(timeout=60)
        [run] = list_runs(ledger)
        done = _results(ledger)
        assert 4 <= done < RECORDS
        if how == "sigint":
            assert proc.returncode == 130, err
            assert f"--resume {run.id}" in err
            assert run.status == "interrupted"
            assert run.summary["pending"] == RECORDS - done
        else:
            assert proc.returncode == -signal.SIGKILL
            assert run.status == "running"  # nobody could mark it: resume still works

        resumed = seedledger("--db", sqlite_url, "--json", "audit", "--resume", run.id[:8])
        assert resumed.code == 0, resumed.err
        assert resumed.json()["status"] == "finished"

    final = get_run(ledger, run.id)
    assert final.status == "finished"
    assert final.summary["results"] == RECORDS and final.summary["pending"] == 0
    assert final.summary["outcomes"] == {"pass": RECORDS}
    assert final.summary["sessions"] == (2 if how == "sigint" else 1)
    _one_result_per_selected_record(ledger, run.id)
    assert len(results_of(ledger, run.id)) == RECORDS
    # A finished run is not resumed again.
    again = cli("--db", sqlite_url, "audit", "--resume", run.id)
    assert again.code == 2 and "already finished" in again.err
    ledger.close()
