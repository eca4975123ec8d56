"""The audit result writer: results are stored as they come, in short transactions.

A result is committed a fraction of a second after it is known, never twice
(``UNIQUE(run_id, record_id)``): a crash or an interrupt keeps what finished.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from ledger.audit import store
from ledger.audit.plan import Progress
from ledger.audit.store import AuditResult, AuditRun
from ledger.backends.policies import RetryPolicy
from ledger.errors import StoreError
from ledger.store import Ledger

log = logging.getLogger("ledger.audit")

__all__ = ["ResultWriter"]

#: Results arriving within this many seconds of each other share one transaction.
_WRITE_WINDOW: Final = 0.1
_WRITE_BATCH: Final = 256
#: A busy or briefly unreachable database: three attempts, 0.5 s then 1 s apart.
STORE_RETRY: Final = RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=1.0, jitter=False)


class ResultWriter:
    """Takes results from the replays (:meth:`put`) and stores them until :meth:`close`."""

    def __init__(
        self,
        ledger: Ledger,
        run: AuditRun,
        *,
        progress: Progress | None,
        retry: RetryPolicy = STORE_RETRY,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
    ) -> None:
        self.ledger = ledger
        self.retry = retry
        self._sleep = sleep or asyncio.sleep
        #: Records the run selected: the progress total.
        self.selected = run.selected_count
        self.progress = progress
        self.queue: asyncio.Queue[AuditResult | None] = asyncio.Queue()
        #: Results this writer stored, and their counts by outcome.
        self.stored = 0
        self.counts: dict[str, int] = {}

    async def put(self, result: AuditResult) -> None:
        await self.queue.put(result)

    async def close(self) -> None:
        """No more results: :meth:`run` stores what is queued and returns."""
        await self.queue.put(None)

    async def run(self, done_before: int = 0) -> None:
        """Store results as they come, in short transactions: a batch is what arrives
        within ``_WRITE_WINDOW`` seconds of its first result (at most ``_WRITE_BATCH``),
        so a result is committed a fraction of a second after it is known while the
        event loop is not handing a thread one row at a time. Each result is inserted
        at most once. ``done_before`` results were stored by earlier sessions of the
        run (progress counts them)."""
        loop = asyncio.get_running_loop()
        finished = False
        while not finished:
            batch: list[AuditResult] = []
            item = await self.queue.get()
            if item is None:
                finished = True
            else:
                batch.append(item)
            deadline = loop.time() + _WRITE_WINDOW
            while not finished and len(batch) < _WRITE_BATCH:
                remaining = deadline - loop.time()
                if remaining <= 0 and self.queue.empty():
                    break
                try:
                    more = await asyncio.wait_for(self.queue.get(), timeout=max(remaining, 0))
                except TimeoutError:
                    break
                if more is None:
                    finished = True
                else:
                    batch.append(more)
            if batch:
                stored = await self._write_with_retries(batch)
                self.stored += stored
                for result in batch:
                    self.counts[result.outcome] = self.counts.get(result.outcome, 0) + 1
                if self.progress is not None:
                    self.progress(done_before + self.stored, self.selected, dict(self.counts))

    async def _write_with_retries(self, batch: Sequence[AuditResult]) -> int:
        """A busy or briefly unreachable database does not end the run at once; if it
        stays unusable (``retry.max_attempts``) the run ends interrupted and can be resumed."""
        for attempt in range(1, self.retry.max_attempts + 1):
            try:
                return await asyncio.to_thread(self._write, batch)
            except StoreError as exc:
                if attempt == self.retry.max_attempts:
                    raise
                log.warning("audit: storing %d result(s) failed (%s); retrying", len(batch), exc)
                await self._sleep(self.retry.backoff(attempt))
        return 0  # pragma: no cover - the loop returns or raises

    def _write(self, batch: Sequence[AuditResult]) -> int:
        stored = 0
        with self.ledger.writing() as conn:
            for result in batch:
                stored += store.insert_result(self.ledger, result, conn=conn)
            store.store_record_warnings(self.ledger, [(r.record_id, r.warnings) for r in batch], conn=conn)
        return stored
