"""`seedledger audit` (run, --resume, --dry-run), `audit list` and `audit show`."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import click

from ledger.audit import (
    AuditOptions,
    AuditOutcome,
    Policy,
    Selection,
    get_run,
    list_runs,
    plan_audit,
    results_of,
    resume_audit,
    run_audit,
)
from ledger.cli.app import app, emit_json, emit_mapping, emit_rows, info, main, sanitize
from ledger.cli.options import SEED, IdList, archive_option, merge_ids, record_filter_options
from ledger.cli.progress import ProgressLine
from ledger.errors import PolicyError, UsageError
from ledger.store import RecordFilter

RUN_COLUMNS = (
    "id",
    "created_at",
    "status",
    "selected",
    "pass",
    "drift",
    "fail",
    "error",
    "skipped",
    "policy",
)
RESULT_COLUMNS = ("record_id", "verdict", "outcome", "phash", "psnr", "warnings", "error")
_SHORT = {"expected-drift": "drift"}


def _missing_api_key(plan: Any, options: AuditOptions) -> str | None:
    """Why the run would fail for lack of a Runware API key, or None.

    Checked before a run is created: otherwise every replay would be stored as an
    error that only the Python API's wording explains."""
    from ledger.backends.runware import ENV_API_KEY

    if os.environ.get(ENV_API_KEY):
        return None
    on_runware = sum(1 for p in plan.replays if (options.backend or p.backend).lower() == "runware")
    if not on_runware:
        return None
    return (
        f"{on_runware} record(s) would be replayed on the hosted Runware API, but {ENV_API_KEY} is not "
        "set: export it, or replay on another backend with --replay-backend NAME "
        "(e.g. --replay-backend reference --backend-url URL)"
    )


# -- progress ------------------------------------------------------------------------------


def _progress_bar(line: ProgressLine) -> Callable[[int, int, Mapping[str, int]], None]:
    """The audit's progress callback: a bar with the counts by outcome."""

    def update(done: int, total: int, counts: Mapping[str, int]) -> None:
        line.bar(done, total, " ".join(f"{_SHORT.get(k, k)} {v}" for k, v in sorted(counts.items())))

    return update


async def _with_signals(
    start: Callable[[asyncio.Event, asyncio.Event], Awaitable[AuditOutcome]],
) -> AuditOutcome:
    """Run an audit; the first SIGINT/SIGTERM stops launching replays (in-flight ones
    get their grace period), the second abandons them. Either way the run is marked
    interrupted and can be resumed."""
    stop, abort = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            abort.set()
            return
        stop.set()
        info("\nseedledger: stopping: finishing replays in flight (interrupt again to abandon them)")

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on the main thread
            pass
    try:
        return await start(stop, abort)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


# -- rendering -----------------------------------------------------------------------------


def policy_word(held: bool | None) -> str:
    """How every text output names whether the run met its --fail-on policy."""
    return "-" if held is None else ("held" if held else "failed")


def _run_row(run: Any) -> dict[str, Any]:
    summary = run.summary or {}
    outcomes = summary.get("outcomes") or {}
    return {
        "id": run.id,
        "created_at": run.created_at,
        "status": run.status,
        "selected": run.selected_count,
        "pass": outcomes.get("pass", 0),
        "drift": outcomes.get("expected-drift", 0),
        "fail": outcomes.get("fail", 0),
        "error": outcomes.get("error", 0),
        "skipped": outcomes.get("skipped", 0),
        "policy": policy_word(summary.get("policy_held")),
    }


def _result_row(result: Any) -> dict[str, Any]:
    d = result.distances or {}
    return {
        "record_id": result.record_id,
        "verdict": result.verdict,
        "outcome": result.outcome,
        "phash": d.get("phash_distance"),
        "psnr": "inf" if d and d.get("thumb_psnr_db") is None else d.get("thumb_psnr_db"),
        "warnings": ",".join(result.warning_codes) or None,
        "error": result.error_code,
    }


def _report(outcome: AuditOutcome, as_json: bool) -> None:
    run = outcome.run
    if as_json:
        emit_json(run.to_dict())
    else:
        summary = run.summary or {}
        emit_mapping(
            {
                "run": run.id,
                "status": run.status,
                "selected": run.selected_count,
                "outcomes": summary.get("outcomes"),
                "verdicts": summary.get("verdicts"),
                "cost": summary.get("cost"),
                "fail_on": ",".join(outcome.policy.names) or "none",
                "policy": policy_word(summary.get("policy_held")),
            },
            as_json=False,
        )
    if outcome.interrupted:
        left = (run.summary or {}).get("pending")
        stopped = (run.summary or {}).get("stopped")
        why = "the cost limit was reached" if stopped == "max-cost" else "interrupted"
        info(f"seedledger: {why}; {left} record(s) left: resume with `seedledger audit --resume {run.id}`")
        if stopped != "max-cost":
            sys.exit(130)
        raise PolicyError(f"audit run {run.id} stopped at --max-cost with {left} record(s) not replayed")
    if not outcome.policy_held:
        violations = (run.summary or {}).get("violations")
        raise PolicyError(
            f"audit run {run.id}: {violations} result(s) fail the policy "
            f"(--fail-on {','.join(outcome.policy.names)}); see `seedledger audit show {run.id}`"
        )


# -- commands ------------------------------------------------------------------------------


@main.group(invoke_without_command=True)
@record_filter_options
@click.option("--ids", "id_list", type=IdList(), default=None, help="Record ids: 1,2,5-9.")
@click.option("--sample", type=int, help="Audit a random sample of N selected records.")
@click.option("--sample-seed", type=SEED, help="Seed of the sample (stored with the run; default random).")
@click.option(
    "--replay-backend",
    "backend_name",
    metavar="NAME",
    help="Replay on this backend instead of each record's own (--backend filters records).",
)
@click.option(
    "--backend-url",
    metavar="URL",
    help="API endpoint of the replay backend (default: the backend's own; for reference, an "
    "in-process reference server on a free loopback port).",
)
@click.option("--concurrency", type=int, default=4, show_default=True, help="Replays in flight at once.")
@click.option("--rate", type=float, help="At most this many replay requests per second per backend.")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds per HTTP request.")
@click.option("--attempts", type=int, default=4, show_default=True, help="HTTP attempts per replay.")
@click.option("--max-cost", type=float, help="Refuse (or stop) past this total replay cost.")
@click.option("--force", is_flag=True, help="Replay records whose warnings block replay (seedless, no seed).")
@click.option("--no-input-check", is_flag=True, help="Do not fetch input image URLs before replaying.")
@click.option(
    "--fail-on",
    default="fail,error",
    show_default=True,
    help="Outcomes that fail the run (exit 8): fail, error, drift, skipped, all, none.",
)
@archive_option(
    "Compare image replays with their archived originals at full resolution (PSNR/SSIM)",
    type=click.Path(exists=True, file_okay=False, resolve_path=True),
)
@click.option("--dry-run", is_flag=True, help="List what would be replayed and its estimated cost.")
@click.option("--resume", "resume_id", metavar="RUN", help="Continue an interrupted run.")
@click.pass_context
def audit(
    ctx: click.Context,
    where: RecordFilter,
    id_list: tuple[int, ...] | None,
    sample: int | None,
    sample_seed: int | None,
    backend_name: str | None,
    backend_url: str | None,
    concurrency: int,
    rate: float | None,
    timeout: float,
    attempts: int,
    max_cost: float | None,
    force: bool,
    no_input_check: bool,
    fail_on: str,
    archive_dir: str | None,
    dry_run: bool,
    resume_id: str | None,
) -> None:
    """Replay records and compare each replay with the stored original.

    Every selected record gets one result: pass (identical or near-identical),
    expected-drift (similar, with a stochastic scheduler), fail, skipped (seedless
    model, no seed, inputs gone: replay anyway with --force) or error. Exit 8 when an
    outcome named by --fail-on occurred; 130 when interrupted (then --resume RUN).
    """
    if ctx.invoked_subcommand is not None:
        return
    obj = app()
    ledger = obj.ledger()
    policy = Policy.parse(fail_on)
    bar = ProgressLine("audit")
    progress = _progress_bar(bar)
    if resume_id is not None:
        source = click.core.ParameterSource
        overrides: dict[str, Any] = {"backend_url": backend_url}
        for name, value in (
            ("concurrency", concurrency),
            ("rate", rate),
            ("timeout", timeout),
            ("attempts", attempts),
            ("max_cost", max_cost),
            ("archive_dir", archive_dir),
        ):
            if ctx.get_parameter_source(name) is source.COMMANDLINE:
                overrides["archive" if name == "archive_dir" else name] = value
        given_policy = policy if ctx.get_parameter_source("fail_on") is source.COMMANDLINE else None
        try:
            outcome = asyncio.run(
                _with_signals(
                    lambda stop, abort: resume_audit(
                        ledger,
                        resume_id,
                        overrides=overrides,
                        policy=given_policy,
                        progress=progress,
                        stop=stop,
                        abort=abort,
                    )
                )
            )
        finally:
            bar.close()
        _report(outcome, obj.json)
        return

    where = merge_ids(where, id_list or ())
    selection = Selection(where=where, sample=sample, sample_seed=sample_seed)
    options = AuditOptions(
        backend=backend_name,
        backend_url=backend_url,
        concurrency=concurrency,
        rate=rate,
        timeout=timeout,
        attempts=attempts,
        max_cost=max_cost,
        force=force,
        check_inputs=not no_input_check,
        archive=archive_dir,
    )
    plan = plan_audit(ledger, selection, options)
    no_key = _missing_api_key(plan, options)
    if no_key is not None and not dry_run:
        raise UsageError(no_key)
    if dry_run:
        rows = [
            {
                "record_id": p.record_id,
                "backend": options.backend or p.backend,
                "action": p.action,
                "cost": p.cost,
                "reason": p.code,
            }
            for p in plan.records
        ]
        emit_rows(rows, ("record_id", "backend", "action", "cost", "reason"), as_json=obj.json)
        summary = plan.to_dict()
        info(
            f"dry run: {summary['actions'].get('replay', 0)} of {summary['selected']} record(s) would be "
            f"replayed, estimated cost {summary['estimated_cost']:g}"
            + (f" ({plan.unknown_cost} without a recorded cost)" if plan.unknown_cost else "")
            + (f"; sample seed {plan.selection.sample_seed}" if plan.selection.sample is not None else "")
        )
        if no_key is not None:
            info(f"warning: the real run would fail: {no_key}")
        return
    if not plan.records:
        raise UsageError("no records match the selection; nothing to audit")
    try:
        outcome = asyncio.run(
            _with_signals(
                lambda stop, abort: run_audit(
                    ledger, selection, options, policy, progress=progress, stop=stop, abort=abort, plan=plan
                )
            )
        )
    finally:
        bar.close()
    _report(outcome, obj.json)


@audit.command("list")
@click.option("--limit", type=int, default=50, show_default=True, help="Most recent runs to show.")
def audit_list(limit: int) -> None:
    """Audit runs, most recent first."""
    obj = app()
    runs = list_runs(obj.ledger(), limit=limit)
    if obj.json:
        for run in runs:
            emit_json(run.to_dict())
        return
    emit_rows((_run_row(r) for r in runs), RUN_COLUMNS, as_json=False)


@audit.command("show")
@click.argument("run_id", metavar="RUN")
@click.option("--thumbnails", is_flag=True, help="With --json: include replay thumbnails (PNG hex).")
@click.option("--json", "local_json", is_flag=True, help="Print as JSON.")
def audit_show(run_id: str, thumbnails: bool, local_json: bool) -> None:
    """One audit run and its results."""
    obj = app()
    ledger = obj.ledger()
    run = get_run(ledger, run_id)
    results = results_of(ledger, run.id)
    if obj.json or local_json:
        emit_json({"run": run.to_dict(), "results": [r.to_dict(thumbnail=thumbnails) for r in results]})
        return
    data = run.to_dict()
    summary = data.pop("summary") or {}
    data["fail_on"] = ",".join((data.pop("policy") or {}).get("fail_on") or []) or "none"
    data.update({k: summary.get(k) for k in ("outcomes", "verdicts", "cost", "pending")})
    data["policy"] = policy_word(summary.get("policy_held"))
    emit_mapping(data, as_json=False)
    click.echo("")
    emit_rows((_result_row(r) for r in results), RESULT_COLUMNS, as_json=False)
    errors = [r for r in results if r.error]
    for r in errors[:20]:
        info(f"record {r.record_id}: {r.error_code}: {sanitize(r.error or '')}")
