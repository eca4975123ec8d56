"""`seedledger import`, `diff`, `lineage`, `pick` and `stamp`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ledger.cli.app import app, emit_json, emit_mapping, emit_rows, info, main, sanitize, to_jsonable
from ledger.cli.options import archive_option
from ledger.cli.progress import ProgressLine
from ledger.errors import UsageError
from ledger.workflows import compare, import_paths, lineage, pick, stamp_file
from ledger.workflows.compare import ABSENT, Change
from ledger.workflows.imports import FileOutcome
from ledger.workflows.lineage import LineageNode

IMPORT_COLUMNS = ("status", "kind", "records", "path", "reason")


@main.command(name="import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--tag", "tags", multiple=True, help="Add a tag to every imported record (repeatable).")
@click.option("--strict", is_flag=True, help="Exit 2 if any file was skipped.")
@archive_option("Also keep each fingerprinted image in this output archive")
def import_(paths: tuple[Path, ...], tags: tuple[str, ...], strict: bool, archive_dir: str | None) -> None:
    """Import generation records from files and folders (recursive, idempotent).

    Reads AUTOMATIC1111/Forge PNG `parameters` chunks and JPEG/WEBP EXIF comments,
    ComfyUI PNG `prompt`/`workflow` chunks and API graphs, Runware JSON / JSON Lines
    logs, and seedledger stamps. Images are fingerprinted. Each file is stored in one
    transaction; a file that cannot be parsed is listed with its reason and skipped.
    Importing the same files again adds nothing.
    """
    from ledger.store.archive import Archive

    ctx = app()
    archive = Archive.open(archive_dir) if archive_dir else None
    ledger = ctx.ledger(create_missing=True)
    line = ProgressLine("import", enabled=not ctx.json)

    def progress(outcome: FileOutcome) -> None:
        line.show(f"{outcome.status:<9} {sanitize(outcome.path)[-60:]}")

    summary = import_paths(ledger, list(paths), tags=tags, progress=progress, archive=archive)
    line.close()
    rows = [
        {
            "status": o.status,
            "kind": o.kind,
            "records": ",".join(str(i) for i in o.record_ids) or None,
            "path": o.path,
            "reason": o.reason,
        }
        for o in summary.outcomes
    ]
    if ctx.json:
        for outcome in summary.outcomes:
            emit_json(outcome.as_dict())
    else:
        emit_rows(rows, IMPORT_COLUMNS, as_json=False)
    info(
        f"{len(summary.outcomes)} file(s): {summary.count('imported')} imported "
        f"({summary.records_added} new record(s)), {summary.count('unchanged')} unchanged, "
        f"{summary.count('linked')} linked to stamped records, {summary.count('skipped')} skipped"
        + (f"; {summary.archived} archived in {archive.root}" if archive is not None else "")
    )
    if strict and summary.count("skipped"):
        sys.exit(UsageError.exit_code)


def _value(value: Any) -> str:
    if value is None:
        return "-"
    text = str(to_jsonable(value))
    if not text:
        return '""'
    text = text.replace("\n", "\\n")
    return text if len(text) <= 80 else text[:79] + "…"


def _change_line(change: Change) -> str:
    also = [f for f in change.fields if f != change.name]
    suffix = f"  (also {', '.join(also)})" if also else ""
    before = ABSENT if change.a_missing else _value(change.a)
    after = ABSENT if change.b_missing else _value(change.b)
    return f"{change.label}: {before} → {after}{suffix}"


@main.command()
@click.argument("a", type=int)
@click.argument("b", type=int)
@click.option("--all", "show_all", is_flag=True, help="Also show bookkeeping differences (ids, times, …).")
def diff(a: int, b: int, show_all: bool) -> None:
    """Show every parameter that differs between records A and B, then the runtime
    environment facts that differ ([environment] lines: versions, device, dtype,
    attention, determinism flags).

    Warns when more than one generation parameter changed (not a controlled
    comparison). The same setting stored twice (a column and the request field)
    counts once.
    """
    ctx = app()
    ledger = ctx.ledger()
    result = compare(
        ledger.get(a),
        ledger.get(b),
        environment_a=ledger.environment_of(a),
        environment_b=ledger.environment_of(b),
    )
    if ctx.json:
        emit_json(result.as_dict())
        return
    if not result.changes:
        click.echo(f"records {a} and {b}: same generation parameters")
    for change in result.changes:
        click.echo(sanitize(_change_line(change)))
    if result.note:
        info(f"note: {result.note}")
    if show_all:
        for change in result.bookkeeping:
            click.echo(sanitize(f"[bookkeeping] {_change_line(change)}"))
    for fact in result.environment_differences:
        kind = "environment" if fact["material"] else "environment, informational"
        click.echo(sanitize(f"[{kind}] {fact['fact']}: {_value(fact['a'])} → {_value(fact['b'])}"))
    if result.environment_note:
        info(f"note: {result.environment_note}")
    elif not result.environment_differences:
        click.echo("environment: same runtime facts")
    if result.warning:
        info(f"warning: {result.warning}")


def _node_line(node: LineageNode, focus: int) -> str:
    r = node.record
    marker = "*" if r.id == focus else " "
    head = f"{marker}#{r.id} seed={_value(r.seed)} model={_value(r.model)}"
    if node.changes:
        changed = "; ".join(_change_line(c).split("  (also")[0] for c in node.changes)
        head += f"  [{changed}]"
    elif r.parent_id is not None:
        head += "  [no generation change]"
    return head


def _render_tree(
    node: LineageNode, focus: int, prefix: str = "", last: bool = True, root: bool = True
) -> None:
    branch = "" if root else ("└─ " if last else "├─ ")
    click.echo(sanitize(prefix + branch + _node_line(node, focus)))
    child_prefix = prefix + ("" if root else ("   " if last else "│  "))
    for index, child in enumerate(node.children):
        _render_tree(child, focus, child_prefix, index == len(node.children) - 1, root=False)


@main.command(name="lineage")
@click.argument("record_id", type=int)
def lineage_(record_id: int) -> None:
    """Show the refinement tree of a record (ancestors and descendants, via --parent)
    and what changed at each step. The record itself is marked with *."""
    ctx = app()
    tree = lineage(ctx.ledger(), record_id)
    if ctx.json:
        emit_json(tree.as_dict())
        return
    _render_tree(tree.root, tree.focus)
    if tree.truncated:
        info("warning: the tree was cut at 10,000 records")


@main.command(name="pick")
@click.argument("record_id", type=int)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Pick file to write [default: ./.seedledger-pick.json].",
)
def pick_(record_id: int, out: Path | None) -> None:
    """Lock a record's seed and parameters as the base of the next sweep.

    Writes a small JSON pick file that `seedledger sweep --from-pick` reads.
    """
    ctx = app()
    chosen, path = pick(ctx.ledger(), record_id, out)
    data = {"record_id": chosen.record_id, "seed": chosen.seed, "path": str(path)}
    emit_mapping(data, as_json=ctx.json)
    info(f"picked record {chosen.record_id} (seed {chosen.seed}) into {path}")


@main.command(name="stamp")
@click.argument("record_id", type=int)
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the stamped image here instead of replacing IMAGE (atomically).",
)
@click.option(
    "--c2pa-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also sign a C2PA Content Credential with this PEM certificate chain (leaf first).",
)
@click.option(
    "--c2pa-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The PEM private key of --c2pa-cert's leaf.",
)
def stamp(
    record_id: int, image: Path, out: Path | None, c2pa_cert: Path | None, c2pa_key: Path | None
) -> None:
    """Write provenance into IMAGE (PNG or JPEG): the record id, IPTC DigitalSourceType
    trainedAlgorithmicMedia, and the latest ledger checkpoint, as XMP (and a PNG iTXt
    chunk). `seedledger import` reads it back.

    With --c2pa-cert and --c2pa-key (PNG, JPEG or WEBP) the file also gets a signed C2PA
    manifest carrying the record and its inclusion proof; the record must be sealed and
    IMAGE must be its output. `seedledger verify-file` checks it."""
    ctx = app()
    if (c2pa_cert is None) != (c2pa_key is None):
        raise UsageError("--c2pa-cert and --c2pa-key go together")
    if c2pa_cert is not None and c2pa_key is not None:
        from ledger.workflows.credentials import credential_file

        signed = credential_file(
            ctx.ledger(), record_id, image, out or image, cert_chain=c2pa_cert, key=c2pa_key
        )
        emit_mapping(
            {
                "record_id": signed.record_id,
                "path": signed.path,
                "format": signed.format,
                "c2pa": True,
                "checkpoint_size": signed.tree_size,
                "leaf_index": signed.leaf_index,
            },
            as_json=ctx.json,
        )
        return
    result = stamp_file(ctx.ledger(), record_id, image, out)
    checkpoint = result.checkpoint or {}
    data = {
        "record_id": result.record_id,
        "path": result.path,
        "format": result.format,
        "checkpoint_size": checkpoint.get("size"),
        "leaf_index": checkpoint.get("leaf_index"),
    }
    emit_mapping(data, as_json=ctx.json)
    if result.checkpoint is None:
        info("note: the ledger has no checkpoint yet; stamped without one (seal first to include it)")
