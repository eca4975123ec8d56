"""The SQL statements of a report's runtime-environment sections (the rest are in
``_queries``): the recorded environments of audited records, and the replays that
drifted, with the environment each was made in."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, func, select

from ledger.reports._queries import (
    _latest_per_record,
    _replay_environment,
    ar,
    environments_for,
    keyset_pages,
    r,
)
from ledger.store.filters import RecordFilter
from ledger.store.schema import audit_results, record_environments, records

DRIFT_VERDICTS = ("near-identical", "similar", "different")


def iter_audited_environments(conn: Connection, where: RecordFilter) -> Iterator[dict[str, Any]]:
    """The recorded environment of each audited selected record, in record-id order."""
    e = record_environments.c
    audited = select(ar.record_id).where(ar.record_id == e.record_id).exists()
    base = (
        select(e.record_id.label("record_id"), e.environment)
        .select_from(record_environments.join(records, r.id == e.record_id))
        .where(where.where(), audited)
    )
    for rows in keyset_pages(conn, base, e.record_id, "record_id"):
        yield from rows


def iter_drifted_replays(
    conn: Connection, where: RecordFilter, *, limit: int | None = None, environments: bool = True
) -> Iterator[dict[str, Any]]:
    """Latest results whose replay was not identical (near-identical, similar,
    different), with the replay's environment and its differences from the record's."""
    x = audit_results.alias("ar_newer_env")
    is_latest = ar.id == select(func.max(x.c.id + 0)).where(x.c.record_id == ar.record_id).scalar_subquery()
    base = (
        select(ar.id.label("result_id"), ar.record_id, ar.run_id, ar.verdict, ar.outcome, ar.replay)
        .select_from(audit_results.join(records, r.id == ar.record_id))
        .where((ar.verdict + "").in_(DRIFT_VERDICTS), is_latest, where.where())
    )
    for rows in keyset_pages(conn, base, ar.id, "result_id", limit=limit):
        envs = environments_for(conn, [row["record_id"] for row in rows]) if environments else {}
        for row in rows:
            row["environment"] = envs.get(row["record_id"])
            row["replay_environment"], row["environment_differences"] = _replay_environment(
                row.pop("replay", None)
            )
            yield row


def drifted_count(conn: Connection, where: RecordFilter) -> int:
    latest = _latest_per_record()
    stmt = (
        select(func.count())
        .select_from(
            records.join(latest, latest.c.record_id == r.id).join(audit_results, ar.id == latest.c.result_id)
        )
        .where(where.where(), ar.verdict.in_(DRIFT_VERDICTS))
    )
    return int(conn.execute(stmt).scalar_one())
