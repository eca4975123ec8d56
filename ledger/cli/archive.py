"""`seedledger archive add`: keep recorded outputs in the output archive."""

from __future__ import annotations

import hashlib
from pathlib import Path

import click

from ledger import config
from ledger.cli.app import app, emit_rows, info, main

ARCHIVE_OPTION = click.option(
    "--archive",
    "archive_dir",
    envvar=config.ARCHIVE.name,
    required=True,
    metavar="DIR",
    help="The output archive directory [env SEEDLEDGER_ARCHIVE].",
)


@main.group()
def archive() -> None:
    """The output archive: output files by SHA-256, for originals at full size later."""


@archive.command("add")
@ARCHIVE_OPTION
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path)
)
def archive_add(archive_dir: str, files: tuple[Path, ...]) -> None:
    """Archive FILES that are the fingerprinted output of a record (others are skipped:
    the archive holds only files the ledger can check)."""
    from ledger.store.archive import Archive
    from ledger.store.browse import records_with_file

    ctx = app()
    store = Archive.open(archive_dir)
    rows = []
    for path in files:
        data = path.read_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        ids = records_with_file(ctx.ledger(), sha256)
        if ids:
            store.put(data)
        rows.append({"file": str(path), "sha256": sha256, "records": ids, "archived": bool(ids)})
    emit_rows(rows, ("file", "sha256", "records", "archived"), as_json=ctx.json)
    skipped = sum(not r["archived"] for r in rows)
    info(
        f"archived {len(rows) - skipped} file(s) in {store.root}"
        + (f"; skipped {skipped} that no record's fingerprint names" if skipped else "")
    )
