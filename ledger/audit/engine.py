"""The replay engine: select, check, replay, fingerprint, compare, store.

One audit run:

1. **select** the records (the ``list`` filters, ``--ids``, ``--experiment``, and an
   optional reproducible sample: ``random.Random(sample_seed).sample`` over the
   matching ids in id order, with the seed stored in the run's selection);
2. **plan** each record from the record alone: skipped (failed record; a warning that
   blocks replay, such as ``seedless-model`` or ``seed-not-captured``, unless forced),
   ``error``/``no-fingerprint`` (nothing stored to compare with, so nothing is
   replayed), or replay. The plan gives the cost estimate (recorded costs) that
   ``--max-cost`` guards and ``--dry-run`` prints;
3. store the run and its selection, then **replay** the replayable records on their own
   backend (or the one given), at most ``concurrency`` at a time and at most ``rate``
   requests per second per backend, retries done by the adapter;
4. **fingerprint** each replay off the event loop and **compare** it with the stored
   fingerprint; the verdict and the record's warnings give the outcome;
5. **store** each result as soon as it is known, in its own short transaction
   (``UNIQUE(run_id, record_id)``: never twice). A crash or an interrupt keeps what
   finished; :func:`resume_audit` does the rest.

One record's failure (backend error, timeout, undecodable output) is an ``error``
result, never the end of the run.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

from sqlalchemy import select

from ledger.audit import store
from ledger.audit.inputs import InputChecker, input_urls
from ledger.audit.policy import (
    ERROR,
    SKIPPED,
    VERDICT_ERROR,
    VERDICT_SKIPPED,
    Policy,
    outcome_for,
)
from ledger.audit.store import AuditResult, AuditRun
from ledger.backends import AsyncBackend, GeneratedOutput, RetryPolicy, open_backend
from ledger.backends.base import protocol_of
from ledger.backends.http import safe_url
from ledger.backends.translate import accepted_protocols, replay_request
from ledger.core.environment import differences as environment_differences
from ledger.core.models import ModelCatalog
from ledger.core.records import Modality, Record, Status
from ledger.core.warnings import RecordWarning, warnings_for
from ledger.errors import BackendError, FingerprintError, LedgerError, StoreError, UsageError
from ledger.fingerprint import Fingerprint, compare, fingerprint
from ledger.integrity import seal_if_configured
from ledger.store import Ledger, RecordFilter
from ledger.store.schema import records as records_table

log = logging.getLogger("ledger.audit")

__all__ = [
    "AuditOptions",
    "AuditOutcome",
    "AuditPlan",
    "PlannedRecord",
    "Progress",
    "Selection",
    "plan_audit",
    "resume_audit",
    "run_audit",
    "select_ids",
]

_CHUNK: Final = 200
#: Outputs this small are fingerprinted on the event loop (about a millisecond): a
#: thread hand-off would cost more than it saves. Larger ones go to a worker thread.
_INLINE_FINGERPRINT_BYTES: Final = 64 * 1024
#: Results arriving within this many seconds of each other share one transaction.
_WRITE_WINDOW: Final = 0.1
_WRITE_BATCH: Final = 256
_REPLAY: Final = "replay"
_SKIP: Final = "skip"
_ERROR: Final = "error"


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
        return [p for p in self.records if p.action == _REPLAY]

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


def _plan_one(record: Record, warnings: Sequence[RecordWarning], has_fp: bool, force: bool) -> PlannedRecord:
    def planned(action: str, code: str | None = None, reason: str | None = None) -> PlannedRecord:
        return PlannedRecord(record.id, record.backend, action, code, reason, record.cost)

    if record.status is Status.FAILED:
        return planned(_SKIP, "record-failed", "the original generation failed: no output to compare")
    blockers = [w for w in warnings if w.blocks_replay]
    if blockers and not force:
        first = blockers[0]
        return planned(_SKIP, first.code, f"{first.explanation} ({first.detail})" if first.detail else None)
    if not has_fp:
        return planned(
            _ERROR,
            "no-fingerprint",
            f"record {record.id} has no stored fingerprint to compare a replay with; "
            f"attach one with `seedledger fingerprint {record.id} FILE`",
        )
    return planned(_REPLAY)


def _records_by_id(ledger: Ledger, ids: Sequence[int]) -> dict[int, Record]:
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
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        by_id = _records_by_id(ledger, chunk)
        fps = store.fingerprinted_ids(ledger, chunk)
        for rid in chunk:
            record = by_id[rid]
            planned.append(
                _plan_one(record, warnings_for(record, catalog=catalog), rid in fps, options.force)
            )
    return AuditPlan(selection, population if population is not None else len(ids), tuple(planned))


# -- running -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditOutcome:
    """What a call to run/resume ended with."""

    run: AuditRun
    policy: Policy
    interrupted: bool
    #: Results this call stored (a resumed run also has earlier ones).
    stored: int

    @property
    def outcomes(self) -> Mapping[str, int]:
        outcomes: Mapping[str, int] = (self.run.summary or {}).get("outcomes", {})
        return outcomes

    @property
    def policy_held(self) -> bool:
        return self.policy.holds(self.outcomes)


class _RateLimiter:
    """At most ``rate`` starts per second: each start takes the next free slot."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


class _Slot:
    """One concurrency slot, released once (after the backend call, or when the
    replay task ends, whichever comes first)."""

    def __init__(self, gate: asyncio.Semaphore) -> None:
        self._gate: asyncio.Semaphore | None = gate

    def release(self, *_: object) -> None:
        if self._gate is not None:
            self._gate.release()
            self._gate = None


class _Runner:
    def __init__(
        self,
        ledger: Ledger,
        run: AuditRun,
        options: AuditOptions,
        *,
        catalog: ModelCatalog | None,
        progress: Progress | None,
        stop: asyncio.Event | None,
        abort: asyncio.Event | None,
        backends: dict[str, AsyncBackend],
    ) -> None:
        self.ledger = ledger
        self.run = run
        self.options = options
        self.catalog = catalog
        self.progress = progress
        self.stop = stop or asyncio.Event()
        self.abort = abort or asyncio.Event()
        self.backends = backends
        self.limiters: dict[str, _RateLimiter] = {}
        self.inputs: InputChecker | None = None
        self.queue: asyncio.Queue[AuditResult | None] = asyncio.Queue()
        self.stored = 0
        self.done_before = 0
        self.counts: dict[str, int] = {}
        #: Cost of finished replays (actual when reported, else recorded) and of those
        #: in flight (recorded): the budget --max-cost checks before each launch.
        self.spent = 0.0
        self.reserved = 0.0
        self.stop_reason: str | None = None

    # -- backends --------------------------------------------------------------------
    def backend_for(self, record: Record) -> AsyncBackend:
        name = (self.options.backend or record.backend).lower()
        backend = self.backends.get(name)
        if backend is None:
            backend = open_backend_for(name, self.options)
            self.backends[name] = backend
        return backend

    # -- the loop --------------------------------------------------------------------
    async def execute(self) -> None:
        pending = await asyncio.to_thread(store.pending_record_ids, self.ledger, self.run.id)
        self.done_before = self.run.selected_count - len(pending)
        if self.options.check_inputs:
            self.inputs = InputChecker(
                timeout=min(self.options.timeout, 30.0),
                allow_loopback=_is_loopback(self.options.backend_url),
            )
        writer = asyncio.create_task(self._writer())
        gate = asyncio.Semaphore(self.options.concurrency)
        in_flight: set[asyncio.Task[None]] = set()
        chunks = [pending[start : start + _CHUNK] for start in range(0, len(pending), _CHUNK)]
        # The next chunk loads while this one is launched, so slots never wait on the DB.
        loading: asyncio.Task[Any] | None = None
        try:
            for index, chunk in enumerate(chunks):
                if self.stop.is_set():
                    break
                if loading is None:
                    loading = asyncio.create_task(asyncio.to_thread(self._load, chunk))
                records, fps = await loading
                loading = None
                if index + 1 < len(chunks):
                    loading = asyncio.create_task(asyncio.to_thread(self._load, chunks[index + 1]))
                for rid in chunk:
                    record = records[rid]
                    warnings = warnings_for(record, catalog=self.catalog)
                    plan = _plan_one(record, warnings, rid in fps, self.options.force)
                    if plan.action != _REPLAY:
                        await self.queue.put(self._not_replayed(record, plan, warnings))
                        continue
                    if not await self._acquire(gate):
                        break
                    if self._over_budget(record):
                        gate.release()
                        self.stop_reason = "max-cost"
                        self.stop.set()
                        break
                    self.reserved += record.cost or 0.0
                    slot = _Slot(gate)
                    task = asyncio.create_task(self._replay(record, warnings, fps[rid], slot))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                    task.add_done_callback(slot.release)
                if self.stop.is_set():
                    break
            await self._drain(in_flight)
        finally:
            if loading is not None:
                loading.cancel()
                await asyncio.gather(loading, return_exceptions=True)
            for task in in_flight:
                task.cancel()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
            await self.queue.put(None)
            await writer
            if self.inputs is not None:
                await self.inputs.aclose()

    async def _acquire(self, gate: asyncio.Semaphore) -> bool:
        """Take a concurrency slot; False (and no slot) when the run is stopped first."""
        if self.stop.is_set():
            return False
        acquiring = asyncio.ensure_future(gate.acquire())
        stopping = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if acquiring.done() and not acquiring.cancelled():
            if self.stop.is_set():
                gate.release()
                return False
            return True
        acquiring.cancel()
        return False

    async def _drain(self, in_flight: set[asyncio.Task[None]]) -> None:
        """Wait for the replays in flight; after an interrupt only ``grace`` seconds,
        after an abort not at all. Abandoned records stay pending for --resume."""
        loop = asyncio.get_running_loop()
        stopping = asyncio.ensure_future(self.stop.wait())
        aborting = asyncio.ensure_future(self.abort.wait())
        try:
            while in_flight and not self.stop.is_set() and not self.abort.is_set():
                await asyncio.wait({*in_flight, stopping, aborting}, return_when=asyncio.FIRST_COMPLETED)
            deadline = loop.time() + self.options.grace
            while in_flight and not self.abort.is_set():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await asyncio.wait(
                    {*in_flight, aborting}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            stopping.cancel()
            aborting.cancel()
        for task in list(in_flight):
            task.cancel()
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)

    def _load(self, chunk: Sequence[int]) -> tuple[dict[int, Record], dict[int, Fingerprint]]:
        return _records_by_id(self.ledger, chunk), store.load_fingerprints(self.ledger, chunk)

    def _over_budget(self, record: Record) -> bool:
        limit = self.options.max_cost
        if limit is None:
            return False
        return self.spent + self.reserved + (record.cost or 0.0) > limit + 1e-12

    # -- one record ------------------------------------------------------------------
    def _not_replayed(
        self, record: Record, plan: PlannedRecord, warnings: Sequence[RecordWarning]
    ) -> AuditResult:
        verdict = VERDICT_SKIPPED if plan.action == _SKIP else VERDICT_ERROR
        return AuditResult(
            run_id=self.run.id,
            record_id=record.id,
            verdict=verdict,
            outcome=SKIPPED if plan.action == _SKIP else ERROR,
            warnings=tuple(warnings),
            error_code=plan.code,
            error=plan.reason,
        )

    async def _replay(
        self, record: Record, warnings: Sequence[RecordWarning], stored_fp: Fingerprint, slot: _Slot
    ) -> None:
        warnings = list(warnings)
        try:
            result = await self._replay_checked(record, warnings, stored_fp, slot)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never let one record end the run
            log.exception("audit: record %s failed unexpectedly", record.id)
            result = self._error(record, warnings, "internal", f"{type(exc).__name__}: {exc}")
        finally:
            self.reserved -= record.cost or 0.0
        if result.replay is not None:
            cost = result.replay.get("cost")
            self.spent += cost if isinstance(cost, int | float) else (record.cost or 0.0)
        await self.queue.put(result)

    async def _replay_checked(
        self, record: Record, warnings: list[RecordWarning], stored_fp: Fingerprint, slot: _Slot
    ) -> AuditResult:
        if self.inputs is not None and input_urls(record.params):
            missing = await self.inputs.warning_for(record.params)
            if missing is not None:
                warnings.append(missing)
                if not self.options.force:
                    return AuditResult(
                        run_id=self.run.id,
                        record_id=record.id,
                        verdict=VERDICT_SKIPPED,
                        outcome=SKIPPED,
                        warnings=tuple(warnings),
                        error_code=missing.code,
                        error=f"{missing.explanation} ({missing.detail})",
                    )
        try:
            backend = self.backend_for(record)
            # The record's own request, or one rebuilt from its columns for another protocol.
            request = replay_request(record, accepted_protocols(backend))
        except LedgerError as exc:
            return self._error(record, warnings, getattr(exc, "code", "unsupported"), str(exc))
        name = backend.name
        limiter = self.limiters.setdefault(name, _RateLimiter(self.options.rate))
        await limiter.wait()
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.options.deadline):
                generated = await backend.generate(request)
        except TimeoutError:
            return self._error(
                record,
                warnings,
                "timeout",
                f"replay took longer than the {self.options.deadline:g}s deadline",
            )
        except BackendError as exc:
            return self._error(record, warnings, getattr(exc, "code", "backend-error"), str(exc))
        finally:
            # The slot bounds requests to the backend: the next replay starts while this
            # one is fingerprinted and stored.
            slot.release()
        duration = time.monotonic() - started
        output = _pick_output(generated.outputs, record)
        if output is None:
            return self._error(record, warnings, "no-output", f"{name} returned no output for the replay")
        replay: dict[str, Any] = {
            "backend": name,
            "requested_seed": _seed_text(record.seed),
            "seed": _seed_text(output.seed),
            "seed_matches": output.seed == record.seed if output.seed is not None else None,
            "task_uuid": output.task_uuid or generated.task_uuid,
            "output_uuid": output.output_uuid,
            "cost": output.cost,
            "duration_s": round(duration, 4),
            "attempts": generated.attempts,
            "retries": generated.retries,
            "media_type": output.media_type,
            "bytes": output.size,
            "file_sha256": output.sha256,
            "started_at": generated.started_at.isoformat(),
        }
        reported = generated.metadata if isinstance(generated.metadata, Mapping) else {}
        replay_env = reported.get("environment")
        if isinstance(replay_env, Mapping):
            replay["environment"] = dict(replay_env)
        if reported.get("scheduler_mapping"):
            replay["scheduler_mapping"] = str(reported["scheduler_mapping"])
        try:
            # Read as the record's modality: a replay that is not one fails in one line.
            if len(output.data) <= _INLINE_FINGERPRINT_BYTES and record.modality is Modality.IMAGE:
                replay_fp = fingerprint(output.data, str(record.modality))
            else:
                replay_fp = await asyncio.to_thread(fingerprint, output.data, str(record.modality))
        except FingerprintError as exc:
            return self._error(record, warnings, "undecodable-output", str(exc), replay=replay)
        try:
            comparison = compare(stored_fp, replay_fp)
        except FingerprintError as exc:  # e.g. the stored fingerprint is of another modality
            return self._error(record, warnings, "undecodable-output", str(exc), replay=replay)
        replay["fingerprint_version"] = replay_fp.version
        verdict = str(comparison.verdict)
        distances = comparison.to_dict()
        distances.pop("verdict", None)
        if verdict != "identical" and isinstance(replay_env, Mapping):
            # Name what differs between the record's runtime and the replay's.
            recorded_env = await asyncio.to_thread(self.ledger.environment_of, record.id)
            replay["environment_differences"] = environment_differences(recorded_env, replay_env)
        return AuditResult(
            run_id=self.run.id,
            record_id=record.id,
            verdict=verdict,
            outcome=outcome_for(verdict, (w.code for w in warnings)),
            warnings=tuple(warnings),
            distances=distances,
            replay=replay,
            replay_thumbnail=replay_fp.thumbnail,
            replay_pixel_sha256=replay_fp.pixel_sha256,
        )

    def _error(
        self,
        record: Record,
        warnings: Sequence[RecordWarning],
        code: str,
        message: str,
        *,
        replay: Mapping[str, Any] | None = None,
    ) -> AuditResult:
        return AuditResult(
            run_id=self.run.id,
            record_id=record.id,
            verdict=VERDICT_ERROR,
            outcome=ERROR,
            warnings=tuple(warnings),
            replay=replay,
            error_code=code,
            error=message,
        )

    # -- the writer ------------------------------------------------------------------
    async def _writer(self) -> None:
        """Store results as they come, in short transactions: a batch is what arrives
        within ``_WRITE_WINDOW`` seconds of its first result (at most ``_WRITE_BATCH``),
        so a result is committed a fraction of a second after it is known while the
        event loop is not handing a thread one row at a time. Each result is inserted
        at most once."""
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
                    self.progress(self.done_before + self.stored, self.run.selected_count, dict(self.counts))

    async def _write_with_retries(self, batch: Sequence[AuditResult]) -> int:
        """A busy or briefly unreachable database does not end the run at once; if it
        stays unusable the run ends interrupted and can be resumed."""
        for attempt in range(1, 4):
            try:
                return await asyncio.to_thread(self._write, batch)
            except StoreError as exc:
                if attempt == 3:
                    raise
                log.warning("audit: storing %d result(s) failed (%s); retrying", len(batch), exc)
                await asyncio.sleep(0.5 * attempt)
        return 0  # pragma: no cover - the loop returns or raises

    def _write(self, batch: Sequence[AuditResult]) -> int:
        stored = 0
        with self.ledger.writing() as conn:
            for result in batch:
                stored += store.insert_result(self.ledger, result, conn=conn)
            store.store_record_warnings(self.ledger, [(r.record_id, r.warnings) for r in batch], conn=conn)
        return stored


def _pick_output(outputs: Sequence[GeneratedOutput], record: Record) -> GeneratedOutput | None:
    if not outputs:
        return None
    for output in outputs:
        if output.index == record.output_index and len(outputs) > 1:
            return output
    return outputs[0]


def _seed_text(seed: int | None) -> str | None:
    return None if seed is None else str(seed)


def _is_loopback(url: str | None) -> bool:
    if not url:
        return False
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def open_backend_for(name: str, options: AuditOptions) -> AsyncBackend:
    """Open backend ``name`` with the run's timeout, retries and URL."""
    extra: dict[str, Any] = {}
    if _protocol(name) == "runware":
        # The auditor needs the bytes, not a URL: one round trip per replay, and no
        # dependence on how long the provider keeps output URLs alive.
        extra["output_type"] = "base64Data"
    return open_backend(
        name,
        options.backend_url,
        timeout=options.timeout,
        retry=RetryPolicy(max_attempts=options.attempts),
        **extra,
    )


def _protocol(name: str) -> str | None:
    try:
        return protocol_of(name)
    except BackendError:
        return None


async def _close_all(backends: Mapping[str, AsyncBackend]) -> None:
    for backend in backends.values():
        try:
            await backend.aclose()
        except Exception:  # pragma: no cover - closing is best effort
            log.debug("closing %s failed", backend.name, exc_info=True)


async def _run(
    ledger: Ledger,
    run: AuditRun,
    options: AuditOptions,
    policy: Policy,
    *,
    catalog: ModelCatalog | None,
    progress: Progress | None,
    stop: asyncio.Event | None,
    abort: asyncio.Event | None,
    backends: dict[str, AsyncBackend],
    extra_summary: Mapping[str, Any],
) -> AuditOutcome:
    runner = _Runner(
        ledger,
        run,
        options,
        catalog=catalog,
        progress=progress,
        stop=stop,
        abort=abort,
        backends=backends,
    )
    started = time.monotonic()
    try:
        await runner.execute()
    finally:
        await _close_all(backends)
        # Interrupted means records are left, whatever the reason (signal, cost limit,
        # an error that ended the run); a stop that came after the last result is not.
        remaining = await asyncio.to_thread(store.pending_record_ids, ledger, run.id)
        interrupted = bool(remaining)
        counts = await asyncio.to_thread(store.result_counts, ledger, run.id)
        previous = dict(run.summary or {})
        summary: dict[str, Any] = {
            **counts,
            **extra_summary,
            "selected": run.selected_count,
            "pending": len(remaining),
            "policy_held": policy.holds(counts["outcomes"]) if not remaining else None,
            "violations": policy.violations(counts["outcomes"]),
            "elapsed_s": round(float(previous.get("elapsed_s") or 0.0) + time.monotonic() - started, 3),
            "sessions": int(previous.get("sessions") or 0) + 1,
        }
        if runner.stop_reason:
            summary["stopped"] = runner.stop_reason
        status = store.INTERRUPTED if interrupted else store.FINISHED
        if not interrupted:
            summary["sealed"] = await asyncio.to_thread(_seal, ledger)
        final = await asyncio.to_thread(store.finish_run, ledger, run.id, status=status, summary=summary)
    return AuditOutcome(final, policy, interrupted, runner.stored)


def _seal(ledger: Ledger) -> int | None:
    """Seal new entries (audit results among them) when a signing key is configured."""
    try:
        sealed = seal_if_configured(ledger)
    except LedgerError as exc:
        log.warning("audit: sealing the log failed: %s", exc)
        return None
    return None if sealed is None else sealed.sealed


async def run_audit(
    ledger: Ledger,
    selection: Selection,
    options: AuditOptions,
    policy: Policy,
    *,
    catalog: ModelCatalog | None = None,
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
    abort: asyncio.Event | None = None,
    plan: AuditPlan | None = None,
) -> AuditOutcome:
    """Start a new audit run over ``selection`` and run it to the end (or an interrupt:
    set ``stop`` to stop launching replays, ``abort`` to abandon those in flight)."""
    if plan is None:
        plan = await asyncio.to_thread(plan_audit, ledger, selection, options, catalog=catalog)
    estimated = plan.estimated_cost
    if options.max_cost is not None and estimated > options.max_cost + 1e-12:
        raise UsageError(
            f"the replays would cost about {estimated:g} (recorded costs), above --max-cost "
            f"{options.max_cost:g}; narrow the selection, use --sample, or raise --max-cost"
        )
    extra = {"estimated_cost": estimated, "records_without_cost": plan.unknown_cost}
    names = [options.backend] if options.backend else sorted({p.backend for p in plan.replays})
    backends: dict[str, AsyncBackend] = {}
    try:
        # Open every backend before anything is written: a bad URL or a missing API
        # key is one usage error, not a thousand error results.
        for name in names if plan.replays else []:
            backends.setdefault(name.lower(), open_backend_for(name, options))
        run = await asyncio.to_thread(
            store.create_run,
            ledger,
            [p.record_id for p in plan.records],
            selection={**plan.selection.to_dict(), "population": plan.population},
            policy=policy.to_dict(),
            options=options.to_dict(),
            backend=options.backend,
            backend_url=safe_url(options.backend_url) if options.backend_url else None,
            summary=extra,
        )
    except BaseException:
        await _close_all(backends)
        raise
    return await _run(
        ledger,
        run,
        options,
        policy,
        catalog=catalog,
        progress=progress,
        stop=stop,
        abort=abort,
        backends=backends,
        extra_summary=extra,
    )


async def resume_audit(
    ledger: Ledger,
    run_id: str,
    *,
    overrides: Mapping[str, Any] | None = None,
    policy: Policy | None = None,
    catalog: ModelCatalog | None = None,
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
    abort: asyncio.Event | None = None,
) -> AuditOutcome:
    """Continue an interrupted (or killed) run: replay the selected records that have
    no result yet, with the run's stored options unless ``overrides`` change them."""
    run = await asyncio.to_thread(store.get_run, ledger, run_id)
    if run.status == store.FINISHED:
        raise UsageError(f"audit run {run.id} already finished; start a new run instead")
    stored_options = dict(run.options)
    overrides = dict(overrides or {})
    if not overrides.get("backend_url"):
        # The stored URL is redacted (no credentials, no query): usable for plain URLs.
        overrides["backend_url"] = stored_options.get("backend_url")
    options = AuditOptions.from_dict(stored_options, **overrides)
    policy = policy or Policy.from_dict(run.policy)
    names = (
        [options.backend] if options.backend else await asyncio.to_thread(_pending_backends, ledger, run.id)
    )
    backends: dict[str, AsyncBackend] = {}
    try:
        for name in names:
            backends.setdefault(name.lower(), open_backend_for(name, options))
    except BaseException:
        await _close_all(backends)
        raise
    await asyncio.to_thread(store.set_run_status, ledger, run.id, store.RUNNING)
    extra = {k: v for k, v in (run.summary or {}).items() if k in ("estimated_cost", "records_without_cost")}
    return await _run(
        ledger,
        run,
        options,
        policy,
        catalog=catalog,
        progress=progress,
        stop=stop,
        abort=abort,
        backends=backends,
        extra_summary=extra,
    )


def _pending_backends(ledger: Ledger, run_id: str) -> list[str]:
    pending = store.pending_record_ids(ledger, run_id)
    names: set[str] = set()
    for start in range(0, len(pending), _CHUNK):
        names.update(r.backend for r in _records_by_id(ledger, pending[start : start + _CHUNK]).values())
    return sorted(names)
