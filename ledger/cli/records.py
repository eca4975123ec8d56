"""`seedledger record`, `list` and `show`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import click
from sqlalchemy import select

from ledger.cli.app import app, emit_json, emit_mapping, emit_rows, info, main
from ledger.cli.options import record_filter_options
from ledger.core.documents import parse_documents
from ledger.core.records import NewRecord, Record, Source
from ledger.errors import InvalidInputError
from ledger.store import ORDERINGS, Ledger, RecordFilter
from ledger.store.schema import records as records_table

LIST_COLUMNS = ("id", "created_at", "model", "scheduler", "seed", "size", "status", "prompt")
DRY_RUN_COLUMNS = LIST_COLUMNS[1:]


def record_dict(record: Record) -> dict[str, Any]:
    data = dataclasses.asdict(record)
    data["tags"] = list(record.tags)
    return data


def _summary(record: NewRecord) -> dict[str, Any]:
    prompt = record.prompt or ""
    return {
        "id": getattr(record, "id", None),
        "created_at": record.created_at,
        "model": record.model,
        "scheduler": record.scheduler or record.scheduler_requested,
        "seed": record.seed,
        "size": f"{record.width}x{record.height}" if record.width and record.height else None,
        "status": record.status,
        "prompt": prompt if len(prompt) <= 40 else prompt[:39] + "…",
    }


@main.command()
@click.argument("file", type=click.File("r", encoding="utf-8"), default="-")
@click.option("--dry-run", is_flag=True, help="Validate and show what would be stored.")
@click.option("--tag", "tags", multiple=True, help="Add a tag to every record (repeatable).")
@click.option("--experiment", help="Experiment id for every record.")
@click.option("--parent", "parent_id", type=int, help="Parent record id (refinement lineage).")
def record(
    file: Any, dry_run: bool, tags: tuple[str, ...], experiment: str | None, parent_id: int | None
) -> None:
    """Record Runware request/response documents from FILE (default: stdin).

    FILE holds one JSON document {"request": …, "response": …}, an array of them,
    or JSON Lines. Nothing is written unless every document is valid.
    """
    ctx = app()
    try:
        text = file.read()
    except UnicodeDecodeError:
        raise InvalidInputError("input is not UTF-8 text") from None
    new_records = parse_documents(
        text, source=Source.API, tags=tags, experiment_id=experiment, parent_id=parent_id
    )
    if dry_run:
        if ctx.json:
            for r in new_records:
                emit_json(dataclasses.asdict(r))
        else:
            emit_rows([_summary(r) for r in new_records], DRY_RUN_COLUMNS, as_json=False)
        info(f"dry run: {len(new_records)} record(s) would be stored; nothing was written")
        return
    ledger = ctx.ledger(create_missing=True)
    if parent_id is not None:
        ledger.get(parent_id)  # NotFoundError before anything is written
    ids, present = _add_counting(ledger, new_records)
    if ctx.json:
        for rid in ids:
            emit_json({"id": rid})
    else:
        click.echo(" ".join(str(i) for i in ids))
    new = len(set(ids) - present)
    info(f"recorded {new} new record(s), {len(present)} already present, in {ledger.display_url}")


def _add_counting(ledger: Ledger, new_records: list[NewRecord]) -> tuple[list[int], set[int]]:
    """Store records; return their ids and the ids that were already stored.

    Both in one write transaction, so the count is exact: a re-run of the same input
    says "0 new", not "recorded 1"."""
    keys = list({r.idempotency_key for r in new_records if r.idempotency_key})
    with ledger.writing() as conn:
        present: set[int] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            present.update(
                int(rid)
                for (rid,) in conn.execute(
                    select(records_table.c.id).where(records_table.c.idempotency_key.in_(chunk))
                )
            )
        return ledger.add(new_records, conn=conn), present


@main.command(name="list")
@record_filter_options
@click.option("--order", type=click.Choice(ORDERINGS), default="id", show_default=True)
@click.option("--desc", is_flag=True, help="Descending order.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=None,
    help="At most this many (default and 0: every match).",
)
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many first.")
@click.option(
    "--after",
    type=click.IntRange(min=0),
    default=None,
    help="Only records after this id in the listing (keyset paging with --limit; --order id).",
)
def list_(
    where: RecordFilter, order: str, desc: bool, limit: int | None, offset: int, after: int | None
) -> None:
    """List records matching the filters (JSON Lines with --json): every match unless
    --limit is given; page with --limit N --after LAST_ID (or --offset)."""
    ctx = app()
    limit = limit or None
    ledger = ctx.ledger()
    if order == "id" and not desc and limit is None and not offset and after is None:
        found: Iterable[Record] = ledger.iter_records(where)  # every match, in flat memory
    else:
        found = ledger.query(where, order_by=order, descending=desc, limit=limit, offset=offset, after=after)
    if ctx.json:
        emit_rows((record_dict(r) for r in found), (), as_json=True)
        return
    emit_rows([_summary(r) for r in found], LIST_COLUMNS, as_json=False)


@main.command()
@click.argument("record_id", type=int)
def show(record_id: int) -> None:
    """Show one record in full, with what one asks next: its fingerprint, warnings,
    every audit result (oldest first) and its place in the signed log."""
    from ledger.audit.history import audit_history, log_position
    from ledger.core.warnings import warnings_for
    from ledger.errors import NotFoundError

    ctx = app()
    ledger = ctx.ledger()
    record = ledger.get(record_id)
    try:
        fingerprint: dict[str, Any] | None = ledger.fingerprint_of(record_id).to_dict()
    except NotFoundError:
        fingerprint = None
    warnings = warnings_for(record)
    audits = audit_history(ledger, record_id)
    log = log_position(ledger, record_id)
    environment = ledger.environment_of(record_id)
    if ctx.json:
        emit_json(
            {
                **record_dict(record),
                "environment": environment,
                "fingerprint": fingerprint,
                "warnings": [w.to_dict() for w in warnings],
                "audits": [a.to_dict() for a in audits],
                "log": log.to_dict(),
            }
        )
        return
    emit_mapping(record_dict(record), as_json=False)
    click.echo("")
    emit_mapping(
        {
            "fingerprint": _fingerprint_line(fingerprint, record_id),
            "warnings": "; ".join(f"{w.code} ({w.severity}): {w.explanation}" for w in warnings) or "none",
            "audits": "; ".join(
                f"{a.outcome} ({a.verdict}) in run {a.run_id} on {a.run_created_at:%Y-%m-%d %H:%M}Z"
                + (f" on {a.backend}" if a.backend else "")
                for a in audits
            )
            or "never audited",
            "log": _log_line(log, record_id),
            "environment": _environment_line(environment),
        },
        as_json=False,
    )


def _environment_line(environment: dict[str, Any] | None) -> str:
    if not environment:
        return "not reported (only in-process pipelines report their runtime)"
    keys = (
        "torch",
        "diffusers",
        "device",
        "device_name",
        "dtype",
        "cuda",
        "threads",
        "deterministic_algorithms",
    )
    return ", ".join(f"{k} {environment[k]}" for k in keys if environment.get(k) is not None)


def _fingerprint_line(fingerprint: dict[str, Any] | None, record_id: int) -> str:
    if fingerprint is None:
        return f"none: attach one with `seedledger fingerprint {record_id} FILE`"
    fp = fingerprint
    size = f"{fp['width']}x{fp['height']}"
    hashes = f"pixels {fp['pixel_sha256'][:16]}…, phash {fp['phash']}"
    return f"{hashes}, {size} {fp['media_type']} ({fp['version']})"


def _log_line(log: Any, record_id: int) -> str:
    if log.leaf_index is None:
        return "not sealed yet: run `seedledger seal`"
    where = f"leaf {log.leaf_index}, sealed {log.sealed_at:%Y-%m-%d %H:%M}Z"
    if log.in_checkpoint:
        size = log.checkpoint_size
        return f"{where}; in the signed checkpoint of size {size}: `seedledger prove {record_id}`"
    return f"{where}; not in a signed checkpoint yet: run `seedledger seal`"
