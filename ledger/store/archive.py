"""The output archive: an optional content-addressed store of output bytes.

Files are keyed by their SHA-256, the fingerprint's ``file_sha256``, so an archived
file can be checked against the sealed log. Layout ``ROOT/ab/cd/<sha256>``; each file
is written to a temporary name in the same directory, fsynced and renamed into place,
so a reader never sees a partial file. The archive is never the only copy of a
record's facts: the record and its fingerprint live in the database.

The total cap is checked against a usage figure scanned once per process and kept up
to date by this process's own writes (a scan per file would make every write cost the
whole archive), so writers in several processes may overshoot it by what the others
wrote since.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

from ledger.core.files import atomic_write
from ledger.errors import InvalidInputError, LedgerError

#: One output larger than this is refused (a 8192² PNG is well under it).
DEFAULT_MAX_OBJECT_BYTES = 256 * 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ArchiveFullError(InvalidInputError):
    """The archive's total cap would be exceeded by this file."""


class _Usage:
    """Bytes the archive holds, scanned on first need, then kept by our own writes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.total: int | None = None


@dataclass(frozen=True)
class Archive:
    """A directory of output files named by their SHA-256."""

    root: Path
    max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES
    #: The whole archive's cap in bytes (None: no cap); checked before each new file.
    max_total_bytes: int | None = None
    _usage: _Usage = field(default_factory=_Usage, repr=False, compare=False)

    @classmethod
    def open(cls, root: str | PathLike[str], **caps: int | None) -> Archive:
        path = Path(root)
        if path.exists() and not path.is_dir():
            raise InvalidInputError(f"archive {path} is not a directory")
        return cls(path, **caps)  # type: ignore[arg-type]

    def path_of(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise InvalidInputError(f"{sha256[:80]!r} is not a SHA-256 in lower-case hex")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def has(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def get(self, sha256: str) -> bytes | None:
        """The archived bytes, or None when not archived. Bytes whose hash does not
        match their name (a damaged or swapped file) are refused, never served."""
        path = self.path_of(sha256)
        try:
            if path.stat().st_size > self.max_object_bytes:
                return None
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LedgerError(f"cannot read archive file {path}: {exc.strerror or exc}") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise LedgerError(f"archive file {path} does not match its SHA-256; it was changed")
        return data

    def total_bytes(self) -> int:
        if not self.root.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.root.glob("??/??/*") if p.is_file())

    def keep(self, data: bytes, file_sha256: str) -> None:
        """Store an output whose fingerprint names ``file_sha256``. Bytes that hash to
        anything else are refused: the archive holds only what the ledger can check."""
        sha256 = hashlib.sha256(data).hexdigest()
        if sha256 != file_sha256:
            raise InvalidInputError(
                f"output bytes hash to {sha256[:12]}…, not the fingerprint's file hash {file_sha256[:12]}…"
            )
        self.put(data)

    def put(self, data: bytes) -> str:
        """Store ``data`` (once: equal bytes are deduplicated); return its SHA-256."""
        if len(data) > self.max_object_bytes:
            raise InvalidInputError(
                f"output of {len(data)} bytes exceeds the archive's cap of {self.max_object_bytes} bytes"
            )
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.path_of(sha256)
        if target.is_file():
            return sha256
        with self._usage.lock:
            if self.max_total_bytes is not None:
                if self._usage.total is None:
                    self._usage.total = self.total_bytes()
                if self._usage.total + len(data) > self.max_total_bytes:
                    cap = self.max_total_bytes
                    raise ArchiveFullError(f"the archive {self.root} is full (cap {cap} bytes)")
            if self._write(target, data) and self._usage.total is not None:
                self._usage.total += len(data)
        return sha256

    def _write(self, target: Path, data: bytes) -> bool:
        """Write ``target`` atomically; False when it was there already."""
        if target.is_file():  # another process stored it meanwhile
            return False
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, data)
        except OSError as exc:
            raise LedgerError(f"cannot write to the archive {self.root}: {exc.strerror or exc}") from None
        return True
