"""`seedledger sweep`: seed sweeps, batches, CFG sweeps and grids on a backend."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from ledger.cli.app import app, emit_json, info, main
from ledger.cli.options import SEED, archive_option
from ledger.cli.progress import ProgressLine
from ledger.errors import InvalidInputError, UsageError


def _base_from_options(options: dict[str, Any]) -> dict[str, Any]:
    if not options["model"]:
        raise UsageError("give --from-record ID, --from-pick FILE, or at least --model and --prompt")
    task = options["task"]
    base: dict[str, Any] = {
        "taskType": task,
        "model": options["model"],
        "positivePrompt": options["prompt"] or "",
        "outputType": "base64Data",
    }
    if task in ("imageInference", "videoInference"):
        base.update(width=options["width"], height=options["height"])
    if task == "imageInference":
        base.update(steps=options["steps"], CFGScale=options["cfg_scale"])
    if options["duration"] is not None:
        if task not in ("videoInference", "audioInference"):
            raise UsageError("--duration is for --task videoInference or audioInference")
        base["duration"] = options["duration"]
    if options["negative_prompt"]:
        base["negativePrompt"] = options["negative_prompt"]
    if options["scheduler"]:
        base["scheduler"] = options["scheduler"]
    return base


@main.command()
@click.option("--from-record", "from_record", type=int, help="Use this record's parameters as the base.")
@click.option(
    "--from-pick",
    "from_pick",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Use a file written by `seedledger pick` as the base.",
)
@click.option(
    "--task",
    type=click.Choice(["imageInference", "videoInference", "audioInference", "3dInference"]),
    default="imageInference",
    show_default=True,
    help="Task type (when not starting from a record); outputs are fingerprinted as their modality.",
)
@click.option("--duration", type=float, help="Seconds of video or audio (video and audio tasks).")
@click.option("--model", help="Model AIR (when not starting from a record).")
@click.option("--prompt", help="Positive prompt.")
@click.option("--negative-prompt", help="Negative prompt.")
@click.option("--width", type=click.IntRange(64, 8192), default=512, show_default=True)
@click.option("--height", type=click.IntRange(64, 8192), default=512, show_default=True)
@click.option("--steps", type=click.IntRange(1, 100), default=25, show_default=True)
@click.option("--cfg-scale", type=float, default=7.0, show_default=True)
@click.option("--scheduler", help="Scheduler name, e.g. 'DPM++ 2M Karras'.")
@click.option("--seeds", help="Seed sweep: A..B (inclusive) or a list 1,5,9.")
@click.option("--random", "random_count", type=int, help="Seed sweep over N random seeds.")
@click.option("--seed", type=SEED, help="A fixed seed (first of the batch with --count).")
@click.option("--count", type=int, help="Sequential batch: --seed S --count N gives S, S+1, …")
@click.option("--cfg", help="CFG sweep: A..B:STEP or a list, e.g. 1..15:1.")
@click.option("--vary", multiple=True, help="Grid axis NAME=V1,V2,… (repeatable), e.g. steps=20,30.")
@click.option(
    "--backend",
    "backend_name",
    default="runware",
    show_default=True,
    help="Backend: runware, reference, a1111, comfyui, diffusers.",
)
@click.option(
    "--backend-url",
    help="Backend endpoint (default: the backend's own; for reference, an in-process reference server).",
)
@click.option("--name", help="A name for the experiment.")
@click.option("--parent", "parent_id", type=int, help="Parent record (refinement lineage).")
@click.option("--concurrency", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--max-cost", type=float, help="Stop launching cells once recorded cost reaches this.")
@click.option(
    "--output-format",
    type=click.Choice(["PNG", "JPG", "WEBP"]),
    help="Image output format [default: PNG for image tasks; other tasks keep their own].",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the contact sheet [default: ./sweeps/EXPERIMENT].",
)
@archive_option("Also keep each output in this output archive")
@click.option("--dry-run", is_flag=True, help="Print the plan; generate nothing.")
def sweep(**options: Any) -> None:
    """Run a seed sweep, batch, CFG sweep or grid and record every output.

    \b
    seedledger sweep --backend reference --backend-url URL --model runware:101@1 \\
        --prompt "a lighthouse" --seeds 42..61
    seedledger sweep ... --seed 42 --count 8           # sequential batch
    seedledger sweep ... --seed 42 --cfg 1..15:1       # CFG sweep
    seedledger sweep ... --seed 42 --vary steps=20,30,40 --vary "scheduler=DPM++ 2M Karras,Euler a"
    """
    from ledger.store.archive import Archive
    from ledger.workflows.sweep import (
        parse_number_range,
        parse_seed_range,
        parse_vary,
        plan_sweep,
    )
    from ledger.workflows.sweep import (
        sweep as run,
    )

    ctx = app()
    backend_name = options["backend_name"]
    parent_id = options["parent_id"]
    if options["from_record"] is not None and options["from_pick"] is not None:
        raise UsageError("choose one of --from-record and --from-pick")
    if options["from_record"] is not None:
        source = ctx.ledger().get(options["from_record"])
        base = dict(source.params)
        parent_id = parent_id if parent_id is not None else source.id
    elif options["from_pick"] is not None:
        from ledger.workflows.pick import load_pick

        picked = load_pick(options["from_pick"])
        base = dict(picked.params)
        parent_id = parent_id if parent_id is not None else picked.record_id
        if options["seed"] is None and options["seeds"] is None and options["random_count"] is None:
            options["seed"] = picked.seed
    else:
        base = _base_from_options(options)
    try:
        plan = plan_sweep(
            base,
            backend=backend_name,
            seeds=parse_seed_range(options["seeds"]) if options["seeds"] else None,
            random_count=options["random_count"],
            seed=options["seed"],
            count=options["count"],
            cfg=parse_number_range(options["cfg"]) if options["cfg"] else None,
            vary=[parse_vary(v) for v in options["vary"]],
        )
    except InvalidInputError as exc:
        raise click.UsageError(str(exc)) from None
    output_format = _output_format(options["output_format"], plan.base)
    if options["dry_run"]:
        info(f"dry run: {plan.kind} with {len(plan.cells)} cell(s)")
        if ctx.json:
            emit_json(plan.describe())
        else:
            for cell in plan.cells:
                click.echo(cell.label())
        return
    ledger = ctx.ledger(create_missing=True)
    line = ProgressLine("sweep")

    def progress(done: int, total: int) -> None:
        line.show(f"{done}/{total} cells")

    report = run(
        ledger,
        plan,
        backend_name=backend_name,
        backend_url=options["backend_url"],
        out_dir=options["out_dir"],
        name=options["name"],
        parent_id=parent_id,
        concurrency=options["concurrency"],
        max_cost=options["max_cost"],
        output_format=output_format,
        on_cell=progress,
        archive=Archive.open(options["archive_dir"]) if options["archive_dir"] else None,
    )
    line.close()
    outcome = report.outcome
    summary = {
        "experiment_id": outcome.experiment_id,
        "kind": plan.kind,
        "records": list(outcome.record_ids),
        "failures": outcome.failures,
        "cost": outcome.cost,
        "stopped_by_cost": outcome.stopped_by_cost,
        "contact_sheet_png": str(report.contact_png),
        "contact_sheet_html": str(report.contact_html),
    }
    if ctx.json:
        emit_json(summary)
    else:
        click.echo(outcome.experiment_id)
    info(
        f"{plan.kind}: {len(outcome.record_ids)} record(s) in experiment {outcome.experiment_id}"
        f" ({outcome.failures} failed); contact sheet {report.contact_html}"
        + (" — stopped by --max-cost" if outcome.stopped_by_cost else "")
    )


def _output_format(given: str | None, base: Mapping[str, Any]) -> str | None:
    """PNG for image tasks unless told otherwise; a video, audio or 3D task keeps its own."""
    image = str(base.get("taskType") or "imageInference") == "imageInference"
    if given is not None and not image:
        raise UsageError("--output-format is for image tasks (PNG, JPG, WEBP)")
    return given or ("PNG" if image else None)
