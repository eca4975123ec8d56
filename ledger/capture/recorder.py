"""The Recorder: spool + pairing + background writer, shared by the transport, the
proxy and the in-process API. A body that cannot be read is logged (without secrets)
and counted, never raised into the caller.

When the spool cannot take a record (a full disk), ``on_spool_full`` decides:
``"direct"`` (the default) writes it straight to the ledger on the caller's thread;
``"raise"`` does not. Either way, a record nothing could take is counted as failed,
logged, and raised as :class:`SpoolFullError` to callers that asked for it (the
transport and the in-process API), so no caller is told a generation was recorded
when it was not. The proxy asks :meth:`Recorder.accepting` before it forwards and
answers 503 while the spool is full.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger import config
from ledger.capture.archiving import ArchiveOption, OutputArchiver, resolve_archive
from ledger.capture.entries import Output, decode_entry, encode_entry
from ledger.capture.fingerprints import default_fingerprinter, default_sealer, load_env_signer
from ledger.capture.pairing import Captured, CaptureParseError, Pairer, PendingTasks
from ledger.capture.spool import Spool, SpoolError, SpoolFullError
from ledger.capture.writer import Counters, SpoolWriter
from ledger.core.records import NewRecord, Source
from ledger.core.redaction import redact_text
from ledger.errors import LedgerError, UsageError

log = logging.getLogger(__name__)

ENV_SPOOL = config.SPOOL.name
ON_SPOOL_FULL = ("direct", "raise")
DEFAULT_SPOOL = ".seedledger-spool"


@dataclass(frozen=True)
class SocketFrame:
    """What one server frame on a WebSocket gave: records spooled, tasks completed."""

    records: int
    tasks: int


def resolve_spool(directory: str | os.PathLike[str] | None) -> Path:
    return Path(directory or config.SPOOL.raw() or DEFAULT_SPOOL).expanduser()


class Recorder:
    """Records Runware exchanges durably and lands them in the ledger in the background.

    ``db`` is the ledger URL (default: ``SEEDLEDGER_DATABASE_URL`` or ./seedledger.db).
    ``writer=False`` only spools (another process, or ``seedledger spool drain``, lands
    the records). ``signer`` (default: the key in ``SEEDLEDGER_SIGNING_KEY`` if set)
    seals landed records into the log every few seconds and once at close; None turns
    sealing off. ``archive`` (a directory or an Archive; default: ``SEEDLEDGER_ARCHIVE``
    if set; None turns it off) keeps each fingerprinted output's bytes in the output
    archive, in the writer; a full or failing archive is logged and counted in
    :meth:`status`, and the record still lands. One Recorder owns its spool directory
    at a time.
    """

    def __init__(
        self,
        spool: str | os.PathLike[str] | None = None,
        db: str | None = None,
        *,
        source: Source = Source.HOOK,
        tags: Sequence[str] = (),
        experiment_id: str | None = None,
        writer: bool = True,
        fingerprint: bool = True,
        allow_private_downloads: bool = False,
        trusted_hosts: Sequence[str] = (),
        signer: Any = "env",
        batch_records: int = 5000,
        max_backoff: float = 5.0,
        sync: bool = False,
        on_spool_full: str = "direct",
        segment_bytes: int | None = None,
        archive: ArchiveOption = "env",
    ) -> None:
        if on_spool_full not in ON_SPOOL_FULL:
            choices = ", ".join(ON_SPOOL_FULL)
            raise UsageError(f"on_spool_full must be one of {choices}, got {on_spool_full!r}")
        self.on_spool_full = on_spool_full
        if signer == "env":
            # Automatic sealing when a signing key is configured (SEEDLEDGER_SIGNING_KEY).
            signer = load_env_signer()
        self.spool = (
            Spool(resolve_spool(spool), segment_bytes=segment_bytes)
            if segment_bytes
            else Spool(resolve_spool(spool))
        )
        self.counters = Counters()
        opened = resolve_archive(archive) if fingerprint else None
        self.archiver = OutputArchiver(opened) if opened is not None else None
        self.sync = sync
        pending = PendingTasks(self.spool.directory / "pending.jsonl")
        self.pairer = Pairer(pending, source=source, tags=tuple(tags), experiment_id=experiment_id)
        self.writer = SpoolWriter(
            self.spool,
            db,
            self.counters,
            batch_records=batch_records,
            max_backoff=max_backoff,
            fingerprinter=default_fingerprinter(
                allow_private_downloads=allow_private_downloads,
                trusted_hosts=frozenset(trusted_hosts),
                archiver=self.archiver,
            )
            if fingerprint
            else None,
            sealer=default_sealer(signer) if signer is not None else None,
        )
        self._closed = False
        self._writes = writer
        if writer:
            self.writer.start()

    # -- recording (never raises) ------------------------------------------------------

    def record_exchange(
        self,
        request_body: bytes,
        response_body: bytes,
        *,
        content_encoding: str | None = None,
        known_secrets: tuple[str, ...] = (),
        strict: bool = False,
    ) -> int:
        """Record what one Runware request/response pair produced; return how many
        records were kept. ``response_body`` is as sent (``content_encoding`` is
        undone here). Failures are logged and counted; with ``strict``, records that
        nothing could take raise :class:`SpoolFullError` (bodies that cannot be read
        never raise)."""
        try:
            captured = self.pairer.exchange(
                request_body, response_body, content_encoding=content_encoding, known_secrets=known_secrets
            )
        except CaptureParseError as exc:
            self.note_failure(exc, known_secrets)
            return 0
        except Exception as exc:  # recording must never break the caller
            self.note_failure(exc, known_secrets)
            return 0
        return 0 if captured is None else self._spool(captured, strict=strict)

    def record_webhook(self, body: bytes, *, known_secrets: tuple[str, ...] = ()) -> int:
        try:
            captured = self.pairer.webhook(body, known_secrets=known_secrets)
        except Exception as exc:
            self.note_failure(exc, known_secrets)
            return 0
        return self._spool(captured)

    def record_socket_tasks(self, tasks: list[dict[str, Any]], *, known_secrets: tuple[str, ...] = ()) -> int:
        """A client frame on a WebSocket: its inference tasks become pending (journaled
        before the frame is forwarded); returns how many. Never raises."""
        try:
            return self.pairer.submitted(tasks, known_secrets=known_secrets)
        except Exception as exc:
            self.note_failure(exc, known_secrets)
            return 0

    def record_socket_frame(self, body: bytes, *, known_secrets: tuple[str, ...] = ()) -> SocketFrame:
        """A server frame on a WebSocket: spool the records it completes. Never raises."""
        try:
            captured = self.pairer.frame(body, known_secrets=known_secrets)
        except Exception as exc:
            self.note_failure(exc, known_secrets)
            return SocketFrame(0, 0)
        if captured is None:
            return SocketFrame(0, 0)
        return SocketFrame(self._spool(captured), captured.completed)

    def record(
        self,
        records: Sequence[NewRecord],
        outputs: Mapping[str, Output] | None = None,
        *,
        environments: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> int:
        """Spool records built by the caller (the in-process API). Raises on a full
        disk or an unusable spool: the caller asked explicitly. ``environments`` maps
        an idempotency key to the runtime that output was made in."""
        if not records:
            return 0
        return self._keep(
            encode_entry(records, outputs, environments=environments), len(records), (), strict=True
        )

    def record_call(self, payload: bytes, count: int) -> int:
        """Spool one pipeline call's entry (:func:`~ledger.capture.entries.encode_call`,
        ``count`` records); return how many records were kept. Never raises: what
        neither the spool nor ``on_spool_full`` can keep is logged and counted failed."""
        return self._keep(payload, count, (), strict=False)

    def _spool(self, captured: Captured, *, strict: bool = False) -> int:
        if captured.unpaired:
            self.counters.add(unpaired=captured.unpaired)
        if not captured.records:
            return 0
        try:
            payload = encode_entry(captured.records, captured.outputs, known_secrets=captured.known_secrets)
        except Exception as exc:
            self._lost(len(captured.records), exc, captured.known_secrets)
            return 0
        return self._keep(payload, len(captured.records), captured.known_secrets, strict=strict)

    def _keep(self, payload: bytes, count: int, secrets: tuple[str, ...], *, strict: bool) -> int:
        """Spool one entry, or write it directly when the spool is full and the policy
        allows; otherwise count it failed (and raise when ``strict``)."""
        try:
            self.spool.append(payload, sync=self.sync)
        except Exception as exc:  # a full disk, an unusable spool, an entry too large
            failure: BaseException = exc
            if isinstance(exc, SpoolFullError) and self.on_spool_full == "direct":
                try:
                    decoded = decode_entry(payload)
                    self.writer.write_direct(decoded.records, decoded.outputs, decoded.environments)
                    return count
                except LedgerError as direct_exc:
                    failure = SpoolFullError(f"{exc}; direct write to the ledger failed too: {direct_exc}")
            self._lost(count, failure, secrets)
            if strict:
                if isinstance(failure, UsageError):  # e.g. an entry over the size limit
                    raise failure from None
                kind = SpoolFullError if isinstance(failure, SpoolFullError) else SpoolError
                raise kind(f"{count} record(s) not recorded: {redact_text(str(failure), secrets)}") from None
            return 0
        self.counters.add(spooled=count)
        self.writer.wake()
        return count

    def _lost(self, count: int, exc: BaseException, secrets: tuple[str, ...]) -> None:
        log.error("cannot record %d records: %s", count, redact_text(str(exc), secrets))
        self.counters.add(failed=count)

    def accepting(self) -> bool:
        """Whether a record made now can be kept (the proxy asks before it forwards,
        so nothing is generated that cannot be recorded)."""
        return self.spool.accepting()

    def note_failure(self, exc: BaseException, secrets: tuple[str, ...] = ()) -> None:
        """Count and log a body that could not be recorded (the caller is unaffected)."""
        self.counters.add(parse_errors=1, failed=1)
        log.warning("response not recorded: %s", redact_text(str(exc) or exc.__class__.__name__, secrets))

    # -- status and shutdown -------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Health: ``status`` is ``error`` while records cannot be kept (the spool is
        full or failed, the writer keeps failing), ``degraded`` while records wait
        (database unreachable) or the spool needs attention (stray names, damaged
        bytes, the archive refusing outputs), else ``ok``; ``problems`` names each."""
        problems = self.spool.problems()
        archive = self.archiver.snapshot() if self.archiver is not None else {}
        if archive.get("archive_error"):
            problems.append(f"archive failing: {archive['archive_error']}")
        if self.writer.fault is not None:
            problems.append(f"writer failing: {self.writer.fault}")
        if self.writer.last_error is not None:
            problems.append(f"database unreachable: {self.writer.last_error}")
        blocked = not self.spool.accepting() or self.writer.fault is not None
        return {
            "status": "error" if blocked else ("degraded" if problems else "ok"),
            "problems": problems,
            "spool_refused": self.spool.refused,
            "spool_damaged": self.spool.damaged,
            "spool": str(self.spool.directory),
            "pending_tasks": len(self.pairer.pending),
            "spool_bytes": self.spool.pending_bytes(),
            "database_error": self.writer.last_error,
            **self.counters.snapshot(),
            **archive,
        }

    def close(self, *, drain_timeout: float = 30.0) -> bool:
        """Stop the writer after landing what the spool holds (up to ``drain_timeout``
        seconds; anything left stays in the spool for the next start). Returns True
        when the spool was fully drained."""
        if self._closed:
            return True
        self._closed = True
        try:
            empty = self.writer.stop(drain=self._writes and drain_timeout > 0, timeout=drain_timeout)
        finally:
            self.spool.close()
        return empty

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
