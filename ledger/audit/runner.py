"""The audit runner: replay, fingerprint, compare.

The replayable records go to their own backend (or the one given), at most
``concurrency`` at a time and at most ``rate`` requests per second per backend, retries
done by the adapter. Each replay is fingerprinted off the event loop and compared with
the stored fingerprint (and, with an output archive, with the original at full
resolution: ``fullres.py``); the verdict and the record's warnings give the outcome, which
goes to the :class:`~ledger.audit.writer.ResultWriter`. One record's failure (backend
error, timeout, undecodable output) is an ``error`` result, never the end of the run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from ledger.audit import store
from ledger.audit.backends import RateLimiter, open_backend_for
from ledger.audit.fullres import OriginalComparer
from ledger.audit.inputs import InputChecker, input_urls
from ledger.audit.plan import (
    ACTION_REPLAY,
    ACTION_SKIP,
    CHUNK,
    AuditOptions,
    PlannedRecord,
    Progress,
    plan_one,
    records_by_id,
)
from ledger.audit.policy import (
    ERROR,
    SKIPPED,
    VERDICT_ERROR,
    VERDICT_SKIPPED,
    outcome_for,
)
from ledger.audit.store import AuditResult, AuditRun
from ledger.audit.writer import ResultWriter
from ledger.backends import AsyncBackend, GeneratedOutput
from ledger.backends.translate import accepted_protocols, replay_request
from ledger.core.environment import differences as environment_differences
from ledger.core.models import ModelCatalog
from ledger.core.records import Modality, Record
from ledger.core.warnings import RecordWarning, warnings_for
from ledger.errors import BackendError, FingerprintError, LedgerError
from ledger.fingerprint import Fingerprint, compare, fingerprint
from ledger.fingerprint._thumbs_video import display_strip_b64
from ledger.store import Ledger
from ledger.store.archive import Archive

log = logging.getLogger("ledger.audit")

__all__ = ["Runner"]

#: Outputs this small are fingerprinted on the event loop (about a millisecond): a
#: thread hand-off would cost more than it saves. Larger ones go to a worker thread.
_INLINE_FINGERPRINT_BYTES: Final = 64 * 1024


class _Slot:
    """One concurrency slot, released once (after the backend call, or when the
    replay task ends, whichever comes first)."""

    def __init__(self, gate: asyncio.Semaphore) -> None:
        self._gate: asyncio.Semaphore | None = gate

    def release(self, *_: object) -> None:
        if self._gate is not None:
            self._gate.release()
            self._gate = None


class Runner:
    """Replays the pending records of one run; the writer stores their results."""

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
        self.stop = stop or asyncio.Event()
        self.abort = abort or asyncio.Event()
        self.backends = backends
        self.limiters: dict[str, RateLimiter] = {}
        self.inputs: InputChecker | None = None
        #: Archived originals, for full-resolution comparisons (docs/audit.md).
        self.originals = OriginalComparer(Archive.open(options.archive)) if options.archive else None
        self.writer = ResultWriter(ledger, run, progress=progress)
        #: Cost of finished replays (actual when reported, else recorded) and of those
        #: in flight (recorded): the budget --max-cost checks before each launch.
        self.spent = 0.0
        self.reserved = 0.0
        self.stop_reason: str | None = None

    @property
    def stored(self) -> int:
        """Results this call stored."""
        return self.writer.stored

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
        done_before = self.run.selected_count - len(pending)
        if self.options.check_inputs:
            self.inputs = InputChecker(
                timeout=min(self.options.timeout, 30.0),
                allow_loopback=_is_loopback(self.options.backend_url),
            )
        writing = asyncio.create_task(self.writer.run(done_before))
        gate = asyncio.Semaphore(self.options.concurrency)
        in_flight: set[asyncio.Task[None]] = set()
        chunks = [pending[start : start + CHUNK] for start in range(0, len(pending), CHUNK)]
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
                    plan = plan_one(record, warnings, rid in fps, self.options.force)
                    if plan.action != ACTION_REPLAY:
                        await self.writer.put(self._not_replayed(record, plan, warnings))
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
            await self.writer.close()
            await writing
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
        return records_by_id(self.ledger, chunk), store.load_fingerprints(self.ledger, chunk)

    def _over_budget(self, record: Record) -> bool:
        limit = self.options.max_cost
        if limit is None:
            return False
        return self.spent + self.reserved + (record.cost or 0.0) > limit + 1e-12

    # -- one record ------------------------------------------------------------------
    def _not_replayed(
        self, record: Record, plan: PlannedRecord, warnings: Sequence[RecordWarning]
    ) -> AuditResult:
        verdict = VERDICT_SKIPPED if plan.action == ACTION_SKIP else VERDICT_ERROR
        return AuditResult(
            run_id=self.run.id,
            record_id=record.id,
            verdict=verdict,
            outcome=SKIPPED if plan.action == ACTION_SKIP else ERROR,
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
        await self.writer.put(result)

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
        limiter = self.limiters.setdefault(name, RateLimiter(self.options.rate))
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
                # like=: hashed as the original was, so identical still compares across
                # a fingerprint pipeline change.
                replay_fp = await asyncio.to_thread(
                    fingerprint, output.data, str(record.modality), like=stored_fp
                )
        except FingerprintError as exc:
            return self._error(record, warnings, "undecodable-output", str(exc), replay=replay)
        try:
            comparison = compare(stored_fp, replay_fp)
        except FingerprintError as exc:  # e.g. the stored fingerprint is of another modality
            return self._error(record, warnings, "undecodable-output", str(exc), replay=replay)
        if self.originals is not None:
            comparison, note = await self.originals.refine(record, stored_fp, comparison, output.data)
            if note is not None:
                replay["original"] = note
        replay["fingerprint_version"] = replay_fp.version
        strip = display_strip_b64(replay_fp)
        if strip is not None:  # a video replay's frames, for reports (bounded: 8 tiles)
            replay["frame_strip_png"] = strip
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
