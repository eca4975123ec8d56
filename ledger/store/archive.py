"""The output archive: an optional content-addressed store of output bytes.

Files are keyed by their SHA-256, the fingerprint's ``file_sha256``, so an archived
file can be checked against the sealed log. Layout ``ROOT/ab/cd/<sha256>``; each file
is written to a temporary name in the same directory, fsynced and renamed into place,
so a reader never sees a partial file. The archive is never the only copy of a
record's facts: the record and its fingerprint live in the database.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ledger.core.files import atomic_write
from ledger.errors import InvalidInputError, LedgerError

#: One output larger than this is refused (a 8192² PNG is well under it).
DEFAULT_MAX_OBJECT_BYTES = 256 * 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Archive:
    """A directory of output files named by their SHA-256."""

    root: Path
    max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES
    #: The whole archive's cap in bytes (None: no cap); checked before each new file.
    max_total_bytes: int | None = None

    @classmethod
    def open(cls, root: str | Path, **caps: int | None) -> Archive:
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
        if self.max_total_bytes is not None and self.total_bytes() + len(data) > self.max_total_bytes:
            raise InvalidInputError(f"the archive {self.root} is full (cap {self.max_total_bytes} bytes)")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, data)
        except OSError as exc:
            raise LedgerError(f"cannot write to the archive {self.root}: {exc.strerror or exc}") from None
        return sha256
