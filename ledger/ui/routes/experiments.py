"""`/experiments/ID`: the sweep as a grid laid out by the varied parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ledger.audit.store import fingerprinted_ids
from ledger.core.records import Record
from ledger.core.redaction import redact
from ledger.errors import InvalidInputError
from ledger.store import RecordFilter, browse
from ledger.ui.render import respond
from ledger.ui.state import state
from ledger.ui.views import record_summary, seed_text, size_text
from ledger.workflows.pick import pick_of

#: The largest sweep laid out on one page (a sweep plan has at most 10,000 cells).
MAX_CELLS = 2000

#: Parameters a sweep varies, in the order they become grid axes.
AXES: tuple[tuple[str, str, Callable[[Record], Any]], ...] = (
    ("seed", "seed", lambda r: seed_text(r.seed)),
    ("cfg_scale", "CFG", lambda r: r.cfg_scale),
    ("steps", "steps", lambda r: r.steps),
    ("scheduler", "scheduler", lambda r: r.scheduler or r.scheduler_requested),
    ("model", "model", lambda r: r.model),
    ("size", "size", size_text),
    ("prompt", "prompt", lambda r: r.prompt),
)


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (2, "")
    if isinstance(value, str) and value.isdigit():
        return (0, int(value))
    return (0, value) if isinstance(value, int | float) else (1, str(value))


def grid(rows_of: list[Record]) -> dict[str, Any]:
    """Axes = the varied parameters (first two: rows and columns; all of them in captions)."""
    varied = [(name, label, get) for name, label, get in AXES if len({get(r) for r in rows_of}) > 1]
    # One varied parameter reads left to right; two make rows × columns.
    row_axis = varied[0] if len(varied) > 1 else None
    col_axis = varied[1] if len(varied) > 1 else (varied[0] if varied else None)
    row_values = sorted({row_axis[2](r) for r in rows_of}, key=_sort_key) if row_axis else [None]
    col_values = sorted({col_axis[2](r) for r in rows_of}, key=_sort_key) if col_axis else [None]
    cells: dict[tuple[Any, Any], list[Record]] = {}
    for r in rows_of:
        key = (row_axis[2](r) if row_axis else None, col_axis[2](r) if col_axis else None)
        cells.setdefault(key, []).append(r)
    return {
        "varied": [label for _, label, _ in varied],
        "rows_label": row_axis[1] if row_axis else None,
        "cols_label": col_axis[1] if col_axis else None,
        "cols": col_values,
        "rows": [
            {
                "value": rv,
                "cells": [
                    [
                        {
                            "id": r.id,
                            "status": str(r.status),
                            "caption": ", ".join(
                                f"{label} {get(r)}" for _, label, get in varied if get(r) is not None
                            ),
                        }
                        for r in cells.get((rv, cv), [])
                    ]
                    for cv in col_values
                ],
            }
            for rv in row_values
        ],
    }


def experiment_page(request: Request) -> Response:
    ui = state(request)
    experiment_id = request.path_params["experiment_id"]
    experiment = ui.ledger.experiment(experiment_id)
    members = ui.ledger.query(RecordFilter(experiment=experiment_id), limit=MAX_CELLS + 1)
    truncated = len(members) > MAX_CELLS
    members = members[:MAX_CELLS]
    with_image = fingerprinted_ids(ui.ledger, [r.id for r in members])
    picked: dict[str, Any] | None = None
    pick_id = request.query_params.get("pick", "").strip()
    if pick_id:
        if not pick_id.isdigit():
            raise InvalidInputError("pick must be a record id")
        chosen = next((r for r in members if r.id == int(pick_id)), None)
        if chosen is None:
            raise InvalidInputError(f"record {pick_id} is not in experiment {experiment_id}")
        p = pick_of(chosen)
        picked = {"record_id": p.record_id, "seed": seed_text(p.seed), "base": redact(p.base_params())}
    data = {
        "title": f"Experiment {experiment_id}",
        "experiment": {
            "id": experiment["id"],
            "kind": experiment["kind"],
            "name": experiment["name"],
            "created_at": experiment["created_at"],
            "plan": experiment["plan"],
        },
        "count": len(members),
        "truncated": truncated,
        "grid": grid(members),
        "with_image": sorted(with_image),
        "records": [record_summary(r, fingerprinted=r.id in with_image) for r in members],
        "pick": picked,
    }
    return respond(request, "experiment.html", data)


def experiments_page(request: Request) -> Response:
    rows = [
        {"id": x.id, "kind": x.kind, "name": x.name, "created_at": x.created_at, "records": x.records}
        for x in browse.experiment_list(state(request).ledger)
    ]
    return respond(request, "experiments.html", {"title": "Experiments", "experiments": rows})


routes = [
    Route("/experiments", experiments_page),
    Route("/experiments.json", experiments_page),
    Route("/experiments/{experiment_id:str}.json", experiment_page),
    Route("/experiments/{experiment_id:str}", experiment_page),
]
