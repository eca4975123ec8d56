"""Audit history in reports: which runs a report aggregates, and the records whose
latest result is not a failure after an earlier run failed them (listed, never erased).

The latest result of a record is the one with the highest id (``_queries``); its
latest failing result likewise.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from ledger.reports._queries import _latest_per_record, _time, ar, keyset_pages, r
from ledger.store.filters import RecordFilter
from ledger.store.schema import audit_results, audit_runs, records


def audit_run_list(conn: Connection, where: RecordFilter) -> list[dict[str, Any]]:
    """Every run holding results for the selection, oldest first, with how many."""
    per_run = (
        select(ar.run_id.label("run_id"), func.count().label("results"))
        .join(records, r.id == ar.record_id)
        .where(where.where())
        .group_by(ar.run_id)
        .subquery("per_run")
    )
    rc = audit_runs.c
    stmt = (
        select(
            rc.id,
            rc.created_at,
            rc.finished_at,
            rc.status,
            rc.backend,
            rc.policy,
            rc.selected_count,
            per_run.c.results,
        )
        .join(per_run, per_run.c.run_id == rc.id)
        .order_by(rc.created_at, rc.id)
    )
    return [dict(row._mapping) for row in conn.execute(stmt)]


_failed_r = audit_results.alias("failed_result")
_latest_r = audit_results.alias("latest_result")


def _earlier_failures(where: RecordFilter) -> Any:
    """Selected records whose latest result is not a failure while an earlier one is:
    the latest failing result and the latest result of each."""
    fails = (
        select(ar.record_id.label("record_id"), func.max(ar.id).label("fail_id"))
        .where(ar.outcome == "fail")
        .group_by(ar.record_id)
        .subquery("fails")
    )
    latest = _latest_per_record()
    f, lr = _failed_r.c, _latest_r.c
    return (
        select(
            r.id.label("record_id"),
            f.run_id.label("failed_run_id"),
            _time(f.created_at, "failed_at"),
            lr.run_id.label("latest_run_id"),
            _time(lr.created_at, "latest_at"),
            lr.outcome.label("latest_outcome"),
            lr.verdict.label("latest_verdict"),
        )
        .select_from(
            records.join(latest, latest.c.record_id == r.id)
            .join(_latest_r, lr.id == latest.c.result_id)
            .join(fails, fails.c.record_id == r.id)
            .join(_failed_r, f.id == fails.c.fail_id)
        )
        .where(where.where(), lr.outcome != "fail")
    )


def earlier_failure_count(conn: Connection, where: RecordFilter) -> int:
    sub = _earlier_failures(where).subquery()
    return int(conn.execute(select(func.count()).select_from(sub)).scalar_one())


def iter_earlier_failures(
    conn: Connection, where: RecordFilter, *, limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """:func:`_earlier_failures` in record-id order, keyset-paged."""
    for page in keyset_pages(conn, _earlier_failures(where), r.id, "record_id", limit=limit):
        yield from page


def latest_failures_for(conn: Connection, ids: Sequence[int]) -> dict[int, tuple[str, datetime]]:
    """(run id, time) of the latest failing result of each record in ``ids`` that has one."""
    if not ids:
        return {}
    fail_ids = (
        select(func.max(ar.id)).where(ar.record_id.in_(ids), ar.outcome == "fail").group_by(ar.record_id)
    )
    rows = conn.execute(
        select(ar.record_id, ar.run_id, _time(ar.created_at, "at")).where(ar.id.in_(fail_ids))
    )
    return {int(rid): (run_id, at) for rid, run_id, at in rows}
