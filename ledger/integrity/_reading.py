"""Reading the log for ``verify`` and ``prove``: one snapshot of it, the log entries in
leaf order joined to their rows in leaf form, and subtree hashes of stored leaf ranges."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import DBAPIError

from ledger.errors import IntegrityError
from ledger.integrity._columns import unreadable_columns
from ledger.integrity.leaves import EntryType, joined_entries
from ledger.integrity.merkle import CompactRange
from ledger.store import Ledger
from ledger.store.schema import log_entries

PAGE = 5000


class Unreadable(Exception):
    """A row that cannot be read in its leaf form: which columns, and why."""

    def __init__(self, columns: tuple[str, ...], cause: Exception) -> None:
        super().__init__(type(cause).__name__)
        self.columns = columns
        self.cause = type(cause).__name__


class _Undecodable(bytes):
    """A TEXT value whose bytes are not UTF-8: the row was changed at the byte level."""


def _text_or_bytes(data: bytes) -> str | _Undecodable:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return _Undecodable(data)


def _fetch(conn: Connection, stmt: Any) -> Sequence[Any]:
    """The rows of ``stmt``. On SQLite a TEXT value that is not UTF-8 makes the driver
    refuse the whole result; then the rows are read again with such values kept as
    :class:`_Undecodable`, which no leaf form accepts, so the row is named as changed."""
    try:
        return conn.execute(stmt).all()
    except DBAPIError as exc:
        if conn.dialect.name != "sqlite" or "decode" not in str(exc.orig).lower():
            raise
    raw = conn.connection.dbapi_connection
    factory = raw.text_factory  # type: ignore[union-attr]
    raw.text_factory = _text_or_bytes  # type: ignore[union-attr]
    try:
        return conn.execute(stmt).all()
    finally:
        raw.text_factory = factory  # type: ignore[union-attr]


def stream(
    conn: Connection, types: Sequence[EntryType], start: int = 0, page: int = PAGE
) -> Iterator[tuple[Any, EntryType | None, Any]]:
    """Every log entry from leaf ``start`` on in leaf order with its row (None when
    missing), keyset-paged. ``fields`` is an exception instance when the row cannot be
    read in its leaf form at all (it was changed into something the column type cannot
    hold)."""
    head = [
        log_entries.c.leaf_index,
        log_entries.c.entry_type,
        log_entries.c.entry_id,
        log_entries.c.leaf_hash,
    ]
    columns, joined, starts = joined_entries(
        types, head, lambda et, alias, prefix: et.raw_columns(alias, prefix=prefix)
    )
    # per type: its first column, end, id position
    by_name = {
        et.name: (et, (first, first + len(et.column_names), first + et.id_position))
        for et, first in zip(types, starts, strict=True)
    }
    dialect = conn.dialect
    last = start - 1
    while True:
        stmt = (
            select(*columns)
            .select_from(joined)
            .where(log_entries.c.leaf_index > last)
            .order_by(log_entries.c.leaf_index)
            .limit(page)
        )
        rows = _fetch(conn, stmt)
        for row in rows:
            found = by_name.get(row[1])
            if found is None:
                yield row, None, None
                continue
            et, (first, end, id_pos) = found
            if row[id_pos] is None:
                yield row, et, None
                continue
            try:
                fields: Any = et.row_fields_from_raw(row[first:end], dialect)
            except (TypeError, ValueError, OverflowError) as exc:  # e.g. a JSON column that is not JSON
                fields = Unreadable(unreadable_columns(et, row[first:end], dialect), exc)
            yield row, et, fields
        if len(rows) < page:
            return
        last = int(rows[-1].leaf_index)


@contextmanager
def snapshot(ledger: Ledger) -> Iterator[Connection]:
    """One read transaction that sees one state of the log throughout, so a seal that
    commits meanwhile cannot look like tampering. SQLite's read transaction already
    does (WAL snapshot); PostgreSQL needs REPEATABLE READ."""
    with ledger.translate_errors(), ledger.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            if conn.dialect.name == "postgresql":
                # Times in UTC for this transaction only, whichever path reads them: the
                # leaf form is UTC anyway, and both paths then see the same values.
                conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
            yield conn


def range_hash(conn: Connection, start: int, end: int) -> bytes:
    """MTH(D[start:end]) from the stored leaf hashes, streamed in leaf order."""
    compact = CompactRange()
    last = start - 1
    while True:
        hashes = conn.execute(
            select(log_entries.c.leaf_hash)
            .where(log_entries.c.leaf_index > last, log_entries.c.leaf_index < end)
            .order_by(log_entries.c.leaf_index)
            .limit(PAGE * 4)
        ).scalars()
        got = 0
        for h in hashes:
            compact.append(bytes(h))
            got += 1
        last += got
        if got < PAGE * 4:
            break
    if compact.size != end - start:
        raise IntegrityError(f"leaves {start}…{end - 1} are not all stored; run `seedledger verify`")
    return compact.root()
