"""`seedledger check`: the warnings of records without replaying them.

Warnings come from the record alone (:func:`ledger.core.warnings.warnings_for`) and
replace the record's rows in ``record_warnings``. ``inputs-unavailable`` needs a fetch:
a plain check keeps the one a previous audit or ``--refresh`` stored; ``refresh=True``
fetches the record's input URLs again (bounded) and stores the new answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select

from ledger.audit import store
from ledger.audit.inputs import InputChecker, input_urls
from ledger.core.models import ModelCatalog
from ledger.core.records import Record
from ledger.core.warnings import CATALOG, INPUTS_UNAVAILABLE, RecordWarning, Severity, warnings_for
from ledger.store import Ledger, RecordFilter
from ledger.store.schema import record_warnings

__all__ = ["CheckRun", "check_records"]

_BATCH = 500


@dataclass
class CheckRun:
    """Counts of a check, filled in while :meth:`records` is consumed."""

    checked: int = 0
    with_warnings: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    by_severity: dict[str, int] = field(default_factory=dict)

    def add(self, warnings: Sequence[RecordWarning]) -> None:
        self.checked += 1
        if warnings:
            self.with_warnings += 1
        for w in warnings:
            self.counts[w.code] = self.counts.get(w.code, 0) + 1
        worst = max((w.severity for w in warnings), key=lambda s: s.rank, default=None)
        if worst is not None:
            self.by_severity[str(worst)] = self.by_severity.get(str(worst), 0) + 1

    def ordered_counts(self) -> dict[str, int]:
        return {code: self.counts[code] for code in CATALOG if code in self.counts}

    def at_or_above(self, severity: Severity) -> int:
        """Records whose worst warning is at least ``severity``."""
        return sum(n for s, n in self.by_severity.items() if Severity(s).rank >= severity.rank)


def check_records(
    ledger: Ledger,
    where: RecordFilter,
    run: CheckRun,
    *,
    refresh: bool = False,
    catalog: ModelCatalog | None = None,
    input_timeout: float = 15.0,
    allow_loopback_inputs: bool = False,
) -> Iterator[tuple[Record, tuple[RecordWarning, ...]]]:
    """Yield each selected record with its warnings, storing them batch by batch."""
    batch: list[Record] = []
    for record in ledger.iter_records(where):
        batch.append(record)
        if len(batch) >= _BATCH:
            yield from _check_batch(
                ledger, batch, run, refresh, catalog, input_timeout, allow_loopback_inputs
            )
            batch = []
    if batch:
        yield from _check_batch(ledger, batch, run, refresh, catalog, input_timeout, allow_loopback_inputs)


def _check_batch(
    ledger: Ledger,
    batch: Sequence[Record],
    run: CheckRun,
    refresh: bool,
    catalog: ModelCatalog | None,
    input_timeout: float,
    allow_loopback: bool,
) -> Iterator[tuple[Record, tuple[RecordWarning, ...]]]:
    ids = [r.id for r in batch]
    if refresh:
        inputs = asyncio.run(_fetch_inputs(batch, input_timeout, allow_loopback))
    else:
        inputs = _stored_inputs_warnings(ledger, ids)
    results: list[tuple[Record, tuple[RecordWarning, ...]]] = []
    for record in batch:
        found = list(warnings_for(record, catalog=catalog))
        extra = inputs.get(record.id)
        if extra is not None:
            found.append(extra)
        ordered = tuple(sorted(found, key=lambda w: list(CATALOG).index(w.code)))
        results.append((record, ordered))
    store.store_record_warnings(ledger, [(r.id, ws) for r, ws in results])
    for record, warnings in results:
        run.add(warnings)
        yield record, warnings


def _stored_inputs_warnings(ledger: Ledger, ids: Sequence[int]) -> dict[int, RecordWarning]:
    c = record_warnings.c
    with ledger.reading() as conn:
        rows = conn.execute(
            select(c.record_id, c.code, c.severity, c.detail).where(
                c.record_id.in_(ids), c.code == INPUTS_UNAVAILABLE
            )
        ).all()
    return {
        int(rid): RecordWarning(code, Severity(severity), detail or "")
        for rid, code, severity, detail in rows
    }


async def _fetch_inputs(
    batch: Sequence[Record], timeout: float, allow_loopback: bool
) -> dict[int, RecordWarning]:
    checker = InputChecker(timeout=timeout, allow_loopback=allow_loopback)
    try:
        wanted = [r for r in batch if input_urls(r.params)]
        found = await asyncio.gather(*(checker.warning_for(r.params) for r in wanted))
    finally:
        await checker.aclose()
    return {r.id: w for r, w in zip(wanted, found, strict=True) if w is not None}
