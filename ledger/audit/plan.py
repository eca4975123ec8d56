"""What an audit run covers and would do: the selection, the options, the plan.

**select** the records (the ``list`` filters, ``--ids``, ``--experiment``, and an
optional reproducible sample: ``random.Random(sample_seed).sample`` over the matching
ids in id order, with the seed stored in the run's selection), then **plan** each
record from the record alone: skipped (failed record; a warning that blocks replay,
such as ``seedless-model`` or ``seed-not-captured``, unless forced),
``error``/``no-fingerprint`` (nothing stored to compare with, so nothing is replayed),
or replay. The plan gives the cost estimate (recorded costs) that ``--max-cost``
guards and ``--dry-run`` prints.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select

from ledger.audit import store
from ledger.backends.http import safe_url
from ledger.core.models import ModelCatalog
from ledger.core.records import Record, Status
from ledger.core.warnings import RecordWarning, warnings_for
from ledger.errors import UsageError
from ledger.store import Ledger, RecordFilter
from ledger.store.schema import records as records_table

__all__ = [
    "ACTION_ERROR",
    "ACTION_REPLAY",
    "ACTION_SKIP",
    "CHUNK",
    "AuditOptions",
    "AuditPlan",
    "PlannedRecord",
    "Progress",
    "Selection",
    "plan_audit",
    "plan_one",
    "records_by_id",
    "select_ids",
]

#: Records loaded (and planned) per query.
CHUNK: Final = 200
#: What the plan does with a record.
ACTION_REPLAY: Final = "replay"
ACTION_SKIP: Final = "skip"
ACTION_ERROR: Final = "error"


# -- inputs to a run ---------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Selection:
    """Which records a run covers."""

    where: RecordFilter = field(default_factory=RecordFilter)
    sample: int | None = None
    #: Seed of the sampling RNG; drawn (and stored) when a sample is asked without one.
    sample_seed: int | None = None

    def __post_init__(self) -> None:
        if self.sample is not None and self.sample < 1:
            raise UsageError("--sample must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        filters: dict[str, Any] = {}
        for f in fields(self.where):
            value = getattr(self.where, f.name)
            if value in (None, ()):
                continue
            if isinstance(value, datetime):
                value = value.isoformat()
            elif f.name.startswith("seed"):
                value = str(value)  # 64-bit seeds survive JSON readers as strings
            elif isinstance(value, tuple):
                value = list(value)
            filters[f.name] = value
        return {
            "filters": filters,
            "sample": self.sample,
            "sample_seed": str(self.sample_seed) if self.sample_seed is not None else None,
        }


@dataclass(frozen=True, kw_only=True)
class AuditOptions:
    """How to replay. Stored with the run; a resumed run reuses them."""

    #: Replay every record on this backend instead of the one that made it.
    backend: str | None = None
    #: API endpoint for the backend(s); required for ``reference``.
    backend_url: str | None = None
    concurrency: int = 4
    #: Replay requests per second, per backend (None: unlimited).
    rate: float | None = None
    #: Per HTTP request (the adapter retries timeouts).
    timeout: float = 120.0
    #: HTTP attempts per replay, first try included (the adapter's retry policy).
    attempts: int = 4
    #: Whole replay of one record, retries and download included (None: derived).
    record_deadline: float | None = None
    max_cost: float | None = None
    #: Replay records whose warnings block replay (seedless, no seed, inputs gone).
    force: bool = False
    check_inputs: bool = True
    #: Seconds in-flight replays get to finish after an interrupt.
    grace: float = 10.0
    #: Output archive: compare image replays with archived originals at full resolution.
    archive: str | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if self.rate is not None and self.rate <= 0:
            raise UsageError("--rate must be positive")
        if self.timeout <= 0:
            raise UsageError("--timeout must be positive")
        if self.attempts < 1:
            raise UsageError("--attempts must be at least 1")
        if self.max_cost is not None and self.max_cost < 0:
            raise UsageError("--max-cost must not be negative")

    @property
    def deadline(self) -> float:
        if self.record_deadline is not None:
            return self.record_deadline
        # Every attempt may time out, plus backoff between attempts and the download.
        return self.timeout * self.attempts + 30.0

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["backend_url"] = safe_url(self.backend_url) if self.backend_url else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **overrides: Any) -> AuditOptions:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


#: Called after results are stored: (results stored in this run so far, total selected,
#: counts by outcome in this process).
Progress = Callable[[int, int, Mapping[str, int]], None]


# -- selection and plan ------------------------------------------------------------------


def select_ids(ledger: Ledger, selection: Selection) -> tuple[list[int], Selection, int]:
    """The selected record ids (id order), the selection with its sample seed filled
    in, and the size of the population sampled from."""
    stmt = select(records_table.c.id).where(selection.where.where()).order_by(records_table.c.id)
    with ledger.reading() as conn:
        ids = [int(r) for (r,) in conn.execute(stmt)]
    population = len(ids)
    sample = selection.sample
    if sample is None:
        return ids, selection, population
    seed = selection.sample_seed if selection.sample_seed is not None else secrets.randbits(63)
    selection = replace(selection, sample_seed=seed)
    if sample >= population:
        return ids, selection, population
    return sorted(random.Random(seed).sample(ids, sample)), selection, population


@dataclass(frozen=True)
class PlannedRecord:
    record_id: int
    backend: str
    action: str  # replay, skip, error
    code: str | None = None  # why not replayed
    reason: str | None = None
    cost: float | None = None  # recorded cost of the original


@dataclass(frozen=True)
class AuditPlan:
    selection: Selection
    population: int
    records: tuple[PlannedRecord, ...]

    @property
    def replays(self) -> list[PlannedRecord]:
        return [p for p in self.records if p.action == ACTION_REPLAY]

    @property
    def estimated_cost(self) -> float:
        """Recorded costs of the records to replay; records without one count at the
        mean of those with one (0 when none has a cost)."""
        replays = self.replays
        known = [p.cost for p in replays if p.cost is not None]
        mean = sum(known) / len(known) if known else 0.0
        return round(sum(known) + mean * (len(replays) - len(known)), 6)

    @property
    def unknown_cost(self) -> int:
        return sum(1 for p in self.replays if p.cost is None)

    def to_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for p in self.records:
            counts[p.action] = counts.get(p.action, 0) + 1
        return {
            "selected": len(self.records),
            "population": self.population,
            "selection": self.selection.to_dict(),
            "actions": counts,
            "estimated_cost": self.estimated_cost,
            "records_without_cost": self.unknown_cost,
        }


def plan_one(record: Record, warnings: Sequence[RecordWarning], has_fp: bool, force: bool) -> PlannedRecord:
    def planned(action: str, code: str | None = None, reason: str | None = None) -> PlannedRecord:
        return PlannedRecord(record.id, record.backend, action, code, reason, record.cost)

    if record.status is Status.FAILED:
        return planned(ACTION_SKIP, "record-failed", "the original generation failed: no output to compare")
    blockers = [w for w in warnings if w.blocks_replay]
    if blockers and not force:
        first = blockers[0]
        return planned(
            ACTION_SKIP, first.code, f"{first.explanation} ({first.detail})" if first.detail else None
        )
    if not has_fp:
        return planned(
            ACTION_ERROR,
            "no-fingerprint",
            f"record {record.id} has no stored fingerprint to compare a replay with; "
            f"attach one with `seedledger fingerprint {record.id} FILE`",
        )
    return planned(ACTION_REPLAY)


def records_by_id(ledger: Ledger, ids: Sequence[int]) -> dict[int, Record]:
    return {r.id: r for r in ledger.query(RecordFilter(ids=tuple(ids)))}


def plan_audit(
    ledger: Ledger,
    selection: Selection,
    options: AuditOptions,
    *,
    catalog: ModelCatalog | None = None,
    ids: Sequence[int] | None = None,
) -> AuditPlan:
    """What a run would do, from the records alone (no backend is called)."""
    population = None
    if ids is None:
        ids, selection, population = select_ids(ledger, selection)
    planned: list[PlannedRecord] = []
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        by_id = records_by_id(ledger, chunk)
        fps = store.fingerprinted_ids(ledger, chunk)
        for rid in chunk:
            record = by_id[rid]
            planned.append(plan_one(record, warnings_for(record, catalog=catalog), rid in fps, options.force))
    return AuditPlan(selection, population if population is not None else len(ids), tuple(planned))
