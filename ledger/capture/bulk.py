"""A bulk insert path for spooled records, with Ledger.add's semantics.

Ledger.add builds rows from dataclasses and lets SQLAlchemy process every bind value;
at the writer's target rate (tens of thousands of records a second) that processing
is most of the cost. Spool entries already hold rows close to their stored form, so
this module converts the few typed values itself (the seed's −2^63 shift, UTC times,
pre-serialized JSON) and hands tuples straight to the driver's ``executemany``.

Same semantics as :meth:`Ledger.add`: ``ON CONFLICT DO NOTHING`` on the unique
``idempotency_key`` (a record replayed from the spool lands once), all or nothing per
call (one transaction), and tag rows for the ``--tag`` index. A test checks that a
record written here reads back equal to the same record written by Ledger.add.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from ledger.store.schema import record_tags, records
from ledger.store.types import to_seed_key

#: Columns written, in order (``id`` is assigned by the database).
COLUMNS: tuple[str, ...] = tuple(c.name for c in records.columns if c.name != "id")
_JSON_COLUMNS = frozenset({"params", "response", "tags"})
_TIME_COLUMNS = frozenset({"created_at", "recorded_at"})


def _sql(dialect: str, table: str, columns: Sequence[str]) -> str:
    mark = "?" if dialect == "sqlite" else "%s"
    names = ", ".join(columns)
    marks = ", ".join(mark for _ in columns)
    return f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING"


def _sqlite_time(value: datetime) -> str:
    # SQLAlchemy's SQLite DATETIME storage format (naive UTC, microseconds always).
    v = value.astimezone(UTC)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d} "
        f"{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}"
    )


def _converters(dialect: str) -> list[Any]:
    sqlite = dialect == "sqlite"
    out: list[Any] = []
    for name in COLUMNS:
        if name == "seed":
            out.append(lambda v: None if v is None else to_seed_key(v))
        elif name in _TIME_COLUMNS:
            if sqlite:
                out.append(lambda v: _sqlite_time(datetime.fromisoformat(v) if isinstance(v, str) else v))
            else:
                out.append(lambda v: datetime.fromisoformat(v) if isinstance(v, str) else v)
        else:
            out.append(None)
    return out


class BulkInserter:
    """Insert spooled record rows (dicts from :mod:`ledger.capture.entries`)."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self._sql = _sql(dialect, records.name, COLUMNS)
        self._tag_sql = _sql(dialect, record_tags.name, ("record_id", "tag"))
        self._convert = list(zip(COLUMNS, _converters(dialect), strict=True))

    def rows(self, items: Sequence[dict[str, Any]], recorded_at: datetime) -> list[tuple[Any, ...]]:
        recorded = recorded_at.isoformat()
        out = []
        for item in items:
            row = []
            for name, convert in self._convert:
                value = recorded if name == "recorded_at" else item.get(name)
                row.append(value if convert is None or value is None else convert(value))
            out.append(tuple(row))
        return out

    def insert(
        self,
        conn: Connection,
        items: Sequence[dict[str, Any]],
        recorded_at: datetime,
        *,
        want_ids: Sequence[str] = (),
    ) -> dict[str, int]:
        """Insert ``items`` in the caller's transaction; return ids for ``want_ids``
        (and for every record with tags, whose tag rows are written here too)."""
        if not items:
            return {}
        conn.exec_driver_sql(self._sql, self.rows(items, recorded_at))
        tagged = {
            item["idempotency_key"]: item["tags"] for item in items if item.get("tags") not in ("[]", None)
        }
        keys = list(dict.fromkeys([*want_ids, *tagged]))
        ids: dict[str, int] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            found = conn.execute(
                select(records.c.idempotency_key, records.c.id).where(records.c.idempotency_key.in_(chunk))
            )
            ids.update({key: int(rid) for key, rid in found})
        if tagged:
            tag_rows = [
                (ids[key], tag)
                for key, raw in tagged.items()
                if key in ids
                for tag in dict.fromkeys(json.loads(raw))
            ]
            if tag_rows:
                conn.exec_driver_sql(self._tag_sql, tag_rows)
        return ids
