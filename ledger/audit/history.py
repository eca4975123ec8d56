"""Reading audit results for browsing: one record's history across runs, and a
keyset page of one run's results filtered by outcome (the web UI's queries)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from ledger.audit.store import AuditResult, _result_from
from ledger.core.warnings import CATALOG
from ledger.store import Ledger
from ledger.store.schema import audit_results

__all__ = ["record_history", "result_by_id", "results_page"]


def _result(m: Mapping[str, Any]) -> AuditResult:
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
