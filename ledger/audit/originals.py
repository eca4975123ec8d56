"""Make original records to audit: generate through a backend, store each output as a
record with its fingerprint. Used by tests, the benchmark and the demo."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from ledger.backends import AsyncBackend, GenerationRequest
from ledger.backends.records import Generated, records_from_result
from ledger.core.records import NewRecord, Source
from ledger.fingerprint import fingerprint as fingerprint_of
from ledger.store import Ledger

__all__ = ["generate_originals", "store_originals"]


async def generate_originals(
    backend: AsyncBackend,
    requests: Sequence[GenerationRequest],
    *,
    concurrency: int = 8,
    source: Source = Source.API,
    tags: tuple[str, ...] = (),
    experiment_id: str | None = None,
) -> list[Generated]:
    """Generate every request (bounded concurrency); one Generated per output, in
    request order. A failed request raises its BackendError."""
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(request: GenerationRequest) -> list[Generated]:
        async with gate:
            result = await backend.generate(request)
        return records_from_result(result, source=source, tags=tags, experiment_id=experiment_id)

    batches = await asyncio.gather(*(one(r) for r in requests))
    return [g for batch in batches for g in batch]


def store_originals(
    ledger: Ledger,
    generated: Sequence[Generated],
    *,
    edit: Callable[[NewRecord], NewRecord] | None = None,
    fingerprint: bool = True,
) -> list[int]:
    """Store the records (``edit`` may change each first) with the fingerprints of
    their bytes, in one transaction; return the record ids in order."""
    records = [edit(g.record) if edit else g.record for g in generated]
    fps = [fingerprint_of(g.data, str(g.record.modality)) for g in generated] if fingerprint else None
    return ledger.add(records, fingerprints=fps)
