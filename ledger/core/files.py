"""Atomic file writes: the one way seedledger replaces a file.

A temporary file in the target's folder (so the rename stays on one filesystem), written
and fsynced, then ``os.replace`` and an fsync of the folder, so that after a crash
readers see the old file or the new one, never half of one, and the rename itself
survives. On any error the temporary file is removed and the old file is left as it was.
The temporary file is made by ``mkstemp``: mode 0600 unless ``like`` names a file whose
permission bits to copy.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal, TextIO, cast, overload

__all__ = ["atomic_open", "atomic_write", "fsync_directory"]

_Opened = contextlib.AbstractContextManager[IO[bytes]] | contextlib.AbstractContextManager[TextIO]


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable. Some filesystems (and Windows) refuse to
    open or fsync a folder: the rename has happened, so that is not an error."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


@overload
def atomic_open(
    path: Path,
    mode: Literal["wb"] = "wb",
    *,
    like: Path | None = None,
    encoding: None = None,
    newline: None = None,
) -> contextlib.AbstractContextManager[IO[bytes]]: ...
@overload
def atomic_open(
    path: Path,
    mode: Literal["w"],
    *,
    like: Path | None = None,
    encoding: str = "utf-8",
    newline: str | None = None,
) -> contextlib.AbstractContextManager[TextIO]: ...
def atomic_open(
    path: Path,
    mode: Literal["w", "wb"] = "wb",
    *,
    like: Path | None = None,
    encoding: str | None = None,
    newline: str | None = None,
) -> _Opened:
    """A file handle whose content replaces ``path`` only when the block succeeds.
    ``mode`` ``"wb"`` (bytes) or ``"w"`` (text, UTF-8 unless ``encoding``)."""
    handle = _atomic(path, mode, like=like, encoding=encoding, newline=newline)
    return cast("_Opened", handle)


@contextlib.contextmanager
def _atomic(
    path: Path, mode: str, *, like: Path | None, encoding: str | None, newline: str | None
) -> Iterator[IO[bytes] | TextIO]:
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        if mode == "w":
            handle: IO[bytes] | TextIO = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline=newline)
        else:
            handle = os.fdopen(fd, "wb")
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if like is not None and like.exists():
            os.chmod(tmp, like.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_directory(directory)


def atomic_write(path: Path, data: bytes | str, *, like: Path | None = None) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8), atomically."""
    with atomic_open(path, like=like) as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
