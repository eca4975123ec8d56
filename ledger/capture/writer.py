"""The background writer: drains the spool into the store in batches.

Exactly once: every record carries an idempotency key built from its task and output
UUIDs, and the insert ignores keys already stored, so an entry replayed after a crash
(landed, but its segment not yet deleted) is not stored twice. A segment is deleted
only after the transaction holding its entries committed.

When the database is unreachable the batch stays in the spool and is retried with
exponential backoff (a :class:`~ledger.backends.policies.RetryPolicy`: its delays,
never its attempt limit, for an accepted record is kept); records keep arriving in the
spool meanwhile and land when the database returns. An entry the database rejects
for good (not a connection problem) is moved to ``dead/`` in the spool directory and
counted as failed, so it cannot block the entries behind it.

Outputs are fingerprinted here, off the caller's path: from base64 bytes carried in
the entry, or by a bounded background download of the result URL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError, SQLAlchemyError

from ledger.backends.policies import RetryPolicy
from ledger.capture.bulk import BulkInserter
from ledger.capture.entries import DecodedEntry, Output, decode_entries
from ledger.capture.spool import Entry, Position, Spool
from ledger.core.records import utcnow
from ledger.errors import LedgerError, StoreError
from ledger.store import Ledger

log = logging.getLogger(__name__)

#: Release the active segment once this much of it has landed, or once the writer has
#: been idle this long (landed bytes must not hold a small disk), and at once when the
#: spool has refused an append for lack of room. Not per batch: that would create a file
#: per batch on the caller's path.
ROTATE_AFTER_BYTES = 256 * 1024
IDLE_ROTATE_S = 1.0
MAX_FAULT_BACKOFF = 30.0
#: Waits after an unexpected writer error: 0.1 s doubling up to MAX_FAULT_BACKOFF.
FAULT_RETRY = RetryPolicy(base_delay=0.1, max_delay=MAX_FAULT_BACKOFF, jitter=False)


def store_retry(max_backoff: float = 5.0) -> RetryPolicy:
    """Waits while the database is unreachable: 0.05 s doubling up to ``max_backoff``."""
    return RetryPolicy(base_delay=0.05, max_delay=max_backoff, jitter=False)


@dataclass
class Counters:
    """What the capture layer did since this process started (thread-safe enough:
    integer increments under one lock)."""

    spooled: int = 0  # records appended to the spool
    recorded: int = 0  # records committed to the store (replays of stored ones included)
    failed: int = 0  # records (or bodies) that could not be recorded
    retried: int = 0  # records whose batch had to be retried (database unreachable)
    parse_errors: int = 0  # bodies that could not be read as Runware envelopes
    unpaired: int = 0  # results for tasks this process never saw
    fingerprinted: int = 0
    fingerprint_failed: int = 0  # outputs that could not be fingerprinted (undecodable, not downloaded)
    fingerprint_retried: int = 0  # batches landed again because fingerprinting could not reach the store
    direct: int = 0  # records written straight to the store because the spool was full
    sealed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}


# Connection trouble, and anything that is not the database refusing the data (a bug,
# a misconfiguration): the batch stays in the spool and is retried with backoff.
_TRANSIENT = (OperationalError, InterfaceError, DisconnectionError)


class SpoolWriter:
    """Drains one :class:`Spool` into the ledger at ``db_url``. Call :meth:`start` for
    a background thread, or :meth:`drain` to land everything now.

    ``retry`` spaces the attempts while the database is unreachable (default:
    :func:`store_retry` with ``max_backoff``); its ``max_attempts`` does not apply,
    since the batch waits in the spool until it lands."""

    def __init__(
        self,
        spool: Spool,
        db_url: str | None,
        counters: Counters | None = None,
        *,
        batch_records: int = 5000,
        max_backoff: float = 5.0,
        retry: RetryPolicy | None = None,
        linger: float = 0.2,
        fingerprinter: Callable[[Ledger, list[tuple[int, Output]]], int] | None = None,
        sealer: Callable[..., int] | None = None,
        ledger: Ledger | None = None,
        rotate_bytes: int = ROTATE_AFTER_BYTES,
        idle_rotate_s: float = IDLE_ROTATE_S,
    ) -> None:
        self.spool = spool
        self.rotate_bytes = rotate_bytes
        self.idle_rotate_s = idle_rotate_s
        self.db_url = db_url
        self.counters = counters or Counters()
        self.batch_records = batch_records
        self.retry = retry or store_retry(max_backoff)
        self.linger = linger
        self.fingerprinter = fingerprinter
        self.sealer = sealer
        self._ledger = ledger
        self._own_ledger = ledger is None
        self._inserter: BulkInserter | None = None
        self._cursor: Position = spool.start()
        self._step_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._backoff = 0.0
        self._failures = 0  # consecutive attempts the database was unreachable
        self._last_progress = time.monotonic()
        self._counted = self._cursor  # records before this were counted as recorded
        self.last_error: str | None = None  # why the database is unreachable, while it is
        self.fault: str | None = None  # an unexpected writer error, while it persists
        self._fault_backoff = 0.0
        self._faults = 0

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> SpoolWriter:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="seedledger-spool-writer", daemon=True)
            self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, *, drain: bool = True, timeout: float = 30.0) -> bool:
        """Stop the thread; with ``drain``, first land what the spool holds (up to
        ``timeout`` seconds). Returns True when nothing is left behind."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        empty = self.drain(timeout=timeout) if drain else self.is_empty()
        if self.sealer is not None and self._ledger is not None:
            try:  # seal what landed since the last periodic seal
                self.counters.add(sealed=self.sealer(self._ledger, force=True))
            except LedgerError as exc:
                log.warning("sealing failed (records are stored; seal later): %s", exc)
        if self._own_ledger and self._ledger is not None:
            self._ledger.close()
            self._ledger = None
        return empty

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                landed = self.step()
            except Exception as exc:  # the writer thread must survive anything
                self._faulted(exc)
                self._stop.wait(self._fault_backoff)
                continue
            if self.fault is not None:
                log.warning("spool writer recovered from: %s", self.fault)
                self.fault, self._fault_backoff, self._faults = None, 0.0, 0
            if landed >= self.batch_records:
                continue  # a backlog: keep going
            wait = self._backoff if landed < 0 else (self.linger if landed > 0 else 0.25)
            if self._wake.wait(wait) and landed >= 0 and not self._backlog():
                # Let a few more records arrive so one transaction lands them together
                # (less CPU per record next to the caller; the spool already holds them).
                self._stop.wait(self.linger)
            self._wake.clear()

    def _backlog(self) -> bool:
        """More than a segment waits, or the spool is short of room: no lingering."""
        return self.spool.under_pressure or self.spool.end.segment > self._cursor.segment + 1

    def _faulted(self, exc: BaseException) -> None:
        """An unexpected error: back off (up to MAX_FAULT_BACKOFF), name it in status,
        and log it once while it persists (the traceback only at debug level)."""
        message = f"{type(exc).__name__}: {_short(exc)}"
        self._faults += 1
        self._fault_backoff = FAULT_RETRY.backoff(self._faults)
        if message != self.fault:
            log.error("spool writer failed (retrying with backoff): %s", message)
            log.debug("spool writer failure", exc_info=exc)
        self.fault = message

    # -- draining ----------------------------------------------------------------

    def is_empty(self) -> bool:
        return self._cursor >= self.spool.end and not self.spool.read(self._cursor, max_entries=1)

    def drain(self, timeout: float | None = None) -> bool:
        """Land everything in the spool now (retrying while the database is down,
        up to ``timeout``). Returns True when the spool is empty."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            landed = self.step(rotate=True)
            if landed == 0 and self.is_empty():
                return True
            if landed < 0:
                if deadline is not None and time.monotonic() + self._backoff > deadline:
                    return False
                time.sleep(self._backoff)
            elif deadline is not None and time.monotonic() > deadline:
                return False

    def step(self, *, rotate: bool = False) -> int:
        """Land one batch. Returns records landed, 0 when there was nothing, -1 when the
        database was unreachable (the batch stays in the spool)."""
        with self._step_lock:
            end_before = self.spool.end
            entries = self.spool.read(self._cursor, max_entries=self.batch_records)
            if not entries:
                if self._cursor < end_before:
                    self._cursor = end_before
                idle = time.monotonic() - self._last_progress > self.idle_rotate_s
                self.spool.release(self._cursor, rotate=rotate or idle or self.spool.under_pressure)
                return 0
            decoded: list[tuple[Entry, DecodedEntry]] = []
            for entry, result in zip(entries, decode_entries([e.payload for e in entries]), strict=True):
                if isinstance(result, ValueError):
                    self.spool.dead_letter(entry.payload, f"unreadable entry: {result.__class__.__name__}")
                    self.counters.add(failed=1)
                else:
                    decoded.append((entry, result))
            landed = self._land(decoded)
            if landed < 0:
                return -1
            self._cursor = self._counted = max(self._counted, entries[-1].end)
            self._last_progress = time.monotonic()
            rotate = rotate or self._cursor.offset >= self.rotate_bytes or self.spool.under_pressure
            self.spool.release(self._cursor, rotate=rotate)
            return max(landed, 1) if entries else 0

    def _open(self) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger.open(self.db_url)
        if self._inserter is None:
            self._inserter = BulkInserter(self._ledger.dialect)
        return self._ledger

    def _land(self, decoded: list[tuple[Entry, DecodedEntry]]) -> int:
        items = [record for _, d in decoded for record in d.records]
        outputs = {key: out for _, d in decoded for key, out in d.outputs.items()}
        environments = {key: env for _, d in decoded for key, env in d.environments.items()}
        if not items:
            return 0
        want = list(outputs) if self.fingerprinter is not None else []
        try:
            ids = self._insert(items, want, environments)
            fingerprinted = self._fingerprint(ids, outputs)
        except (StoreError, *_TRANSIENT) as exc:
            self._unreachable(exc, len(items))
            return -1
        except SQLAlchemyError as exc:
            if not isinstance(exc, DBAPIError):
                log.error("landing failed, records stay in the spool: %s", _short(exc))
                self._unreachable(exc, len(items))
                return -1
            # The database refused the data: find the entries it refuses.
            log.warning("batch of %d records rejected (%s); retrying entry by entry", len(items), _short(exc))
            return self._land_one_by_one(decoded)
        if not fingerprinted:  # records are in; their fingerprints wait with them in the spool
            self.counters.add(fingerprint_retried=1)
            return -1
        self._backoff, self._failures = 0.0, 0
        self.last_error = None
        fresh = [record for entry, d in decoded if entry.end > self._counted for record in d.records]
        self.counters.add(recorded=len(fresh))
        self._seal()
        return len(items)

    def _land_one_by_one(self, decoded: list[tuple[Entry, DecodedEntry]]) -> int:
        landed = 0
        for entry, d in decoded:
            try:
                ids = self._insert(
                    d.records, list(d.outputs) if self.fingerprinter is not None else [], d.environments
                )
                if not self._fingerprint(ids, d.outputs):
                    return -1 if landed == 0 else landed  # pragma: no cover - rare interleaving
            except (StoreError, *_TRANSIENT) as exc:
                self._unreachable(exc, len(d.records))
                return -1 if landed == 0 else landed  # pragma: no cover - rare interleaving
            except DBAPIError as exc:
                self.spool.dead_letter(entry.payload, f"rejected by the database: {_short(exc)}")
                self.counters.add(failed=len(d.records))
                continue
            landed += len(d.records)
            if entry.end > self._counted:
                self.counters.add(recorded=len(d.records))
            self._seal()
        return landed

    def _insert(
        self,
        items: list[list[Any]],
        want_ids: list[str],
        environments: dict[str, dict[str, Any]] | None = None,
    ) -> dict[str, int]:
        ledger = self._open()
        assert self._inserter is not None
        with ledger.engine.connect() as conn:
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                return self._inserter.insert(
                    conn, items, utcnow(), want_ids=want_ids, environments=environments
                )

    def _unreachable(self, exc: BaseException, count: int) -> None:
        self._failures += 1
        self._backoff = self.retry.backoff(self._failures)
        message = _short(exc)
        if message != self.last_error:
            log.warning("database unreachable, records wait in the spool: %s", message)
        self.last_error = message
        self.counters.add(retried=count)

    def _fingerprint(self, ids: dict[str, int], outputs: dict[str, Output]) -> bool:
        """Fingerprint committed records. False when the store could not take the
        fingerprints (the caller keeps the batch in the spool: it lands again, exactly
        once, and the fingerprints are retried with it)."""
        if self.fingerprinter is None or not outputs:
            return True
        work = [(ids[key], out) for key, out in outputs.items() if key in ids]
        try:
            done = self.fingerprinter(self._open(), work)
        except (StoreError, SQLAlchemyError) as exc:
            self._unreachable(exc, 0)
            return False
        except LedgerError as exc:
            log.warning("fingerprinting %d outputs failed: %s", len(work), exc)
            done = 0
        self.counters.add(fingerprinted=done, fingerprint_failed=len(work) - done)
        return True

    def _seal(self) -> None:
        if self.sealer is not None:
            try:
                self.counters.add(sealed=self.sealer(self._open()))
            except LedgerError as exc:
                log.warning("sealing failed (records are stored; seal later): %s", exc)

    def write_direct(
        self,
        records: list[list[Any]],
        outputs: dict[str, Output],
        environments: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Land records now, on the caller's thread (the spool is full). Raises
        StoreError when the store cannot take them."""
        with self._step_lock:
            try:
                ids = self._insert(
                    records, list(outputs) if self.fingerprinter is not None else [], environments
                )
            except SQLAlchemyError as exc:
                raise StoreError(f"cannot write to the ledger: {_short(exc)}") from None
            self.counters.add(recorded=len(records), direct=len(records))
            if not self._fingerprint(ids, outputs):
                log.warning("fingerprints of %d directly written records not stored", len(outputs))
                self.counters.add(fingerprint_failed=len(outputs))
            self._seal()


def _short(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
