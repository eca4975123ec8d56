"""`seedledger pick ID`: lock a record's seed and parameters as the next sweep's base.

The pick file (default ``.seedledger-pick.json`` in the working directory) is a small
JSON document, format ``seedledger.pick/1``::

    {
      "schema": "seedledger.pick/1",
      "record_id": 42,
      "picked_at": "2026-11-25T17:00:00Z",
      "seed": 965400086,            # the seed the backend used (a JSON integer)
      "seed_text": "965400086",     # the same as a string, for JSON readers that
                                    # lose precision above 2^53
      "record": {"backend": …, "task_type": …, "modality": …, "model": …,
                 "scheduler": …, "scheduler_requested": …, "prompt": …,
                 "negative_prompt": …, "width": …, "height": …, "steps": …,
                 "cfg_scale": …, "output_format": …, "experiment_id": …},
      "params": {…}                 # the stored request verbatim (secrets removed)
    }

``sweep --from-pick`` reads it with :func:`load_pick` and varies one dimension from
this base; :meth:`Pick.base_params` gives the request with the locked seed set.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from ledger.core.files import atomic_write
from ledger.core.jsonsafe import loads_bounded
from ledger.core.records import Record
from ledger.core.seeds import parse_seed
from ledger.errors import InvalidInputError, LedgerError, UsageError
from ledger.store import Ledger

PICK_SCHEMA: Final = "seedledger.pick/1"
DEFAULT_PICK_FILE: Final = ".seedledger-pick.json"

_RECORD_FIELDS: Final = (
    "backend",
    "task_type",
    "modality",
    "model",
    "scheduler",
    "scheduler_requested",
    "prompt",
    "negative_prompt",
    "width",
    "height",
    "steps",
    "cfg_scale",
    "output_format",
    "experiment_id",
)


@dataclass(frozen=True)
class Pick:
    record_id: int
    seed: int | None
    picked_at: str
    record: Mapping[str, Any]
    params: Mapping[str, Any]

    def base_params(self) -> dict[str, Any]:
        """The stored request with the locked seed (Runware-shaped records carry the
        seed in ``params["seed"]``; other shapes are returned as stored)."""
        params: dict[str, Any] = json.loads(json.dumps(dict(self.params)))
        if self.seed is not None and self.record.get("backend") not in ("a1111", "comfyui"):
            params["seed"] = self.seed
        return params

    def to_document(self) -> dict[str, Any]:
        return {
            "schema": PICK_SCHEMA,
            "record_id": self.record_id,
            "picked_at": self.picked_at,
            "seed": self.seed,
            "seed_text": None if self.seed is None else str(self.seed),
            "record": dict(self.record),
            "params": dict(self.params),
        }


def pick_of(record: Record) -> Pick:
    values: dict[str, Any] = {}
    for name in _RECORD_FIELDS:
        value = getattr(record, name)
        values[name] = value.value if hasattr(value, "value") and isinstance(value.value, str) else value
    return Pick(
        record_id=record.id,
        seed=record.seed,
        picked_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        record=values,
        params=dict(record.params),
    )


def pick(ledger: Ledger, record_id: int, out: Path | None = None) -> tuple[Pick, Path]:
    """Write the pick file for ``record_id``; refuse records without a seed."""
    record = ledger.get(record_id)
    if record.seed is None:
        raise UsageError(f"record {record_id} has no captured seed; it cannot be the base of a sweep")
    chosen = pick_of(record)
    target = out or Path(DEFAULT_PICK_FILE)
    text = json.dumps(chosen.to_document(), ensure_ascii=False, indent=2, sort_keys=False) + "\n"
    try:
        atomic_write(target, text.encode("utf-8"))
    except OSError as exc:
        raise LedgerError(f"cannot write {target}: {exc.strerror or exc}") from None
    return chosen, target


def load_pick(path: Path | str | None = None) -> Pick:
    """Read a pick file (default ``.seedledger-pick.json``); InvalidInputError if bad."""
    target = Path(path) if path is not None else Path(DEFAULT_PICK_FILE)
    try:
        data = loads_bounded(target.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"no pick file at {target}; run `seedledger pick ID` first") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInputError(f"{target}: not a readable pick file: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != PICK_SCHEMA:
        raise InvalidInputError(f"{target}: not a {PICK_SCHEMA} file")
    record_id = data.get("record_id")
    if isinstance(record_id, bool) or not isinstance(record_id, int):
        raise InvalidInputError(f"{target}: record_id must be an integer")
    seed_text = data.get("seed_text")
    seed = parse_seed(seed_text) if seed_text is not None else None
    if data.get("seed") is not None and parse_seed(data["seed"]) != seed:
        raise InvalidInputError(f"{target}: seed and seed_text disagree")
    record, params = data.get("record"), data.get("params")
    if not isinstance(record, dict) or not isinstance(params, dict):
        raise InvalidInputError(f"{target}: record and params must be objects")
    return Pick(
        record_id=record_id,
        seed=seed,
        picked_at=str(data.get("picked_at", "")),
        record=record,
        params=params,
    )
