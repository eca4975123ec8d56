"""What a parsed file must be before it is stored, and what its outcome says of it.

Pure checks and summaries over records (no database): NUL characters and out-of-range
integers refused, NaN/Infinity in ``params`` nulled with a note, the fields a file
stated, reasons and notes made one printable line.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Final

from ledger.core.comfy import json_safe
from ledger.core.records import NewRecord
from ledger.errors import InvalidInputError

_INT32_MAX: Final = 2**31 - 1


def one_line(text: str) -> str:
    """A reason or note as one printable line: metadata quoted in it (node ids, JSON
    keys) may hold newlines or terminal escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def finite(record: NewRecord) -> NewRecord:
    """NaN/Infinity anywhere in ``params`` (metadata as the file said it) become null,
    with a note: JSON columns (PostgreSQL's above all) cannot hold them."""
    found: list[str] = []
    params = json_safe(record.params, found=found)
    if not found:
        return record
    notes = [*params.get("notes", ()), f"non-finite numbers stored as null: {', '.join(found[:5])}"]
    return dataclasses.replace(record, params=params | {"notes": notes})


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def check_storable(record: NewRecord) -> None:
    # PostgreSQL text and JSON cannot hold NUL; refuse the file rather than fail the
    # database write (which would stop the whole import).
    fields = (record.prompt, record.negative_prompt, record.model, record.scheduler, record.params)
    if any(_has_nul(value) for value in fields):
        raise InvalidInputError("metadata contains NUL characters, which the ledger cannot store")
    # Integer columns are 32-bit on PostgreSQL: an absurd size or step count is bad input.
    for name in ("width", "height", "steps", "output_index"):
        value = getattr(record, name)
        if value is not None and not 0 <= value <= _INT32_MAX:
            raise InvalidInputError(f"{name} {value} is out of range")
    if record.cfg_scale is not None and not math.isfinite(record.cfg_scale):
        raise InvalidInputError(f"CFG scale {record.cfg_scale} is not a finite number")


_FIELDS: Final = ("seed", "model", "sampler", "steps", "cfg_scale", "width", "height", "prompt")


def stated_fields(records: Sequence[NewRecord]) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(fields stated, fields not stated, reader notes) over a file's records."""
    values = {
        "seed": [r.seed for r in records],
        "model": [None if r.model == "unknown" else r.model for r in records],
        "sampler": [r.scheduler_requested for r in records],
        "steps": [r.steps for r in records],
        "cfg_scale": [r.cfg_scale for r in records],
        "width": [r.width for r in records],
        "height": [r.height for r in records],
        "prompt": [r.prompt for r in records],
    }
    read = tuple(f for f in _FIELDS if any(v is not None for v in values[f]))
    not_read = tuple(f for f in _FIELDS if f not in read)
    notes = tuple(dict.fromkeys(n for r in records for n in r.params.get("notes", ()) if isinstance(n, str)))
    return read, not_read, notes


# -- storing ------------------------------------------------------------------------
