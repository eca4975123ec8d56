"""`seedledger check`: the warnings of records, without replaying anything."""

from __future__ import annotations

import click

from ledger.audit.checks import CheckRun, check_records
from ledger.cli.app import app, emit_json, emit_rows, info, main
from ledger.cli.options import IdList, merge_ids, record_filter_options
from ledger.core.warnings import Severity
from ledger.errors import PolicyError
from ledger.store import RecordFilter


@main.command()
@record_filter_options
@click.option("--ids", "id_list", type=IdList(), default=None, help="Record ids: 1,2,5-9.")
@click.option(
    "--refresh", is_flag=True, help="Fetch input image URLs again (bounded) to refresh inputs-unavailable."
)
@click.option(
    "--fail-on",
    "fail_on",
    type=click.Choice([s.value for s in Severity]),
    help="Exit 8 if a record has a warning of this severity or worse.",
)
@click.option("--all", "show_all", is_flag=True, help="Also list records without warnings.")
def check(
    where: RecordFilter, id_list: tuple[int, ...] | None, refresh: bool, fail_on: str | None, show_all: bool
) -> None:
    """Warnings of records without replaying them; stored for reports.

    Prints each record with warnings, then the count by code (with --json: one JSON
    line per record, then {"counts": …}).
    """
    obj = app()
    ledger = obj.ledger()
    run = CheckRun()
    rows = []
    for record, warnings in check_records(ledger, merge_ids(where, id_list or ()), run, refresh=refresh):
        if not warnings and not show_all:
            continue
        if obj.json:
            emit_json(
                {"record_id": record.id, "model": record.model, "warnings": [w.to_dict() for w in warnings]}
            )
        else:
            worst = max((w.severity for w in warnings), key=lambda s: s.rank, default=None)
            rows.append(
                {
                    "record_id": record.id,
                    "severity": str(worst) if worst else None,
                    "model": record.model,
                    "seed": record.seed,
                    "scheduler": record.scheduler or record.scheduler_requested,
                    "warnings": ",".join(w.code for w in warnings) or None,
                }
            )
    counts = run.ordered_counts()
    if obj.json:
        emit_json({"checked": run.checked, "with_warnings": run.with_warnings, "counts": counts})
    else:
        emit_rows(rows, ("record_id", "severity", "model", "seed", "scheduler", "warnings"), as_json=False)
        click.echo("")
        emit_rows(
            ({"code": code, "records": n} for code, n in counts.items()), ("code", "records"), as_json=False
        )
        info(f"checked {run.checked} record(s); {run.with_warnings} with warnings")
    if fail_on is not None:
        bad = run.at_or_above(Severity(fail_on))
        if bad:
            raise PolicyError(f"{bad} record(s) have a warning of severity {fail_on} or worse")
