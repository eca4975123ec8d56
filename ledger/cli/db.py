"""`seedledger db`: create and upgrade the schema."""

from __future__ import annotations

import click

from ledger.cli.app import app, emit_mapping, info, main
from ledger.store import Ledger, migrate
from ledger.store import engine as engines


@main.group()
def db() -> None:
    """Create, upgrade and inspect the database schema."""


@db.command()
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.option(
    "--create",
    "create_database",
    is_flag=True,
    help="Create the PostgreSQL database first if the server does not have it (SQLite files are "
    "always created).",
)
def upgrade(revision: str, create_database: bool) -> None:
    """Bring the database to the latest schema (creates the schema when empty)."""
    ctx = app()
    if create_database and engines.create_database(ctx.db_url):
        info(f"created database {engines.display_url(engines.resolve_url(ctx.db_url))}")
    engine = engines.create(ctx.db_url)
    ledger = Ledger(engine)
    try:
        with ledger.translate_errors():
            before = migrate.current_revision(engine)
            migrate.upgrade(engine, revision)
            after = migrate.current_revision(engine)
    finally:
        engine.dispose()
    info(f"database {ledger.display_url}: {before or 'empty'} -> {after}")


@db.command()
def current() -> None:
    """Show the database's schema revision and the code's head."""
    ctx = app()
    engines.require_existing(ctx.db_url)
    engine = engines.create(ctx.db_url)
    ledger = Ledger(engine)
    try:
        with ledger.translate_errors():
            current_rev = migrate.current_revision(engine)
    finally:
        engine.dispose()
    head = migrate.head_revision()
    emit_mapping(
        {
            "database": ledger.display_url,
            "current": current_rev,
            "head": head,
            "up_to_date": current_rev == head,
        },
        as_json=ctx.json,
    )
