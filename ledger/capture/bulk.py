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
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from ledger.capture.entries import ENTRY_COLUMNS, KEY_INDEX, TAGS_INDEX, storage_time
from ledger.store import environments as environment_store
from ledger.store.schema import record_tags, records
from ledger.store.types import to_seed_key

#: Columns written, in order: an entry's values, then ``recorded_at`` (``id`` is
#: assigned by the database). Every name must be a column of the records table.
COLUMNS: tuple[str, ...] = (*ENTRY_COLUMNS, "recorded_at")
assert set(COLUMNS) <= set(records.columns.keys()), "spool entry columns out of step with the schema"


def _sql(dialect: str, table: str, columns: Sequence[str]) -> str:
    mark = "?" if dialect == "sqlite" else "%s"
    names = ", ".join(columns)
    marks = ", ".join(mark for _ in columns)
    return f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING"


def _storage_time_of(value: Any) -> str:
    if isinstance(value, str):
        if len(value) == 32 and value[10] == " " and value.endswith("+00:00"):
            return value
        value = datetime.fromisoformat(value)
    return storage_time(value)


class BulkInserter:
    """Insert spooled records (positional arrays from :mod:`ledger.capture.entries`)."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self._sql = _sql(dialect, records.name, COLUMNS)
        self._tag_sql = _sql(dialect, record_tags.name, ("record_id", "tag"))
        self._seed = COLUMNS.index("seed")
        self._created = COLUMNS.index("created_at")
        self._sqlite = dialect == "sqlite"

    def rows(self, items: Sequence[list[Any]], recorded_at: datetime) -> list[tuple[Any, ...]]:
        recorded = storage_time(recorded_at)
        if self._sqlite:
            recorded = recorded[:26]
        seed_i, created_i, sqlite = self._seed, self._created, self._sqlite
        out = []
        for values in items:
            row = [*values, recorded]
            seed = row[seed_i]
            if seed is not None:
                row[seed_i] = to_seed_key(seed)
            created = _storage_time_of(row[created_i])
            row[created_i] = created[:26] if sqlite else created
            out.append(tuple(row))
        return out

    def insert(
        self,
        conn: Connection,
        items: Sequence[list[Any]],
        recorded_at: datetime,
        *,
        want_ids: Sequence[str] = (),
        environments: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> dict[str, int]:
        """Insert ``items`` in the caller's transaction; return ids for ``want_ids``
        (and for every record with tags or an environment, whose rows are written here
        too)."""
        if not items:
            return {}
        conn.exec_driver_sql(self._sql, self.rows(items, recorded_at))
        tagged = {item[KEY_INDEX]: item[TAGS_INDEX] for item in items if item[TAGS_INDEX] not in ("[]", None)}
        keys = list(dict.fromkeys([*want_ids, *tagged, *(environments or {})]))
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
        if environments:
            environment_store.insert_ignoring_existing(
                conn,
                [
                    {"record_id": ids[key], "environment": dict(env)}
                    for key, env in environments.items()
                    if key in ids
                ],
            )
        return ids
