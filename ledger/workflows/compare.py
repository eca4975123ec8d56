"""`seedledger diff A B`: what differs between two records, and whether it is one thing.

Generation parameters are compared by meaning, each counted once:

1. the record's generation columns (backend, model, seed, scheduler, prompt, size,
   steps, CFG, …), the same for every format;
2. then the request parameters (``params``, flattened to ``params.a.b[0]``) that are
   not already a column. A params leaf is a column's *mirror* on a record when its key
   is one of that column's spellings (``CFGScale``, ``CFG scale``, ``cfg``, ``Size-1``,
   ``noise_seed``, …) and its value is that record's column value: it joins the
   column's change (``also params.CFGScale``) and never counts again. Every other leaf
   that differs is one change of its own, never grouped by coincidentally equal values.

Request parameters of two different formats (an A1111 infotext and a ComfyUI graph, say)
have no paths in common: only the columns are compared, and the comparison says so.
A value one side lacks is *absent*. Bookkeeping (ids, UUIDs, times, cost, tags, the raw
infotext/UI workflow, import file info) is reported apart and never counts as a
generation change. A comparison is *controlled* when at most one parameter changed.

The runtime environments (``record_environments``) are compared apart: what differs
there (torch version, device, dtype, attention, determinism flags…) is not a
parameter the caller chose, so it never makes a comparison uncontrolled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ledger.core import environment as core_environment
from ledger.core.records import Record

#: Record columns that are generation parameters, in display order, with labels.
GENERATION_COLUMNS: Final[dict[str, str]] = {
    "backend": "backend",
    "task_type": "task type",
    "modality": "modality",
    "model": "model",
    "seed": "seed",
    "scheduler": "scheduler",
    "scheduler_requested": "scheduler (requested)",
    "prompt": "prompt",
    "negative_prompt": "negative prompt",
    "width": "width",
    "height": "height",
    "steps": "steps",
    "cfg_scale": "CFG scale",
    "output_format": "output format",
}
#: Columns folded into another column's change (same setting, two spellings).
_FOLD_COLUMNS: Final = {"scheduler_requested": "scheduler"}
BOOKKEEPING_COLUMNS: Final = (
    "idempotency_key",
    "seed_origin",
    "task_uuid",
    "output_uuid",
    "output_index",
    "cost",
    "source",
    "experiment_id",
    "parent_id",
    "tags",
    "status",
    "error_code",
    "error",
    "created_at",
)
#: Top-level params keys that identify or transport a request, or re-encode fields
#: parsed elsewhere (the raw infotext, the UI workflow), not generation settings.
BOOKKEEPING_PARAMS: Final = frozenset(
    {
        "taskUUID",
        "deliveryMethod",
        "includeCost",
        "webhookURL",
        "uploadEndpoint",
        "outputType",
        "apiKey",
        "format",
        "infotext",
        "workflow",
        "defaulted",
        "import",
        "stamp",
        "output_matched_by",
    }
)

#: Stands for a value one record does not have; shown as "absent".
ABSENT: Final = "absent"
_MISSING: Final = object()

#: How request parameters spell each column, per format (Runware task keys, A1111
#: infotext names, ComfyUI node inputs, diffusers arguments), matched on a leaf's own key.
_COLUMN_KEYS: Final[dict[str, frozenset[str]]] = {
    "task_type": frozenset({"taskType"}),
    "model": frozenset({"model", "Model", "ckpt_name", "checkpoint"}),
    "seed": frozenset({"seed", "Seed", "noise_seed"}),
    "scheduler": frozenset({"scheduler", "sampler", "sampler_name", "Sampler"}),
    "prompt": frozenset({"positivePrompt", "prompt", "text"}),
    "negative_prompt": frozenset({"negativePrompt", "negative_prompt", "text"}),
    "width": frozenset({"width", "Size-1"}),
    "height": frozenset({"height", "Size-2"}),
    "steps": frozenset({"steps", "Steps", "num_inference_steps"}),
    "cfg_scale": frozenset({"CFGScale", "CFG scale", "cfg", "cfg_scale", "guidance_scale"}),
    "output_format": frozenset({"outputFormat"}),
}


@dataclass(frozen=True)
class Change:
    """One changed setting: ``name`` (column or params path), before/after, and every
    field that carries it."""

    name: str
    label: str
    a: Any
    b: Any
    fields: tuple[str, ...]

    @property
    def a_missing(self) -> bool:
        """A has no value here (no such params leaf, or an empty column)."""
        return self.a is _MISSING or self.a is None

    @property
    def b_missing(self) -> bool:
        return self.b is _MISSING or self.b is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "a": None if self.a is _MISSING else self.a,
            "b": None if self.b is _MISSING else self.b,
            "a_missing": self.a_missing,
            "b_missing": self.b_missing,
            "fields": list(self.fields),
        }


@dataclass(frozen=True)
class Comparison:
    a_id: int
    b_id: int
    changes: tuple[Change, ...]  # generation parameters
    bookkeeping: tuple[Change, ...]
    #: Set when the request parameters were not compared (two different formats).
    note: str | None = None
    #: The runtime environment of each record (None: it reported none).
    environment_a: Mapping[str, Any] | None = None
    environment_b: Mapping[str, Any] | None = None

    @property
    def environment_differences(self) -> list[dict[str, Any]]:
        """Each fact both environments report with different values."""
        return core_environment.compare(self.environment_a, self.environment_b)

    @property
    def environment_note(self) -> str | None:
        missing = [
            f"record {rid}"
            for rid, env in ((self.a_id, self.environment_a), (self.b_id, self.environment_b))
            if not env
        ]
        if not missing:
            return None
        return f"{' and '.join(missing)} reported no runtime environment: environments not compared"

    @property
    def controlled(self) -> bool:
        """At most one generation parameter changed."""
        return len(self.changes) <= 1

    @property
    def warning(self) -> str | None:
        if self.controlled:
            return None
        names = ", ".join(c.label for c in self.changes)
        return f"not a controlled comparison: {len(self.changes)} generation parameters changed ({names})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "a": self.a_id,
            "b": self.b_id,
            "controlled": self.controlled,
            "warning": self.warning,
            "note": self.note,
            "changes": [c.as_dict() for c in self.changes],
            "bookkeeping": [c.as_dict() for c in self.bookkeeping],
            "environment": {
                "a": None if self.environment_a is None else dict(self.environment_a),
                "b": None if self.environment_b is None else dict(self.environment_b),
                "differences": self.environment_differences,
                "note": self.environment_note,
            },
        }


def flatten(value: Any, prefix: str) -> dict[str, Any]:
    """Leaves of a JSON-like value by path (``a.b[0].c``); empty containers are leaves."""
    out: dict[str, Any] = {}
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}"))
    elif isinstance(value, list | tuple) and value:
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{index}]"))
    else:
        out[prefix] = value
    return out


def _norm(value: Any) -> Any:
    """A value for matching mirrors: numbers (and numeric strings) by value."""
    if value is _MISSING or value is None:
        return ("missing",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        number = float(value)
        if math.isfinite(number) and number.is_integer():
            return ("num", int(value) if isinstance(value, int) else int(number))
        return ("num", number)
    if isinstance(value, str):
        text = value.strip()
        try:
            if text and text.lstrip("-").isdigit():
                return ("num", int(text))
            number = float(text)
            if math.isfinite(number):
                return ("num", int(number) if number.is_integer() else number)
        except ValueError:
            pass
        return ("str", value)
    return ("other", repr(value))


def _values(record: Record, name: str) -> Any:
    value = getattr(record, name)
    if hasattr(value, "value") and isinstance(value.value, str):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


def _equal(a: Any, b: Any) -> bool:
    if a is _MISSING or b is _MISSING:
        return a is b
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def _leaf_key(path: str) -> str:
    return path.rsplit(".", 1)[-1].split("[", 1)[0]


def _mirrors(record: Record, path: str, value: Any) -> str | None:
    """The column this params leaf repeats on ``record``, or None."""
    key = _leaf_key(path)
    for column, keys in _COLUMN_KEYS.items():
        if key not in keys or value is _MISSING:
            continue
        own = _values(record, column)
        if own is None:
            continue
        if _norm(value) == _norm(own):
            return column
        # A combined scheduler column ("dpmpp_2m karras") holds the sampler and the schedule.
        if column == "scheduler" and isinstance(value, str) and value in str(own).split():
            return column
    return None


def params_format(record: Record) -> str:
    """The format of a record's request parameters (``a1111-infotext``, ``comfyui-api``,
    or the backend protocol's name for verbatim requests)."""
    declared = record.params.get("format") if isinstance(record.params, Mapping) else None
    if isinstance(declared, str) and declared:
        return declared
    return {"reference": "runware", "forge": "a1111", "automatic1111": "a1111"}.get(
        record.backend.lower(), record.backend.lower()
    )


def compare(
    a: Record,
    b: Record,
    *,
    environment_a: Mapping[str, Any] | None = None,
    environment_b: Mapping[str, Any] | None = None,
) -> Comparison:
    changes: dict[str, dict[str, Any]] = {}
    for column, label in GENERATION_COLUMNS.items():
        va, vb = _values(a, column), _values(b, column)
        if _equal(va, vb) or (va is None and vb is None):
            continue
        target = _FOLD_COLUMNS.get(column)
        if target in changes:
            changes[target]["fields"].append(column)
            continue
        changes[column] = {"label": label, "a": va, "b": vb, "fields": [column]}

    bookkeeping: list[Change] = []
    note = None
    if params_format(a) != params_format(b):
        note = (
            f"request parameters in different formats ({params_format(a)} vs {params_format(b)}): "
            "compared by the record columns only"
        )
    else:
        flat_a, flat_b = flatten(dict(a.params), "params"), flatten(dict(b.params), "params")
        for path in sorted(flat_a.keys() | flat_b.keys()):
            va, vb = flat_a.get(path, _MISSING), flat_b.get(path, _MISSING)
            if _equal(va, vb):
                continue
            top = path.split(".", 2)[1].split("[", 1)[0]
            mirrored = _mirrors(a, path, va) or _mirrors(b, path, vb)
            if top in BOOKKEEPING_PARAMS or (mirrored is not None and mirrored not in changes):
                # A mirror of an unchanged column (e.g. the seed the request did not send
                # but the response did) is the same setting: bookkeeping, not a change.
                bookkeeping.append(Change(path, path, va, vb, (path,)))
            elif mirrored is not None:
                changes[mirrored]["fields"].append(path)
            else:
                changes[path] = {"label": path.removeprefix("params."), "a": va, "b": vb, "fields": [path]}

    columns = [
        Change(column, column, va, vb, (column,))
        for column in BOOKKEEPING_COLUMNS
        if not _equal(va := _values(a, column), vb := _values(b, column))
    ]
    found = tuple(Change(name, c["label"], c["a"], c["b"], tuple(c["fields"])) for name, c in changes.items())
    return Comparison(a.id, b.id, found, tuple(columns + bookkeeping), note, environment_a, environment_b)


def changed_names(a: Record, b: Record) -> list[str]:
    """Labels of the generation parameters that differ (for lineage edges)."""
    return [c.label for c in compare(a, b).changes]
