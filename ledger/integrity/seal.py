"""Sealing: append unsealed entries to the Merkle log and sign a checkpoint.

One sealer at a time: each seal transaction takes PostgreSQL's transaction-scoped
advisory lock :data:`SEAL_LOCK_KEY` (``pg_advisory_xact_lock``), or on SQLite the write
lock up front (``Ledger.writing()`` issues ``BEGIN IMMEDIATE``). Inside it the sealer

1. reads the log head (size, compact range) from ``log_state``;
2. reads up to ``batch_size`` unsealed rows of each entry type (an anti-join on
   ``log_entries``) in id order;
3. gives them leaf indexes ``size``, ``size + 1``, … (gap-free by construction: no
   database sequence is involved) and appends their leaf hashes to the compact range
   (O(log n) per leaf, never a rebuild);
4. inserts the ``log_entries`` rows and updates ``log_state``;
5. after the last batch, signs ONE checkpoint for the new head and stores it.

Batches are separate, short transactions, so recording goes on while a long seal runs
(SQLite still has one writer at a time; a batch holds the write lock for a fraction of
a second). Records are never updated: sealing only inserts into ``log_entries`` and
``checkpoints`` and updates the single ``log_state`` row.

Within one call, batches after the first continue after the last id seen (keyset),
so a call over n new rows costs O(n log n). Each call starts with a full anti-join, so a
row that committed late with a lower id (possible on PostgreSQL, where ids come from a
sequence and commits can land out of order) is sealed by the next call.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, exists, insert, select, text, update

from ledger.core.records import utcnow
from ledger.errors import IntegrityError, InvalidInputError, UsageError
from ledger.integrity import _native
from ledger.integrity.leaves import ENTRY_TYPES, EntryType
from ledger.integrity.merkle import CompactRange, leaf_hash
from ledger.integrity.note import Checkpoint, Signer, load_signer, sign_checkpoint
from ledger.store import Ledger
from ledger.store.schema import checkpoints, log_entries, log_state

log = logging.getLogger(__name__)

#: The advisory lock key every sealer takes on PostgreSQL ("seedlog" in ASCII).
SEAL_LOCK_KEY = 0x7365_6564_6C6F_67
DEFAULT_BATCH_SIZE = 5000
_STATE_ID = 1


@dataclass(frozen=True)
class LogHead:
    size: int
    compact: CompactRange

    @property
    def root(self) -> bytes:
        return self.compact.root()


@dataclass(frozen=True)
class StoredCheckpoint:
    size: int
    root: bytes
    origin: str
    key_name: str
    key_id: str
    verifier: str
    note: str


@dataclass(frozen=True)
class SealResult:
    sealed: int  # leaves added by this call
    size: int  # tree size after the call
    root: bytes
    checkpoint: StoredCheckpoint | None  # the latest checkpoint after the call
    new_checkpoint: bool  # whether this call signed it
    #: Which path hashed the rows ("native", or "python") and why python.
    path: str = "python"
    path_reason: str | None = None


def lock(conn: Connection) -> None:
    """Take the sealer lock for the current transaction (PostgreSQL); on SQLite the
    transaction already holds the write lock (BEGIN IMMEDIATE)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SEAL_LOCK_KEY})
        # Times in UTC for this transaction only (as verify reads them): the leaf form is
        # UTC anyway, and the native and Python paths then see the same values.
        conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")


def read_head(conn: Connection) -> LogHead | None:
    row = conn.execute(
        select(log_state.c.size, log_state.c.compact_range).where(log_state.c.id == _STATE_ID)
    ).first()
    if row is None:
        return None
    return LogHead(int(row.size), CompactRange.from_bytes(int(row.size), bytes(row.compact_range)))


def latest_checkpoint(conn: Connection) -> StoredCheckpoint | None:
    row = conn.execute(select(checkpoints).order_by(checkpoints.c.size.desc()).limit(1)).first()
    return None if row is None else _stored(row)


def _stored(row: Any) -> StoredCheckpoint:
    return StoredCheckpoint(
        size=int(row.size),
        root=bytes(row.root),
        origin=row.origin,
        key_name=row.key_name,
        key_id=row.key_id,
        verifier=row.verifier,
        note=row.note,
    )


def _unsealed(et: EntryType, after: int | None, limit: int, columns: Sequence[Any] | None = None) -> Any:
    table = et.table
    id_col = table.c[et.id_column]
    sealed = exists().where(log_entries.c.entry_type == et.name, log_entries.c.entry_id == id_col)
    stmt = select(*(columns if columns is not None else et.raw_columns(table))).where(~sealed)
    if after is not None:
        stmt = stmt.where(id_col > after)
    return stmt.order_by(id_col).limit(limit)


def _leaf_hashes(
    conn: Connection, et: EntryType, after: int | None, limit: int, first: int
) -> list[tuple[int, bytes]]:
    """(2) and the leaf hashes of (3): up to ``limit`` unsealed rows of ``et`` after id
    ``after``, in id order, as (id, leaf hash at index first, first + 1, …). Where the
    native walker can (``_native.row_hasher``) it hashes the rows; any row it leaves
    out, and every row elsewhere, is hashed here. The walker's hashes are stored as they
    are, so each batch also hashes one of the walker's rows here: if the two ever
    differ, the whole batch is hashed here instead (a safety net; the tests find no
    difference)."""
    hasher = _native.row_hasher(conn, et)
    if hasher is None:
        return _python_hashes(conn, et, after, limit, first)
    selected = conn.execute(_unsealed(et, after, limit, hasher.columns)).all()
    if not selected:
        return []
    ids = [int(row[hasher.id_position]) for row in selected]
    try:
        hashes = hasher.hashes(selected, first)
    except (RuntimeError, MemoryError) as exc:
        log.warning("native leaf hashing failed (%s); hashing in Python", exc)
        return _python_hashes(conn, et, after, limit, first)
    sample = next((k for k, h in enumerate(hashes) if h is not None), None)
    wanted = [i for i, h in zip(ids, hashes, strict=True) if h is None]
    if sample is not None:
        wanted.append(ids[sample])
    rows = {int(row[et.id_position]): row for row in _rows(conn, et, wanted)} if wanted else {}
    if (
        sample is not None
        and ids[sample] in rows
        and hashes[sample] != _python_leaf_hash(conn, et, first + sample, rows[ids[sample]])
    ):
        log.warning(
            "native leaf hash of %s %s differs from Python's; hashing in Python", et.name, ids[sample]
        )
        return _python_hashes(conn, et, after, limit, first)
    done: list[tuple[int, bytes]] = []
    for k, (entry_id, digest) in enumerate(zip(ids, hashes, strict=True)):
        if digest is None:
            if entry_id not in rows:  # the row went away: seal up to it, so indexes stay gap-free
                break
            digest = _python_leaf_hash(conn, et, first + k, rows[entry_id])
        done.append((entry_id, digest))
    return done


def _rows(conn: Connection, et: EntryType, ids: list[int]) -> Sequence[Any]:
    id_col = et.table.c[et.id_column]
    return conn.execute(select(*et.raw_columns()).where(id_col.in_(ids))).all()


def _python_hashes(
    conn: Connection, et: EntryType, after: int | None, limit: int, first: int
) -> list[tuple[int, bytes]]:
    rows = conn.execute(_unsealed(et, after, limit)).all()
    return [
        (int(row[et.id_position]), _python_leaf_hash(conn, et, first + k, row)) for k, row in enumerate(rows)
    ]


_ENTRY_COLUMNS = ("leaf_index", "entry_type", "entry_id", "leaf_hash", "sealed_at")


def _insert_entries(conn: Connection, entries: list[dict[str, Any]]) -> None:
    """Insert the batch's log entries in one statement through the driver: SQLAlchemy's
    per-row parameter processing (and psycopg's pipelined executemany) would cost more
    than hashing the rows does. PostgreSQL: one INSERT from unnest()ed arrays; SQLite:
    executemany, with the one shared ``sealed_at`` converted once."""
    names = ", ".join(_ENTRY_COLUMNS)
    if conn.dialect.name == "postgresql":
        arrays = {n: [e[n] for e in entries] for n in _ENTRY_COLUMNS}
        conn.exec_driver_sql(
            # %(…)b: binary arrays, several times cheaper for psycopg to send than text
            f"INSERT INTO log_entries ({names}) SELECT * FROM unnest("
            "%(leaf_index)b::bigint[], %(entry_type)b::varchar[], %(entry_id)b::bigint[], "
            "%(leaf_hash)b::bytea[], %(sealed_at)b::timestamptz[])",
            arrays,
        )
        return
    if conn.dialect.name != "sqlite":
        conn.execute(insert(log_entries), entries)
        return
    to_driver = log_entries.c.sealed_at.type.bind_processor(conn.dialect)
    sealed_at = entries[0]["sealed_at"] if to_driver is None else to_driver(entries[0]["sealed_at"])
    conn.exec_driver_sql(
        f"INSERT INTO log_entries ({names}) VALUES (?, ?, ?, ?, ?)",
        [(e["leaf_index"], e["entry_type"], e["entry_id"], e["leaf_hash"], sealed_at) for e in entries],
    )


def _python_leaf_hash(conn: Connection, et: EntryType, index: int, row: Any) -> bytes:
    try:
        return leaf_hash(et.leaf_bytes_from_fields(index, et.row_fields_from_raw(row, conn.dialect)))
    except (InvalidInputError, TypeError, ValueError, OverflowError) as exc:
        # Only a row changed behind seedledger's back holds such values: refuse to
        # commit to it rather than stop with a traceback.
        raise IntegrityError(
            f"{et.name} {row[et.id_position]} cannot be sealed: a column no longer holds a value "
            f"of its type ({type(exc).__name__})"
        ) from None


def _seal_batch(
    conn: Connection, types: Sequence[EntryType], cursors: dict[str, int | None], batch_size: int
) -> tuple[int, LogHead]:
    """(1)–(4) of the module docstring, in the caller's locked transaction."""
    # (1) the head
    head = read_head(conn)
    compact = head.compact.copy() if head else CompactRange()
    start = compact.size
    entries: list[dict[str, Any]] = []
    now = utcnow()
    remaining = batch_size
    for et in types:
        if remaining <= 0:
            break
        # (2) unsealed rows, in id order, and (3) their leaves at gap-free indexes
        hashed = _leaf_hashes(conn, et, cursors.get(et.name), remaining, start + len(entries))
        for entry_id, digest in hashed:
            compact.append(digest)
            entries.append(
                {
                    "leaf_index": start + len(entries),
                    "entry_type": et.name,
                    "entry_id": entry_id,
                    "leaf_hash": digest,
                    "sealed_at": now,
                }
            )
        if hashed:
            cursors[et.name] = hashed[-1][0]
        remaining -= len(hashed)
    if not entries and head is not None:
        return 0, head
    # (4) entries and head
    if entries:
        _insert_entries(conn, entries)
    state = {
        "size": compact.size,
        "compact_range": compact.to_bytes(),
        "root": compact.root(),
        "updated_at": now,
    }
    if head is None:
        conn.execute(insert(log_state).values(id=_STATE_ID, **state))
    else:
        conn.execute(update(log_state).where(log_state.c.id == _STATE_ID).values(**state))
    return len(entries), LogHead(compact.size, compact)


def _write_checkpoint(
    conn: Connection, head: LogHead, signer: Signer, origin: str | None
) -> tuple[StoredCheckpoint, bool]:
    """(5): sign the head unless the latest checkpoint already covers it."""
    latest = latest_checkpoint(conn)
    if latest is not None:
        if origin is not None and origin != latest.origin:
            raise UsageError(f"this log's origin is {latest.origin!r}, not {origin!r}")
        origin = latest.origin
        if latest.size == head.size:
            return latest, False
    origin = origin or signer.name
    checkpoint = Checkpoint(origin, head.size, head.root)
    note = sign_checkpoint(checkpoint, signer)
    verifier = signer.verifier
    stored = StoredCheckpoint(
        size=head.size,
        root=head.root,
        origin=origin,
        key_name=signer.name,
        key_id=verifier.key_id_hex,
        verifier=str(verifier),
        note=note,
    )
    conn.execute(insert(checkpoints).values(**asdict(stored), created_at=utcnow()))
    return stored, True


def seal(
    ledger: Ledger,
    signer: Signer,
    *,
    origin: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    limit: int | None = None,
    entry_types: Sequence[EntryType] | None = None,
) -> SealResult:
    """Seal every unsealed entry (at most ``limit``) and sign one checkpoint.

    ``origin`` defaults to the log's existing origin, or the key name for a new log.
    """
    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if origin is not None and (not origin or "\n" in origin):
        raise UsageError("the checkpoint origin must be one non-empty line")
    types = list(entry_types if entry_types is not None else ENTRY_TYPES.values())
    cursors: dict[str, int | None] = {}
    sealed = 0
    while True:
        want = batch_size if limit is None else min(batch_size, limit - sealed)
        with ledger.writing() as conn:
            lock(conn)
            count, head = _seal_batch(conn, types, cursors, want) if want > 0 else (0, _head(conn))
            sealed += count
            if count < batch_size or (limit is not None and sealed >= limit):
                stored, new = _write_checkpoint(conn, head, signer, origin)
                reason = _native.unusable_reason(conn, types)
                path = "python" if reason is not None else "native"
                return SealResult(sealed, head.size, head.root, stored, new, path, reason)


def _head(conn: Connection) -> LogHead:
    return read_head(conn) or LogHead(0, CompactRange())


def seal_if_configured(ledger: Ledger, *, batch_size: int = DEFAULT_BATCH_SIZE) -> SealResult | None:
    """For automatic sealing by the capture writer and the auditor: seal with the key
    from ``SEEDLEDGER_SIGNING_KEY`` when one is set; do nothing (None) otherwise."""
    signer = load_signer()
    if signer is None:
        return None
    return seal(ledger, signer, batch_size=batch_size)
