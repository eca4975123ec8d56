"""prompt index: answers the records page's case-insensitive substring filter on the prompt

``RecordFilter.prompt`` is ``lower(prompt) LIKE '%text%'``, which no b-tree serves; a rare
word scanned every record (issue #19). The filter itself is unchanged; this adds a
trigram index beside it (ledger/store/keyset.py decides when to drive a page by it):

- SQLite: ``records_prompt_fts``, an FTS5 table with the trigram tokenizer, external
  content on records(prompt), kept by triggers (records are insert-only; the delete and
  update triggers keep it true should a row ever change). A later migration that
  rebuilds ``records`` in batch mode drops the triggers and must create them again.
- PostgreSQL: a pg_trgm GIN index on ``lower(prompt)``, the filter's own expression,
  so the planner can use it for the filter as written. ``CREATE EXTENSION`` needs a
  privilege the ledger's role may lack: then the index is skipped with a warning and
  the filter keeps scanning, as before.

Neither is in ``ledger.store.schema.metadata`` (SQLAlchemy has no FTS5 tables and
no operator classes); ``schema.include_object`` keeps them out of autogenerate.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import logging

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)

# as in ledger.store.schema (spelled out: a migration must not change with the code)
PROMPT_FTS = "records_prompt_fts"
PROMPT_TRGM_INDEX = "ix_records_prompt_trgm"

_SQLITE_UP = (
    f"CREATE VIRTUAL TABLE {PROMPT_FTS} USING fts5("
    "prompt, content='records', content_rowid='id', tokenize='trigram')",
    f"CREATE TRIGGER {PROMPT_FTS}_ai AFTER INSERT ON records BEGIN "
    f"INSERT INTO {PROMPT_FTS}(rowid, prompt) VALUES (new.id, new.prompt); END",
    f"CREATE TRIGGER {PROMPT_FTS}_ad AFTER DELETE ON records BEGIN "
    f"INSERT INTO {PROMPT_FTS}({PROMPT_FTS}, rowid, prompt) VALUES ('delete', old.id, old.prompt); END",
    f"CREATE TRIGGER {PROMPT_FTS}_au AFTER UPDATE OF prompt ON records BEGIN "
    f"INSERT INTO {PROMPT_FTS}({PROMPT_FTS}, rowid, prompt) VALUES ('delete', old.id, old.prompt); "
    f"INSERT INTO {PROMPT_FTS}(rowid, prompt) VALUES (new.id, new.prompt); END",
    # backfill: index every record already in the ledger
    f"INSERT INTO {PROMPT_FTS}({PROMPT_FTS}) VALUES ('rebuild')",
)


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        for statement in _SQLITE_UP:
            conn.exec_driver_sql(statement)
        return
    try:
        with conn.begin_nested():  # a savepoint: a refusal must not abort the migration
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except Exception as error:
        log.warning("pg_trgm unavailable (%s); the prompt filter stays a scan", str(error).splitlines()[0])
        return
    conn.exec_driver_sql(
        f"CREATE INDEX {PROMPT_TRGM_INDEX} ON records USING gin (lower(prompt) gin_trgm_ops)"
    )
    # statistics on lower(prompt) (an index expression) let the planner tell rare words from common
    conn.exec_driver_sql("ANALYZE records")


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        for suffix in ("_au", "_ad", "_ai"):
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {PROMPT_FTS}{suffix}")
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {PROMPT_FTS}")
        return
    # pg_trgm itself stays: other objects of the database may use it
    conn.exec_driver_sql(f"DROP INDEX IF EXISTS {PROMPT_TRGM_INDEX}")
