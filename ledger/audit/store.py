"""Audit runs, results and record warnings in the database.

The tables (``ledger.store.schema``): ``audit_runs`` (one per run), ``audit_run_records``
(the selection, fixed when the run starts), ``audit_results`` (one per run and record,
``UNIQUE(run_id, record_id)``, each committed on its own as it completes) and
``record_warnings`` (the current warnings of each record). Everything here returns
frozen dataclasses, never live rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, delete, func, insert, null, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ledger.core.records import utcnow
from ledger.core.warnings import RecordWarning
from ledger.errors import NotFoundError, UsageError
from ledger.fingerprint import Fingerprint
from ledger.store import Ledger
from ledger.store import fingerprints as fingerprint_store
from ledger.store.schema import audit_results, audit_run_records, audit_runs, fingerprints, record_warnings

__all__ = [
    "AuditResult",
    "AuditRun",
    "create_run",
    "fingerprinted_ids",
    "finish_run",
    "get_run",
    "insert_result",
    "list_runs",
    "load_fingerprints",
    "pending_record_ids",
    "result_counts",
    "results_of",
    "set_run_status",
    "store_record_warnings",
]

_CHUNK = 500

RUNNING = "running"
FINISHED = "finished"
INTERRUPTED = "interrupted"


@dataclass(frozen=True, kw_only=True)
class AuditRun:
    id: str
    created_at: datetime
    finished_at: datetime | None
    status: str
    backend: str | None
    backend_url: str | None
    selection: Mapping[str, Any]
    policy: Mapping[str, Any]
    options: Mapping[str, Any]
    selected_count: int
    summary: Mapping[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "status": self.status,
            "backend": self.backend,
            "backend_url": self.backend_url,
            "selected_count": self.selected_count,
            "selection": dict(self.selection),
            "policy": dict(self.policy),
            "options": dict(self.options),
            "summary": dict(self.summary) if self.summary is not None else None,
        }


@dataclass(frozen=True, kw_only=True)
class AuditResult:
    """One record's result in one run. ``id`` is 0 until stored."""

    run_id: str
    record_id: int
    verdict: str
    outcome: str
    warnings: tuple[RecordWarning, ...] = ()
    distances: Mapping[str, Any] | None = None
    replay: Mapping[str, Any] | None = None
    replay_thumbnail: bytes | None = field(default=None, repr=False)
    replay_pixel_sha256: str | None = None
    error_code: str | None = None
    error: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    id: int = 0

    @property
    def warning_codes(self) -> tuple[str, ...]:
        return tuple(w.code for w in self.warnings)

    def to_dict(self, *, thumbnail: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "run_id": self.run_id,
            "record_id": self.record_id,
            "verdict": self.verdict,
            "outcome": self.outcome,
            "warnings": [w.to_dict() for w in self.warnings],
            "distances": dict(self.distances) if self.distances is not None else None,
            "replay": _shown_replay(self.replay, thumbnail),
            "replay_pixel_sha256": self.replay_pixel_sha256,
            "error_code": self.error_code,
            "error": self.error,
            "created_at": self.created_at,
        }
        if thumbnail:
            data["replay_thumbnail_png"] = self.replay_thumbnail.hex() if self.replay_thumbnail else None
        return data


def _shown_replay(replay: Mapping[str, Any] | None, thumbnail: bool) -> dict[str, Any] | None:
    """The replay facts; a video replay's frame strip (base64 PNG) only with the thumbnails."""
    if replay is None:
        return None
    return {k: v for k, v in replay.items() if thumbnail or k != "frame_strip_png"}


# -- runs ------------------------------------------------------------------------------


def create_run(
    ledger: Ledger,
    record_ids: Sequence[int],
    *,
    selection: Mapping[str, Any],
    policy: Mapping[str, Any],
    options: Mapping[str, Any],
    backend: str | None,
    backend_url: str | None,
    summary: Mapping[str, Any] | None = None,
) -> AuditRun:
    """Store a new running run and its selection in one transaction."""
    run_id = str(uuid.uuid4())
    now = utcnow()
    row = {
        "id": run_id,
        "created_at": now,
        "finished_at": None,
        "status": RUNNING,
        "backend": backend,
        "backend_url": backend_url,
        "selection": dict(selection),
        "policy": dict(policy),
        "options": dict(options),
        "selected_count": len(record_ids),
        "summary": dict(summary) if summary is not None else null(),
    }
    with ledger.writing() as conn:
        conn.execute(insert(audit_runs).values(**row))
        members = [{"run_id": run_id, "record_id": rid} for rid in dict.fromkeys(record_ids)]
        for start in range(0, len(members), _CHUNK):
            conn.execute(insert(audit_run_records), members[start : start + _CHUNK])
    return _run_from(row)


def _run_from(m: Mapping[str, Any] | RowMapping) -> AuditRun:
    return AuditRun(
        id=m["id"],
        created_at=m["created_at"],
        finished_at=m["finished_at"],
        status=m["status"],
        backend=m["backend"],
        backend_url=m["backend_url"],
        selection=m["selection"] or {},
        policy=m["policy"] or {},
        options=m["options"] or {},
        selected_count=int(m["selected_count"]),
        summary=m["summary"],
    )


def get_run(ledger: Ledger, run_id: str) -> AuditRun:
    """The run ``run_id``; a unique prefix of at least 6 characters also works."""
    with ledger.reading() as conn:
        row = conn.execute(select(audit_runs).where(audit_runs.c.id == run_id)).first()
        if row is None and len(run_id) >= 6:
            escaped = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            rows = conn.execute(
                select(audit_runs).where(audit_runs.c.id.like(escaped + "%", escape="\\")).limit(2)
            ).all()
            if len(rows) > 1:
                raise UsageError(f"audit run prefix {run_id!r} is ambiguous; give more characters")
            row = rows[0] if rows else None
    if row is None:
        raise NotFoundError(f"no audit run {run_id!r} (see `seedledger audit list`)")
    return _run_from(row._mapping)


def list_runs(ledger: Ledger, *, limit: int | None = 50) -> list[AuditRun]:
    stmt = select(audit_runs).order_by(audit_runs.c.created_at.desc(), audit_runs.c.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    with ledger.reading() as conn:
        return [_run_from(row._mapping) for row in conn.execute(stmt)]


def set_run_status(ledger: Ledger, run_id: str, status: str) -> None:
    with ledger.writing() as conn:
        conn.execute(
            update(audit_runs).where(audit_runs.c.id == run_id).values(status=status, finished_at=None)
        )


def finish_run(ledger: Ledger, run_id: str, *, status: str, summary: Mapping[str, Any]) -> AuditRun:
    with ledger.writing() as conn:
        conn.execute(
            update(audit_runs)
            .where(audit_runs.c.id == run_id)
            .values(
                status=status, summary=dict(summary), finished_at=utcnow() if status == FINISHED else None
            )
        )
    return get_run(ledger, run_id)


def pending_record_ids(ledger: Ledger, run_id: str) -> list[int]:
    """The run's selected records that have no result yet, in id order."""
    done = select(audit_results.c.record_id).where(audit_results.c.run_id == run_id)
    stmt = (
        select(audit_run_records.c.record_id)
        .where(audit_run_records.c.run_id == run_id, audit_run_records.c.record_id.not_in(done))
        .order_by(audit_run_records.c.record_id)
    )
    with ledger.reading() as conn:
        return [int(r) for (r,) in conn.execute(stmt)]


# -- results ---------------------------------------------------------------------------


def _insert_ignoring(ledger: Ledger, table: Any) -> Any:
    if ledger.dialect == "postgresql":
        return pg_insert(table).on_conflict_do_nothing()
    return sqlite_insert(table).on_conflict_do_nothing()


def insert_result(ledger: Ledger, result: AuditResult, *, conn: Connection | None = None) -> bool:
    """Store one result; False when the run already has a result for that record
    (a retried or resumed replay is never counted twice)."""
    if conn is None:
        with ledger.writing() as own:
            return insert_result(ledger, result, conn=own)
    row = {
        "run_id": result.run_id,
        "record_id": result.record_id,
        "verdict": result.verdict,
        "outcome": result.outcome,
        "warnings": [w.to_dict() for w in result.warnings],
        # SQL NULL, not JSON null, so `IS NULL` finds results without a replay.
        "distances": dict(result.distances) if result.distances is not None else null(),
        "replay": dict(result.replay) if result.replay is not None else null(),
        "replay_thumbnail": result.replay_thumbnail,
        "replay_pixel_sha256": result.replay_pixel_sha256,
        "error_code": result.error_code,
        "error": result.error,
        "created_at": result.created_at,
    }
    done = conn.execute(_insert_ignoring(ledger, audit_results).values(**row))
    return bool(done.rowcount)


def _result_from(m: Mapping[str, Any] | RowMapping) -> AuditResult:
    return AuditResult(
        id=int(m["id"]),
        run_id=m["run_id"],
        record_id=int(m["record_id"]),
        verdict=m["verdict"],
        outcome=m["outcome"],
        warnings=tuple(RecordWarning.from_dict(w) for w in (m["warnings"] or [])),
        distances=m["distances"],
        replay=m["replay"],
        replay_thumbnail=m["replay_thumbnail"],
        replay_pixel_sha256=m["replay_pixel_sha256"],
        error_code=m["error_code"],
        error=m["error"],
        created_at=m["created_at"],
    )


def results_of(ledger: Ledger, run_id: str) -> list[AuditResult]:
    stmt = select(audit_results).where(audit_results.c.run_id == run_id).order_by(audit_results.c.record_id)
    with ledger.reading() as conn:
        return [_result_from(row._mapping) for row in conn.execute(stmt)]


def result_counts(ledger: Ledger, run_id: str) -> dict[str, Any]:
    """Counts by outcome and verdict, and the replay cost, aggregated in SQL."""
    c = audit_results.c
    with ledger.reading() as conn:
        outcomes: dict[str, int] = dict(
            conn.execute(select(c.outcome, func.count()).where(c.run_id == run_id).group_by(c.outcome)).all()
        )
        verdicts: dict[str, int] = dict(
            conn.execute(select(c.verdict, func.count()).where(c.run_id == run_id).group_by(c.verdict)).all()
        )
        replays = [
            r for (r,) in conn.execute(select(c.replay).where(c.run_id == run_id, c.replay.is_not(None)))
        ]
    costs: list[float] = [
        r["cost"] for r in replays if isinstance(r, Mapping) and isinstance(r.get("cost"), int | float)
    ]
    return {
        "results": int(sum(outcomes.values())),
        "outcomes": {k: int(v) for k, v in sorted(outcomes.items())},
        "verdicts": {k: int(v) for k, v in sorted(verdicts.items())},
        "replays": len(replays),
        "cost": round(sum(costs), 6) if costs else None,
    }


# -- record warnings -------------------------------------------------------------------


def store_record_warnings(
    ledger: Ledger, items: Iterable[tuple[int, Sequence[RecordWarning]]], *, conn: Connection | None = None
) -> int:
    """Replace the stored warnings of each record with ``warnings``; return rows written."""
    items = list(items)
    if conn is None:
        with ledger.writing() as own:
            return store_record_warnings(ledger, items, conn=own)
    now = utcnow()
    ids = [rid for rid, _ in items]
    for start in range(0, len(ids), _CHUNK):
        conn.execute(
            delete(record_warnings).where(record_warnings.c.record_id.in_(ids[start : start + _CHUNK]))
        )
    rows = [
        {"record_id": rid, "code": w.code, "severity": str(w.severity), "detail": w.detail, "checked_at": now}
        for rid, warnings in items
        for w in {w.code: w for w in warnings}.values()
    ]
    # Ignoring duplicates: a concurrent check of the same record wrote the same codes.
    statement = _insert_ignoring(ledger, record_warnings)
    for start in range(0, len(rows), _CHUNK):
        conn.execute(statement, rows[start : start + _CHUNK])
    return len(rows)


def load_fingerprints(ledger: Ledger, record_ids: Iterable[int]) -> dict[int, Fingerprint]:
    ids = list(record_ids)
    out: dict[int, Fingerprint] = {}
    with ledger.reading() as conn:
        for start in range(0, len(ids), _CHUNK):
            out.update(fingerprint_store.get_many(conn, ids[start : start + _CHUNK]))
    return out


def fingerprinted_ids(ledger: Ledger, record_ids: Iterable[int]) -> set[int]:
    """Which of ``record_ids`` have a stored fingerprint (without loading them)."""
    ids = list(record_ids)
    found: set[int] = set()
    rid = fingerprints.c.record_id
    with ledger.reading() as conn:
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            found.update(int(r) for (r,) in conn.execute(select(rid).where(rid.in_(chunk))))
    return found
