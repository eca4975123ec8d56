"""`seedledger report`: compliance reports as HTML, JSON, CSV or Markdown."""

from __future__ import annotations

from pathlib import Path

import click

from ledger.cli.app import app, emit_json, info, main
from ledger.cli.options import record_filter_options
from ledger.errors import IntegrityError
from ledger.reports import FORMATS, ReportOptions, write_report
from ledger.store import RecordFilter


@main.command()
@record_filter_options
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="html", show_default=True)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Report file (written atomically: a failed run leaves no partial file).",
)
@click.option(
    "--previous-checkpoint",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A signed checkpoint note (or an earlier JSON report) to check this log is consistent with.",
)
@click.option(
    "--limit",
    "html_limit",
    type=click.IntRange(min=0),
    default=25,
    show_default=True,
    help="Affected records listed per warning in HTML/Markdown (JSON/CSV list all).",
)
@click.option(
    "--evidence-limit",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="Failures/drift shown with thumbnails in HTML/Markdown (JSON lists all).",
)
@click.option(
    "--key",
    "keys",
    multiple=True,
    help="Trusted public (verifier) key, or a file of them, to check checkpoint signatures with "
    "[env SEEDLEDGER_VERIFIER_KEY; without one, the key stored in the ledger is used and the "
    "report says so: self-attested].",
)
@click.option(
    "--verify",
    "verify",
    type=click.Choice(["full", "leaf-hashes", "none"]),
    default="full",
    show_default=True,
    help="full: `seedledger verify` (every sealed row re-hashed, every checkpoint checked); "
    "leaf-hashes: only the latest checkpoint's signature and root over the stored leaf hashes "
    "(rows not re-hashed; never reported as passed); none: skip. A divergence: the report is "
    "still written, opens with FAILED, and the command exits 7.",
)
def report(
    where: RecordFilter,
    fmt: str,
    out: Path,
    previous_checkpoint: Path | None,
    html_limit: int,
    evidence_limit: int,
    keys: tuple[str, ...],
    verify: str,
) -> None:
    """Write a compliance report on the selected records to --out."""
    ctx = app()
    options = ReportOptions(
        html_limit=html_limit,
        evidence_limit=evidence_limit,
        previous_checkpoint=previous_checkpoint,
        verify=verify,
        keys=keys,
    )
    result = write_report(ctx.ledger(), where, fmt, out, options)
    r = result.report
    data = {
        "path": str(result.path),
        "format": result.format,
        "bytes": result.bytes,
        "records": result.records,
        "audited": r.audit.audited,
        "pass_rate": r.audit.pass_rate,
        "checkpoint_size": r.integrity.checkpoint.size if r.integrity.checkpoint else None,
    }
    integrity = r.integrity
    data["integrity_status"] = integrity.status()
    data["first_divergence"] = integrity.failure()
    if ctx.json:
        emit_json(data)
    else:
        click.echo(str(result.path))
    kind = {"html": "an HTML", "json": "a JSON", "csv": "a CSV", "md": "a Markdown"}.get(fmt, f"a {fmt}")
    info(f"wrote {kind} report on {result.records} record(s) to {result.path} ({result.bytes} bytes)")
    if integrity.failure() is not None:
        # Evidence kept (written above), and a failing exit that CI reads as tampering.
        raise IntegrityError(f"the report is written, and it says FAILED: {integrity.failure()}")
    if integrity.status() == "not-rehashed":
        info(
            "integrity: leaf hashes vs signed root; rows not re-hashed (drop --verify leaf-hashes to re-hash)"
        )
