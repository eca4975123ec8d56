"""Read-only queries for browsing the ledger (the web UI): keyset pages of records,
thumbnails, siblings, log positions. Every one is an index lookup or an indexed range
(a records page: see keyset.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Table, func, or_, select

from ledger.core.records import Record
from ledger.store.filters import RecordFilter
from ledger.store.keyset import page_statement
from ledger.store.ledger import Ledger, row_to_record
from ledger.store.schema import experiments, fingerprints, log_entries, records

_CHUNK = 500


@dataclass(frozen=True)
class RecordPage:
    """Newest first. ``next_before`` is the cursor of the following page (None: last)."""

    records: tuple[Record, ...]
    next_before: int | None


def record_page(
    ledger: Ledger, where: RecordFilter, *, before: int | None = None, limit: int = 50
) -> RecordPage:
    """One keyset page: records matching ``where`` with id < ``before``, newest first."""
    with ledger.reading() as conn:
        stmt = page_statement(conn, where, before=before, limit=limit + 1)
        rows = [row_to_record(row) for row in conn.execute(stmt)]
    more = len(rows) > limit
    rows = rows[:limit]
    return RecordPage(tuple(rows), rows[-1].id if more and rows else None)


def thumbnail_of(ledger: Ledger, record_id: int) -> bytes | None:
    """The stored thumbnail PNG of a record's output (only that column is read)."""
    with ledger.reading() as conn:
        value = conn.execute(
            select(fingerprints.c.thumbnail).where(fingerprints.c.record_id == record_id)
        ).scalar_one_or_none()
    return bytes(value) if value is not None else None


def siblings(ledger: Ledger, record: Record, *, limit: int = 50) -> list[Record]:
    """Records made beside ``record``: the same parent, or the same task (a batch)."""
    c = records.c
    same: list[ColumnElement[bool]] = []
    if record.parent_id is not None:
        same.append(c.parent_id == record.parent_id)
    if record.task_uuid is not None:
        same.append(c.task_uuid == record.task_uuid)
    if not same:
        return []
    stmt = select(records).where(or_(*same), c.id != record.id).order_by(c.id).limit(limit)
    with ledger.reading() as conn:
        return [row_to_record(row) for row in conn.execute(stmt)]


def leaf_index_of(ledger: Ledger, entry_type: str, entry_id: int) -> int | None:
    """The log position of one entry, or None while it is unsealed."""
    e = log_entries.c
    with ledger.reading() as conn:
        value = conn.execute(
            select(e.leaf_index).where(e.entry_type == entry_type, e.entry_id == entry_id)
        ).scalar_one_or_none()
    return None if value is None else int(value)


@dataclass(frozen=True)
class LogCount:
    entry_type: str
    stored: int
    sealed: int

    @property
    def unsealed(self) -> int:
        return max(0, self.stored - self.sealed)


def log_counts(ledger: Ledger, tables: Mapping[str, Table]) -> list[LogCount]:
    """Per entry type: rows stored in its table and entries sealed into the log."""
    out: list[LogCount] = []
    with ledger.reading() as conn:
        for name, table in tables.items():
            stored = conn.execute(select(func.count()).select_from(table)).scalar_one()
            sealed = conn.execute(
                select(func.count()).select_from(log_entries).where(log_entries.c.entry_type == name)
            ).scalar_one()
            out.append(LogCount(name, int(stored), int(sealed)))
    return out


def records_by_id(ledger: Ledger, record_ids: Sequence[int]) -> dict[int, Record]:
    ids = list(dict.fromkeys(record_ids))
    out: dict[int, Record] = {}
    with ledger.reading() as conn:
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            out.update(
                (r.id, r)
                for r in map(row_to_record, conn.execute(select(records).where(records.c.id.in_(chunk))))
            )
    return out


def records_with_file(ledger: Ledger, file_sha256: str) -> list[int]:
    """Records whose fingerprinted output file has this SHA-256 (indexed)."""
    c = fingerprints.c
    with ledger.reading() as conn:
        rows = conn.execute(select(c.record_id).where(c.file_sha256 == file_sha256).order_by(c.record_id))
        return [int(r) for (r,) in rows]


@dataclass(frozen=True)
class ExperimentSummary:
    id: str
    kind: str
    name: str | None
    created_at: datetime
    records: int


def experiment_list(ledger: Ledger, *, limit: int = 200) -> list[ExperimentSummary]:
    """The newest experiments with how many records each holds (counted on the
    experiment_id index)."""
    e = experiments.c
    counts = (
        select(records.c.experiment_id, func.count().label("n"))
        .where(records.c.experiment_id.is_not(None))
        .group_by(records.c.experiment_id)
        .subquery()
    )
    stmt = (
        select(e.id, e.kind, e.name, e.created_at, func.coalesce(counts.c.n, 0))
        .select_from(experiments.outerjoin(counts, counts.c.experiment_id == e.id))
        .order_by(e.created_at.desc(), e.id)
        .limit(limit)
    )
    with ledger.reading() as conn:
        return [ExperimentSummary(r[0], r[1], r[2], r[3], int(r[4])) for r in conn.execute(stmt)]
