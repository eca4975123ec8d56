"""The replay engine's entry points: start (:func:`run_audit`) or continue
(:func:`resume_audit`) an audit run: select, check, replay, fingerprint, compare, store.

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

Selection and plan live in :mod:`ledger.audit.plan`, the replays in
:mod:`ledger.audit.runner` (backends opened and paced by :mod:`ledger.audit.backends`),
the stored results in :mod:`ledger.audit.writer`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger.audit import store
from ledger.audit.backends import close_all, open_backend_for
from ledger.audit.plan import CHUNK, AuditOptions, AuditPlan, Progress, Selection, plan_audit, records_by_id
from ledger.audit.policy import Policy
from ledger.audit.runner import Runner
from ledger.audit.store import AuditRun
from ledger.backends import AsyncBackend
from ledger.backends.http import safe_url
from ledger.core.models import ModelCatalog
from ledger.errors import LedgerError, UsageError
from ledger.integrity import seal_if_configured
from ledger.store import Ledger

log = logging.getLogger("ledger.audit")

__all__ = ["AuditOutcome", "resume_audit", "run_audit"]


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
    runner = Runner(
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
        await close_all(backends)
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
        await close_all(backends)
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
        await close_all(backends)
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
    for start in range(0, len(pending), CHUNK):
        names.update(r.backend for r in records_by_id(ledger, pending[start : start + CHUNK]).values())
    return sorted(names)
