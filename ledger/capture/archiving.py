"""Keeping captured outputs in the output archive, off the caller's path.

The writer hands each output it fingerprinted (bytes carried in the entry or
downloaded) to :meth:`OutputArchiver.keep` after the record and its fingerprint are
committed, so the archive is never the only copy of a record's facts. An archive that
is full or failing never blocks or fails a record: the failure is logged once while it
persists, counted, and named in the recorder's status.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from ledger import config
from ledger.errors import LedgerError
from ledger.store.archive import Archive, ArchiveFullError

log = logging.getLogger(__name__)

ArchiveOption = str | os.PathLike[str] | Archive | None


def resolve_archive(archive: ArchiveOption | Path) -> Archive | None:
    """An Archive from a directory, an Archive, ``"env"`` (``SEEDLEDGER_ARCHIVE`` if
    set) or None (no archive)."""
    if archive is None or isinstance(archive, Archive):
        return archive
    if archive == "env":
        directory = config.ARCHIVE.path()
        return Archive.open(directory) if directory else None
    return Archive.open(archive)


class OutputArchiver:
    """Stores outputs in one archive; counts what it kept and what it could not."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.archived = 0  # outputs stored (or already there)
        self.failed = 0  # outputs not stored (archive full, unwritable, hash mismatch)
        self.last_error: str | None = None  # while the latest attempt failed
        self._lock = threading.Lock()

    def keep(self, record_id: int, data: bytes, file_sha256: str) -> bool:
        """Store one output; never raises. True when it is in the archive."""
        try:
            self.archive.keep(data, file_sha256)
        except Exception as exc:  # an archive problem must never reach the writer
            if isinstance(exc, ArchiveFullError):
                message = exc.message
            elif isinstance(exc, LedgerError):
                message = f"record {record_id}: {exc.message}"
            else:
                message = f"record {record_id}: {type(exc).__name__}: {exc}"
            with self._lock:
                self.failed += 1
                repeated = message == self.last_error
                self.last_error = message
            # Once while it persists (a full archive would otherwise log every output).
            (log.debug if repeated else log.warning)("output not archived (the record is kept): %s", message)
            return False
        with self._lock:
            self.archived += 1
            self.last_error = None
        return True

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {
                "archive": str(self.archive.root),
                "archived": self.archived,
                "archive_failed": self.failed,
                "archive_error": self.last_error,
            }
