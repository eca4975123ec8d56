"""`seedledger diff A B`: what differs between two records, and whether it is one thing.

Compared: the record's generation columns (backend, model, seed, scheduler, prompt,
size, steps, CFG, …) and every leaf of ``params`` (flattened to ``params.a.b[0]``).
Bookkeeping (ids, UUIDs, times, cost, tags, the raw infotext/UI workflow, import
file info) is reported apart and never counts as a generation change.

The same setting is often stored twice, e.g. the ``cfg_scale`` column and the
request's ``params.CFGScale``, or A1111's ``Size-1`` and ``width``. Differences are
therefore **grouped**: a params leaf whose before/after values equal those of an
already-found change (numbers compared by value, ``"7"`` = ``7.0``) joins that change.
A comparison is *controlled* when at most one group changed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

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

_MISSING: Final = object()


@dataclass(frozen=True)
class Change:
    """One changed setting: ``name`` (column or first params path), before/after, and
    every field that carries it."""

    name: str
    label: str
    a: Any
    b: Any
    fields: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "a": None if self.a is _MISSING else self.a,
            "b": None if self.b is _MISSING else self.b,
            "a_missing": self.a is _MISSING,
            "b_missing": self.b is _MISSING,
            "fields": list(self.fields),
        }


@dataclass(frozen=True)
class Comparison:
    a_id: int
    b_id: int
    changes: tuple[Change, ...]  # generation parameters
    bookkeeping: tuple[Change, ...]

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
            "changes": [c.as_dict() for c in self.changes],
            "bookkeeping": [c.as_dict() for c in self.bookkeeping],
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


def compare(a: Record, b: Record) -> Comparison:
    groups: list[dict[str, Any]] = []

    def group_for(path: str, va: Any, vb: Any, label: str, *, fold: bool) -> None:
        pair = (_norm(va), _norm(vb))
        if fold:
            for group in groups:
                if pair in group["pairs"]:
                    group["fields"].append(path)
                    return
        groups.append({"name": path, "label": label, "a": va, "b": vb, "fields": [path], "pairs": {pair}})

    for column, label in GENERATION_COLUMNS.items():
        va, vb = _values(a, column), _values(b, column)
        if _equal(va, vb):
            continue
        target = _FOLD_COLUMNS.get(column)
        folded = next((g for g in groups if g["name"] == target), None) if target else None
        if folded is not None:
            folded["fields"].append(column)
            folded["pairs"].add((_norm(va), _norm(vb)))
            continue
        group_for(column, va, vb, label, fold=False)

    flat_a, flat_b = flatten(dict(a.params), "params"), flatten(dict(b.params), "params")
    bookkeeping: list[Change] = []
    for path in sorted(flat_a.keys() | flat_b.keys()):
        va, vb = flat_a.get(path, _MISSING), flat_b.get(path, _MISSING)
        if _equal(va, vb):
            continue
        top = path.split(".", 2)[1].split("[", 1)[0]
        if top in BOOKKEEPING_PARAMS:
            bookkeeping.append(Change(path, path, va, vb, (path,)))
            continue
        group_for(path, va, vb, path.removeprefix("params."), fold=True)

    columns = [
        Change(column, column, va, vb, (column,))
        for column in BOOKKEEPING_COLUMNS
        if not _equal(va := _values(a, column), vb := _values(b, column))
    ]
    bookkeeping = columns + bookkeeping
    changes = tuple(Change(g["name"], g["label"], g["a"], g["b"], tuple(g["fields"])) for g in groups)
    return Comparison(a.id, b.id, changes, tuple(bookkeeping))


def changed_names(a: Record, b: Record) -> list[str]:
    """Labels of the generation parameters that differ (for lineage edges)."""
    return [c.label for c in compare(a, b).changes]
