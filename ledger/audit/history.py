"""What `seedledger show` adds to a record: its audit history and its place in the log.

Every audit result of the record is listed, oldest first, so a later pass never hides
an earlier failure. The log position says whether the record is sealed and whether the
newest signed checkpoint covers it (then `seedledger prove ID` gives its proof).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from ledger.integrity import RECORD
from ledger.integrity.seal import latest_checkpoint
from ledger.store import Ledger
from ledger.store.schema import audit_results, audit_runs, log_entries


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
        return self.leaf_index is not None and self.checkpoint_size is not None and (
            self.leaf_index < self.checkpoint_size
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
