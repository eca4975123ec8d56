"""Alembic environment: runs on the connection seedledger hands it (see
ledger.store.migrate); there is no alembic.ini to keep in sync."""

from __future__ import annotations

from alembic import context

from ledger.store.schema import include_object, metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable from the alembic CLI
    raise RuntimeError("run migrations with `seedledger db upgrade`, not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    # the prompt indexes of migration 0007 are not in the metadata (schema.py says why)
    include_object=include_object,
)
with context.begin_transaction():
    context.run_migrations()
