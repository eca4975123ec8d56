"""`seedledger demo`: the whole story on embedded defaults."""

from __future__ import annotations

from pathlib import Path

import click

from ledger.cli.app import app, emit_json, info, main


@main.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-out"),
    show_default=True,
    help="Where the demo writes everything.",
)
@click.option("--force", is_flag=True, help="Replace an earlier demo in --dir.")
def demo(directory: Path, force: bool) -> None:
    """Run the whole story offline: capture, sweeps, seal, a model update, audit,
    verify and reports, on SQLite and the bundled reference backend."""
    from ledger.demo import run_demo

    ctx = app()
    result = run_demo(directory, force=force, say=info)
    db = result.database
    summary = {
        "directory": str(result.directory),
        "database": str(db),
        "records": result.records,
        "audit_run": result.run_id,
        "outcomes": result.outcomes,
        "verified": result.verified,
        "report_html": str(result.report_html),
        "report_json": str(result.report_json),
        "contact_sheets": [str(p) for p in result.contact_sheets],
        "signing_key": str(result.key_file),
        "approved_asset": str(result.asset),
        "saved_checkpoint": str(result.checkpoint_file),
        "seconds": round(result.seconds, 1),
    }
    if ctx.json:
        emit_json(summary)
        return
    rel = db
    click.echo(
        f"\nDone in {result.seconds:.0f} s. {result.records} records in {db}\n"
        f"  report (HTML)   {result.report_html}\n"
        f"  report (JSON)   {result.report_json}\n"
        f"  contact sheets  {', '.join(str(p) for p in result.contact_sheets)}\n"
        f"  signing key     {result.key_file} (public key: {result.key_file}.pub)\n"
        f"  an output file  {result.asset}\n"
        f"  checkpoint      {result.checkpoint_file}\n"
        "\nNext, try:\n"
        f"  seedledger --db {rel} audit show {result.run_id}\n"
        f"  seedledger --db {rel} find {result.asset}\n"
        f"  seedledger --db {rel} verify --key-file {result.key_file} "
        f"--against {result.checkpoint_file}\n"
        "\nBrowse it all in a web browser (read-only, http://127.0.0.1:8765/):\n"
        f"  seedledger --db {rel} ui --key {result.key_file}.pub"
    )
