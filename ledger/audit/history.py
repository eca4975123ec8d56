"""Reading audit results for browsing and for `seedledger show`: one record's history
across runs, a keyset page of one run's results filtered by outcome (the web UI's
queries), and a record's place in the log.

``audit_history`` lists every audit result of the record with its run, oldest first, so
a later pass never hides an earlier failure. ``log_position`` says whether the record is
sealed and whether the newest signed checkpoint covers it (then `seedledger prove ID`
gives its proof).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, select

from ledger.audit.store import AuditResult, _result_from
from ledger.core.warnings import CATALOG
from ledger.integrity import RECORD
from ledger.integrity.seal import latest_checkpoint
from ledger.store import Ledger
from ledger.store.schema import audit_results, audit_runs, log_entries

__all__ = ["AuditEntry", "LogPosition", "audit_history", "log_position", "record_history", "result_by_id",
           "results_page"]  # fmt: skip


def _result(m: Mapping[str, Any] | RowMapping) -> AuditResult:
    """As the audit store reads a row, but tolerant of warnings stored as bare codes
    (older writers, hand-made rows) and of codes the catalog no longer knows: a page
    shows what is stored rather than failing on it."""
    warnings = []
    for w in m["warnings"] or []:
        item = {"code": w} if isinstance(w, str) else w
        if isinstance(item, Mapping) and item.get("code") in CATALOG:
            warnings.append(item)
    return _result_from({**m, "warnings": warnings})


def record_history(ledger: Ledger, record_id: int, *, limit: int = 100) -> list[AuditResult]:
    """The record's audit results, newest first (indexed on record_id)."""
    c = audit_results.c
    stmt = select(audit_results).where(c.record_id == record_id).order_by(c.id.desc()).limit(limit)
    with ledger.reading() as conn:
        return [_result(row._mapping) for row in conn.execute(stmt)]


def result_by_id(ledger: Ledger, result_id: int) -> AuditResult | None:
    with ledger.reading() as conn:
        row = conn.execute(select(audit_results).where(audit_results.c.id == result_id)).first()
    return None if row is None else _result(row._mapping)


def results_page(
    ledger: Ledger,
    run_id: str,
    *,
    outcomes: tuple[str, ...] = (),
    after: int | None = None,
    limit: int = 100,
) -> tuple[list[AuditResult], int | None]:
    """Results of ``run_id`` in record order with record_id > ``after``; the cursor of
    the next page (None: last). ``outcomes`` narrows to those outcomes."""
    c = audit_results.c
    stmt = select(audit_results).where(c.run_id == run_id)
    if outcomes:
        stmt = stmt.where(c.outcome.in_(outcomes))
    if after is not None:
        stmt = stmt.where(c.record_id > after)
    stmt = stmt.order_by(c.record_id).limit(limit + 1)
    with ledger.reading() as conn:
        rows = [_result(row._mapping) for row in conn.execute(stmt)]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].record_id if more and rows else None)


@dataclass(frozen=True)
class AuditEntry:
    """One audit result of a record, with the run it belongs to."""

    run_id: str
    run_created_at: datetime
    backend: str | None
    verdict: str
    outcome: str
    error_code: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LogPosition:
    """Where a record sits in the Merkle log (None: not sealed yet)."""

    leaf_index: int | None
    sealed_at: datetime | None
    #: Size of the newest signed checkpoint (None: nothing sealed in this ledger).
    checkpoint_size: int | None

    @property
    def in_checkpoint(self) -> bool:
        """The newest checkpoint covers the record: an inclusion proof exists."""
        return (
            self.leaf_index is not None
            and self.checkpoint_size is not None
            and (self.leaf_index < self.checkpoint_size)
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "in_checkpoint": self.in_checkpoint}


def audit_history(ledger: Ledger, record_id: int) -> list[AuditEntry]:
    """Every audit result of ``record_id``, oldest run first."""
    query = (
        select(
            audit_runs.c.id,
            audit_runs.c.created_at,
            audit_runs.c.backend,
            audit_results.c.verdict,
            audit_results.c.outcome,
            audit_results.c.error_code,
        )
        .join(audit_runs, audit_runs.c.id == audit_results.c.run_id)
        .where(audit_results.c.record_id == record_id)
        .order_by(audit_runs.c.created_at, audit_results.c.id)
    )
    with ledger.reading() as conn:
        return [AuditEntry(*row) for row in conn.execute(query)]


def log_position(ledger: Ledger, record_id: int) -> LogPosition:
    with ledger.reading() as conn:
        row = conn.execute(
            select(log_entries.c.leaf_index, log_entries.c.sealed_at).where(
                log_entries.c.entry_type == RECORD.name, log_entries.c.entry_id == record_id
            )
        ).first()
        checkpoint = latest_checkpoint(conn)
    return LogPosition(
        leaf_index=int(row.leaf_index) if row is not None else None,
        sealed_at=row.sealed_at if row is not None else None,
        checkpoint_size=checkpoint.size if checkpoint is not None else None,
    )
