"""The bridge to the native leaf walker (``_leafwalk_src/*.c``) that ``verify`` and ``seal``
use.

The walker recomputes leaves from the stored rows in C and only *confirms* them: a leaf
it cannot render exactly as the Python path does stops the walk, and ``verify`` handles
that leaf itself (``seal`` hashes such a row in Python). So the walker changes how fast
they are, never what they find or write.

- SQLite: the C code reads the rows itself through the SQLite C API, on one read-only
  connection per thread (``_leafwalk.Walker``, ``hash_rows``).
- PostgreSQL: rows come through psycopg on the caller's connection, JSON columns as
  their text and times in a UTC transaction, and the C code works from those values
  (``_leafwalk.confirm_rows``, ``hash_values``).

It is used when all of these hold; otherwise ``verify`` and ``seal`` say which path ran
and why (:func:`unusable_reason`):

- the extension was built (it needs the SQLite and OpenSSL headers at install time);
- every entry type's columns have an exact native form (:meth:`EntryType.native_kinds`);
- ``SEEDLEDGER_NATIVE`` is not ``0``;
- SQLite: the ledger is a file (not ``:memory:``, not a ``file:`` URI) and Python's
  ``_sqlite3`` module uses the same copy of SQLite as the extension (two copies in one
  process break each other's POSIX locks);
- PostgreSQL: the client encoding is UTF-8 and every JSON column is still json or
  jsonb in the database (:func:`_postgresql_reads_alike`).

``SEEDLEDGER_NATIVE_THREADS`` sets the number of SQLite threads (default: the CPU count,
at most 8).
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Text, cast, literal_column, select, text, type_coerce
from sqlalchemy.types import NullType

from ledger import config
from ledger.integrity.leaves import EntryType, joined_entries
from ledger.store.schema import log_entries

ENV_NATIVE = config.NATIVE.name
#: What the walkers read of each log entry before its row (``_leafwalk_src/`` expects it).
_WALK_HEAD = (log_entries.c.leaf_index, log_entries.c.entry_type, log_entries.c.leaf_hash)
ENV_THREADS = config.NATIVE_THREADS.name

# The C extension has no stub (its C sources live in _leafwalk_src/, named so that they
# never pass for a namespace package): typed as Any, each result annotated where used.
_leafwalk: Any
try:
    _leafwalk = importlib.import_module("ledger.integrity._leafwalk")
except ImportError:  # built without the extension
    _leafwalk = None


class Walker(Protocol):
    def walk(
        self, size: int, hashes: list[bytes], stop: int
    ) -> tuple[int, list[bytes], tuple[int, ...], int | None]: ...

    def close(self) -> None: ...


@functools.cache
def available() -> bool:
    """Whether the extension is built and shares the process's copy of SQLite."""
    if _leafwalk is None:
        return False
    try:
        import _sqlite3
    except ImportError:
        return False
    path = getattr(_sqlite3, "__file__", None)
    return bool(path) and bool(_leafwalk.same_sqlite(path))


def enabled() -> bool:
    return config.NATIVE.flag()


def threads() -> int:
    wanted = config.NATIVE_THREADS.count(strict=False)
    if wanted is not None:
        return min(wanted, 16)
    return max(1, min(os.cpu_count() or 1, 8))


def _database_path(conn: Connection) -> str | None:
    url = conn.engine.url
    database = url.database or ""
    if conn.dialect.name != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return None
    if url.query.get("uri") or url.query.get("mode"):
        return None
    path = Path(database).expanduser().resolve()
    return str(path) if path.is_file() else None


def _spec(et: EntryType, dialect: Any, first: int) -> tuple[Any, ...]:
    """``et`` for ``_leafwalk`` when its columns sit at result positions ``first`` on."""
    kinds = et.native_kinds(dialect)
    if kinds is None:
        raise ValueError(f"entry type {et.name!r} has a column without a native form")
    position = {name: first + k for k, name in enumerate(et.column_names)}
    kind = dict(zip(et.column_names, kinds, strict=True))
    prefix, middle, suffix, keys = et.leaf_pieces()
    columns = tuple((key, kind[name], position[name]) for key, name in keys)
    return (et.name.encode(), position[et.id_column], prefix, middle, suffix, columns)


def walk_sql(types: Sequence[EntryType], conn: Connection) -> tuple[str, list[tuple[Any, ...]]]:
    """The walker's statement (log entries in ``[?1, ?2)`` in leaf order, each joined to
    its row) and each type's spec for ``_leafwalk.Walker``."""
    columns, joined, starts = joined_entries(
        types, _WALK_HEAD, lambda et, alias, prefix: et.raw_columns(alias, prefix=prefix)
    )
    specs = [_spec(et, conn.dialect, first) for et, first in zip(types, starts, strict=True)]
    stmt = (
        select(*columns)
        .select_from(joined)
        .where(log_entries.c.leaf_index >= literal_column("?1"))
        .where(log_entries.c.leaf_index < literal_column("?2"))
        .order_by(log_entries.c.leaf_index)
    )
    return _compiled(stmt, conn), specs


def _compiled(stmt: Any, conn: Connection) -> str:
    return str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))


def unusable_reason(conn: Connection, types: Sequence[EntryType]) -> str | None:
    """Why the extension cannot serve ``conn`` for ``types`` (None: it can), in words
    that ``verify``/``seal`` print: the slower Python path never runs unannounced."""
    engine = conn.dialect.name
    if not enabled():
        return f"{ENV_NATIVE}=0 turns the native walker off"
    if _leafwalk is None:
        return "the native walker is not built (it needs a C compiler and the SQLite and OpenSSL headers)"
    if engine not in ("sqlite", "postgresql"):
        return f"no native walker for {engine}"
    # the SQLite copy matters only where the extension opens SQLite connections itself
    if engine == "sqlite" and not available():
        return "Python's sqlite3 module uses another copy of SQLite than the native walker"
    if any(et.native_kinds(conn.dialect) is None for et in types):
        return "a column of the log has no native leaf form"
    if engine == "postgresql" and not _postgresql_reads_alike(conn, types):
        return "the PostgreSQL client encoding is not UTF-8, or a JSON column is no longer json/jsonb"
    if engine == "sqlite" and _database_path(conn) is None:
        return "the SQLite database is not a plain file"
    return None


def _usable(conn: Connection, types: Sequence[EntryType]) -> bool:
    return unusable_reason(conn, types) is None


def _postgresql_reads_alike(conn: Connection, types: Sequence[EntryType]) -> bool:
    """The values path fetches JSON columns as text and decodes text with the client
    encoding; the Python path gets what psycopg makes of the column's real type, and
    decodes JSON as UTF-8. They read alike only when the client encoding is UTF-8 and
    every JSON column still is json or jsonb in the database (a column altered to text
    or numeric would be canonicalized here and not there)."""
    info = getattr(conn.connection.dbapi_connection, "info", None)
    if info is None or str(getattr(info, "encoding", "")).lower().replace("_", "-") not in ("utf-8", "utf8"):
        return False
    for et in types:
        kinds = et.native_kinds(conn.dialect) or ()
        json_columns = [n for n, k in zip(et.column_names, kinds, strict=True) if k == "j"]
        if not json_columns:
            continue
        found = conn.execute(
            text(
                "SELECT a.attname, format_type(a.atttypid, NULL) FROM pg_attribute a "
                "WHERE a.attrelid = CAST(:table AS regclass) AND a.attname = ANY(:names) "
                "AND NOT a.attisdropped"
            ),
            {"table": et.table.name, "names": json_columns},
        ).all()
        if len(found) != len(json_columns) or any(kind not in ("json", "jsonb") for _, kind in found):
            return False
    return True


def _values_columns(et: EntryType, source: Any, prefix: str, dialect: Any) -> list[Any]:
    """``et``'s columns for the Python-values path: raw driver values, but JSON columns
    as their text (so they are canonicalized, not decoded and re-encoded)."""
    kinds = et.native_kinds(dialect) or ()
    columns = []
    for name, kind in zip(et.column_names, kinds, strict=True):
        column = source.c[name]
        value = cast(column, Text) if kind == "j" else column
        columns.append(type_coerce(value, NullType()).label(prefix + name))
    return columns


class _ValuesWalker:
    """The walker's protocol on PostgreSQL: rows fetched on ``conn`` itself (so in
    verify's own snapshot, whose times arrive in UTC), a page at a time, and confirmed
    from their Python values by ``_leafwalk.confirm_rows``. A time in another zone is
    refused, so it would go to the Python path, which converts it."""

    PAGE = 2000

    def __init__(self, conn: Connection, types: Sequence[EntryType]) -> None:
        self.conn = conn
        columns, joined, starts = joined_entries(
            types, _WALK_HEAD, lambda et, alias, prefix: _values_columns(et, alias, prefix, conn.dialect)
        )
        specs = [_spec(et, conn.dialect, first) for et, first in zip(types, starts, strict=True)]
        self.specs = tuple(specs)
        self.stmt = select(*columns).select_from(joined).order_by(log_entries.c.leaf_index)

    def walk(
        self, size: int, hashes: list[bytes], stop: int
    ) -> tuple[int, list[bytes], tuple[int, ...], int | None]:
        counts = [0] * len(self.specs)
        while size < stop:
            end = min(stop, size + self.PAGE)
            page = self.stmt.where(log_entries.c.leaf_index >= size, log_entries.c.leaf_index < end)
            rows = self.conn.execute(page).all()
            size, hashes, confirmed, problem = _leafwalk.confirm_rows(self.specs, rows, size, hashes)
            counts = [a + b for a, b in zip(counts, confirmed, strict=True)]
            if problem is None and size < end:
                problem = size  # fewer rows than leaves: Python names the missing one
            if problem is not None:
                return size, hashes, tuple(counts), problem
        return size, hashes, tuple(counts), None

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class RowHasher:
    """For the sealer: leaf hashes of unsealed rows of one entry type at leaf indexes
    ``first``, ``first + 1``, … (None for a row left to the Python path).

    ``columns`` is what the sealer selects for each row: just the id on SQLite, where
    :meth:`hashes` reads the rows natively on fresh read-only connections (they are
    committed: the sealer holds the write lock, so none can change meanwhile); the
    columns in their values form on PostgreSQL, where the selected rows are hashed
    from psycopg's values."""

    columns: list[Any]
    id_position: int  # of the id among ``columns``
    hashes: Callable[[Sequence[Any], int], list[bytes | None]]


def row_hasher(conn: Connection, et: EntryType) -> RowHasher | None:
    """The sealer's native hasher for ``et`` on ``conn``; None where the extension
    cannot serve it."""
    if not _usable(conn, [et]):
        return None
    id_col = et.table.c[et.id_column]
    if conn.dialect.name == "postgresql":
        spec = _spec(et, conn.dialect, 0)

        def from_values(rows: Sequence[Any], first: int) -> list[bytes | None]:
            result: list[bytes | None] = _leafwalk.hash_values(spec, rows, first)
            return result

        return RowHasher(_values_columns(et, et.table, "", conn.dialect), et.id_position, from_values)
    path = _database_path(conn)
    if path is None:
        return None
    stmt = select(*et.raw_columns()).where(id_col == literal_column("?1"))
    sql, spec, workers = _compiled(stmt, conn), _spec(et, conn.dialect, 0), threads()

    def from_file(rows: Sequence[Any], first: int) -> list[bytes | None]:
        ids = [int(row[0]) for row in rows]
        result: list[bytes | None] = _leafwalk.hash_rows(path, sql, spec, ids, first, workers)
        return result

    return RowHasher([id_col], 0, from_file)


def open_walker(conn: Connection, types: Sequence[EntryType]) -> Walker | None:
    """A native walker over the ledger behind ``conn``, or None (module docstring)."""
    return open_walker_or_reason(conn, types)[0]


def open_walker_or_reason(conn: Connection, types: Sequence[EntryType]) -> tuple[Walker | None, str | None]:
    """(walker, None), or (None, why the Python path reads the log instead)."""
    reason = unusable_reason(conn, types)
    if reason is not None:
        return None, reason
    if conn.dialect.name == "postgresql":
        return _ValuesWalker(conn, types), None
    path = _database_path(conn)
    if path is None:
        return None, "the SQLite database is not a plain file"
    sql, specs = walk_sql(types, conn)
    try:
        walker: Walker = _leafwalk.Walker(path, sql, tuple(specs), threads())
    except RuntimeError as exc:  # e.g. the file cannot be opened read-only: the Python path reads it
        return None, f"the native walker cannot open the database ({exc})"
    return walker, None
