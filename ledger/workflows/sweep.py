"""Seed sweeps, sequential batches, CFG sweeps and parameter grids.

A :class:`SweepPlan` is a base request (Runware task parameters) and a list of cells,
each a seed plus parameter overrides. :func:`run_sweep` generates every cell on a
backend with bounded concurrency and stores every output (and every failure) as a
record under one experiment, fingerprinted, so the experiment can be compared,
audited and shown on a contact sheet.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.backends.base import AsyncBackend, GenerationRequest, request_from_params
from ledger.backends.records import Generated, failed_record, records_from_result
from ledger.backends.registry import open_backend
from ledger.core.records import Source
from ledger.core.seeds import FULL_RANGE, SEED_RANGES, check_seed_for_backend, parse_seed, random_seed
from ledger.errors import BackendError, FingerprintError, InvalidInputError, LedgerError, UsageError
from ledger.fingerprint import Fingerprint, fingerprint
from ledger.store import Ledger
from ledger.store.archive import Archive
from ledger.workflows.contact import ContactCell, write_contact_sheet

log = logging.getLogger(__name__)

__all__ = [
    "SweepCell",
    "SweepOutcome",
    "SweepPlan",
    "parse_number_range",
    "parse_seed_range",
    "parse_vary",
    "plan_sweep",
    "run_sweep",
]

#: Friendly parameter names accepted by --vary, and the Runware task key each sets.
PARAM_ALIASES: dict[str, str] = {
    "cfg": "CFGScale",
    "cfg_scale": "CFGScale",
    "steps": "steps",
    "scheduler": "scheduler",
    "sampler": "scheduler",
    "model": "model",
    "width": "width",
    "height": "height",
    "prompt": "positivePrompt",
    "negative_prompt": "negativePrompt",
    "clip_skip": "clipSkip",
    "strength": "strength",
    "duration": "duration",
    "fps": "fps",
}
MAX_CELLS = 10_000
_RANGE = re.compile(r"^\s*(-?[0-9.]+)\s*\.\.\s*(-?[0-9.]+)\s*(?::\s*([0-9.]+)\s*)?$")


@dataclass(frozen=True)
class SweepCell:
    seed: int
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        parts = [f"seed {self.seed}"] + [f"{k} {v}" for k, v in self.overrides.items()]
        return " · ".join(parts)


@dataclass(frozen=True)
class SweepPlan:
    kind: str  # seed-sweep, batch, cfg-sweep, grid
    base: Mapping[str, Any]
    cells: tuple[SweepCell, ...]

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "base": dict(self.base),
            "cells": [{"seed": c.seed, **dict(c.overrides)} for c in self.cells],
        }


@dataclass(frozen=True)
class SweepOutcome:
    experiment_id: str
    record_ids: tuple[int, ...]
    failures: int
    cost: float
    stopped_by_cost: bool
    #: (cell, record id) in plan order; record id of the failed record for failures.
    cells: tuple[tuple[SweepCell, int], ...]


# -- parsing -------------------------------------------------------------------------------


def parse_seed_range(text: str) -> list[int]:
    """``42..61`` (inclusive) or a comma list ``1,5,9``."""
    text = text.strip()
    if ".." in text:
        low_text, _, high_text = text.partition("..")
        low, high = parse_seed(low_text), parse_seed(high_text)
        if high < low:
            raise InvalidInputError(f"seed range {text!r} runs backwards")
        if high - low + 1 > MAX_CELLS:
            raise InvalidInputError(f"seed range {text!r} has more than {MAX_CELLS} seeds")
        return list(range(low, high + 1))
    return [parse_seed(part) for part in text.split(",") if part.strip()]


def parse_number_range(text: str) -> list[float]:
    """``1..15:1`` (inclusive, step defaults to 1) or a comma list ``3,5.5,7``."""
    match = _RANGE.match(text)
    if not match:
        try:
            return [float(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise InvalidInputError(f"{text!r} is not a range like 1..15:1 or a list 3,5,7") from None
    try:
        low, high = float(match.group(1)), float(match.group(2))
        step = float(match.group(3) or 1)
    except ValueError:
        raise InvalidInputError(f"{text!r} is not a range like 1..15:1") from None
    if step <= 0 or high < low:
        raise InvalidInputError(f"range {text!r} must run upwards with a positive step")
    count = round((high - low) / step) + 1
    if count > MAX_CELLS:
        raise InvalidInputError(f"range {text!r} has more than {MAX_CELLS} values")
    # Computed from the index, not accumulated, so 0.1 steps do not drift.
    return [round(low + i * step, 10) for i in range(count) if low + i * step <= high + 1e-9]


def _typed(value: str) -> Any:
    text = value.strip()
    if re.fullmatch(r"-?[0-9]+", text):
        return int(text)
    if re.fullmatch(r"-?[0-9]*\.[0-9]+", text):
        return float(text)
    return text


def parse_vary(text: str) -> tuple[str, list[Any]]:
    """``steps=20,30,40`` or ``scheduler=DPM++ 2M Karras,Euler a`` -> (task key, values)."""
    name, sep, values = text.partition("=")
    if not sep or not name.strip() or not values.strip():
        raise InvalidInputError(f"--vary {text!r}: expected NAME=VALUE,VALUE,…")
    key = PARAM_ALIASES.get(name.strip().lower(), name.strip())
    if key in ("seed", "taskUUID", "taskType", "numberResults"):
        raise InvalidInputError(f"--vary cannot set {key}; use --seeds/--seed/--count")
    return key, [_typed(v) for v in values.split(",") if v.strip()]


def plan_sweep(
    base: Mapping[str, Any],
    *,
    backend: str = "runware",
    seeds: Sequence[int] | None = None,
    random_count: int | None = None,
    seed: int | None = None,
    count: int | None = None,
    cfg: Sequence[float] | None = None,
    vary: Sequence[tuple[str, Sequence[Any]]] = (),
) -> SweepPlan:
    """The cells of a sweep: every seed × every combination of varied parameters."""
    given = sum(x is not None for x in (seeds, random_count, count))
    if given > 1:
        raise UsageError("choose one of --seeds, --random and --count")
    if count is not None and seed is None:
        raise UsageError("--count needs --seed (the first seed of the batch)")
    seed_range = SEED_RANGES.get(backend, FULL_RANGE)
    kind = "grid"
    if seeds is not None:
        seed_list, kind = list(seeds), "seed-sweep"
    elif random_count is not None:
        if not 1 <= random_count <= MAX_CELLS:
            raise UsageError(f"--random must be 1 … {MAX_CELLS}")
        seed_list, kind = [random_seed(seed_range) for _ in range(random_count)], "seed-sweep"
    elif count is not None:
        assert seed is not None
        if not 1 <= count <= MAX_CELLS:
            raise UsageError(f"--count must be 1 … {MAX_CELLS}")
        seed_list, kind = [seed + i for i in range(count)], "batch"
    elif seed is not None:
        seed_list = [seed]
    elif isinstance(base.get("seed"), int):
        seed_list = [int(base["seed"])]
    else:
        raise UsageError("give seeds: --seeds A..B, --random N, --seed S [--count N]")
    for s in seed_list:
        check_seed_for_backend(s, backend)
    axes: list[tuple[str, list[Any]]] = []
    if cfg is not None:
        axes.append(("CFGScale", list(cfg)))
    axes.extend((key, list(values)) for key, values in vary)
    keys = [key for key, _ in axes]
    if len(set(keys)) != len(keys):
        raise UsageError("the same parameter is varied twice")
    if axes and kind not in ("seed-sweep", "batch"):
        kind = "cfg-sweep" if keys == ["CFGScale"] else "grid"
    elif axes:
        kind = "grid"
    elif kind == "grid":
        kind = "seed-sweep"  # one fixed seed and nothing varied: a sweep of one cell
    combos = list(itertools.product(*(values for _, values in axes))) if axes else [()]
    cells = tuple(SweepCell(s, dict(zip(keys, combo, strict=True))) for s in seed_list for combo in combos)
    if len(cells) > MAX_CELLS:
        raise UsageError(f"the sweep has {len(cells)} cells; the limit is {MAX_CELLS}")
    clean_base = {k: v for k, v in base.items() if k not in ("seed", "taskUUID", "numberResults")}
    return SweepPlan(kind=kind, base=clean_base, cells=cells)


# -- running -------------------------------------------------------------------------------


def _request(plan: SweepPlan, cell: SweepCell, output_format: str | None) -> GenerationRequest:
    params = {**plan.base, **cell.overrides}
    return request_from_params("runware", params, seed=cell.seed, output_format=output_format)


def _fingerprints(generated: Sequence[Generated]) -> list[Fingerprint | None]:
    """Each output fingerprinted as its record's modality (image, video, audio or 3D)."""
    out: list[Fingerprint | None] = []
    for g in generated:
        try:
            out.append(fingerprint(g.data, str(g.record.modality)))
        except FingerprintError:  # stored without a fingerprint; audit reports it
            out.append(None)
    return out


def _sheet_data(generated: Generated, fp: Fingerprint | None) -> bytes:
    """What the contact sheet shows: an image as it is; other media by the fingerprint's
    thumbnail (a video's middle sampled frame, an audio waveform, a mesh projection)."""
    if fp is not None and fp.modality != "image" and fp.thumbnail:
        return fp.thumbnail
    return generated.data


def _archive_outputs(
    archive: Archive, generated: Sequence[Generated], prints: Sequence[Fingerprint | None]
) -> None:
    """Keep each fingerprinted output under its fingerprint's file hash. A full or
    failing archive is logged: the records are stored already and the sweep goes on."""
    for g, fp in zip(generated, prints, strict=True):
        if fp is not None:
            try:
                archive.keep(g.data, fp.file_sha256)
            except LedgerError as exc:
                log.warning("output not archived (its record is stored): %s", exc.message)


async def run_sweep(
    ledger: Ledger,
    backend: AsyncBackend,
    plan: SweepPlan,
    *,
    name: str | None = None,
    parent_id: int | None = None,
    concurrency: int = 4,
    max_cost: float | None = None,
    output_format: str | None = None,
    on_cell: Callable[[int, int], None] | None = None,
    archive: Archive | None = None,
) -> tuple[SweepOutcome, list[tuple[SweepCell, bytes | None]]]:
    """Generate every cell and store the results under a new experiment.

    With an ``archive``, each fingerprinted output's bytes are kept there too (after the
    record is stored: the archive is never the only copy of a record's facts).

    Returns the outcome and, per cell in plan order, what its contact-sheet cell shows
    (the image, or a video/audio/3D output's fingerprint thumbnail; None for a failed
    cell) so callers can build a contact sheet without reading bytes back.
    The cost guard stops launching new cells once recorded costs reach ``max_cost``.
    """
    if concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if parent_id is not None:
        ledger.get(parent_id)
    experiment_id = ledger.create_experiment(plan.kind, plan.describe(), name=name)
    gate = asyncio.Semaphore(concurrency)
    lock = asyncio.Lock()
    spent = 0.0
    stopped = False
    done = 0
    per_cell: list[tuple[SweepCell, bytes | None, int]] = [(c, None, -1) for c in plan.cells]

    async def one(index: int, cell: SweepCell) -> None:
        nonlocal spent, stopped, done
        async with gate:
            if max_cost is not None and spent >= max_cost:
                stopped = True
                return
            request = _request(plan, cell, output_format)
            try:
                result = await backend.generate(request)
            except BackendError as exc:
                record = failed_record(
                    request,
                    exc,
                    backend=backend.name,
                    source=Source.SWEEP,
                    experiment_id=experiment_id,
                    parent_id=parent_id,
                )
                (rid,) = await asyncio.to_thread(ledger.add, [record])
                per_cell[index] = (cell, None, rid)
            else:
                generated = records_from_result(
                    result, source=Source.SWEEP, experiment_id=experiment_id, parent_id=parent_id
                )
                prints = await asyncio.to_thread(_fingerprints, generated)
                ids = await asyncio.to_thread(
                    ledger.add,
                    [g.record for g in generated],
                    fingerprints=prints,
                    environments=[g.environment for g in generated],
                )
                if archive is not None:
                    await asyncio.to_thread(_archive_outputs, archive, generated, prints)
                shown = _sheet_data(generated[0], prints[0]) if generated else None
                per_cell[index] = (cell, shown, ids[0] if ids else -1)
                async with lock:
                    spent += result.cost or 0.0
            async with lock:
                done += 1
                if on_cell:
                    on_cell(done, len(plan.cells))

    await asyncio.gather(*(one(i, c) for i, c in enumerate(plan.cells)))
    stored = [(c, g, rid) for c, g, rid in per_cell if rid != -1]
    outcome = SweepOutcome(
        experiment_id=experiment_id,
        record_ids=tuple(rid for _, _, rid in stored),
        failures=sum(1 for _, g, _ in stored if g is None),
        cost=spent,
        stopped_by_cost=stopped,
        cells=tuple((c, rid) for c, _, rid in stored),
    )
    return outcome, [(c, g) for c, g, _ in stored]


@dataclass(frozen=True)
class SweepReport:
    outcome: SweepOutcome
    contact_png: Path
    contact_html: Path


def sweep(
    ledger: Ledger,
    plan: SweepPlan,
    *,
    backend_name: str,
    backend_url: str | None = None,
    backend_options: Mapping[str, Any] | None = None,
    out_dir: Path | str | None = None,
    name: str | None = None,
    parent_id: int | None = None,
    concurrency: int = 4,
    max_cost: float | None = None,
    output_format: str | None = None,
    on_cell: Callable[[int, int], None] | None = None,
    archive: Archive | None = None,
) -> SweepReport:
    """Run a sweep on a named backend and write its contact sheet (PNG and HTML)."""

    async def go() -> tuple[SweepOutcome, list[tuple[SweepCell, bytes | None]]]:
        async with open_backend(backend_name, backend_url, **dict(backend_options or {})) as backend:
            return await run_sweep(
                ledger,
                backend,
                plan,
                name=name,
                parent_id=parent_id,
                concurrency=concurrency,
                max_cost=max_cost,
                output_format=output_format,
                on_cell=on_cell,
                archive=archive,
            )

    outcome, stored = asyncio.run(go())
    directory = Path(out_dir) if out_dir else Path("sweeps") / outcome.experiment_id
    cells = [
        ContactCell(label=cell.label(), record_id=rid, data=shown)
        for (cell, shown), (_, rid) in zip(stored, outcome.cells, strict=True)
    ]
    title = f"{plan.kind} {outcome.experiment_id}" + (f" — {name}" if name else "")
    png, page = write_contact_sheet(cells, directory, title=title)
    return SweepReport(outcome, png, page)
