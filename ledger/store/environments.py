"""Rows of ``record_environments``: the runtime one record's output was made in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ledger.store.schema import record_environments

__all__ = ["get", "get_many", "insert_ignoring_existing"]


def insert_ignoring_existing(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``{"record_id", "environment"}`` rows; a record keeps its first one
    (append-only: a replayed spool entry or a re-import adds nothing)."""
    if not rows:
        return
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(insert(record_environments).on_conflict_do_nothing(), [dict(r) for r in rows])


def get(conn: Connection, record_id: int) -> dict[str, Any] | None:
    row = conn.execute(
        select(record_environments.c.environment).where(record_environments.c.record_id == record_id)
    ).first()
    return dict(row[0]) if row is not None else None


def get_many(conn: Connection, record_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    if not record_ids:
        return {}
    rows = conn.execute(
        select(record_environments.c.record_id, record_environments.c.environment).where(
            record_environments.c.record_id.in_(list(record_ids))
        )
    )
    return {int(rid): dict(env) for rid, env in rows}
