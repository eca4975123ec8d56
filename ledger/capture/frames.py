"""Spool segment files: the frame format, reading with resynchronisation, listing.

A segment is ``<seq>.spool``: a run of frames, each a 12-byte header (magic ``SL``,
format version 1, flags, payload length u32, CRC-32 of the payload u32, little endian)
followed by the payload. Payloads are JSON (UTF-8, control characters escaped), so the
three bytes ``SL\\x01`` never occur inside one: after a damaged frame the reader finds
the next frame by searching for them and accepts a candidate only when its length fits
and its CRC-32 matches. One damaged frame therefore costs only its own bytes, never
the intact frames after it.

What the reader skips is reported to ``on_skip`` as a :class:`Skip`: ``tail`` is a
frame cut short at the end of the data with nothing valid after it (a crash in the
middle of a ``write(2)``, so an append that never returned); anything else is damage.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ledger.errors import UsageError

log = logging.getLogger(__name__)

MAGIC = b"SL"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<2sBBII")
HEADER_SIZE = _HEADER.size
MAX_ENTRY = 256 * 1024 * 1024
SUFFIX = ".spool"
_SYNC = MAGIC + bytes([FORMAT_VERSION])
_READ_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class Skip:
    """Bytes ``[offset, stop)`` of ``path`` that hold no intact frame."""

    path: Path
    offset: int
    stop: int
    reason: str
    tail: bool  # a torn tail (cut short, nothing valid after it), not damage


def encode_frame(payload: bytes) -> bytes:
    if len(payload) > MAX_ENTRY:
        raise UsageError(f"spool entry of {len(payload)} bytes exceeds the {MAX_ENTRY}-byte limit")
    return _HEADER.pack(MAGIC, FORMAT_VERSION, 0, len(payload), zlib.crc32(payload)) + payload


def segment_path(directory: Path, seq: int) -> Path:
    return directory / f"{seq:016d}{SUFFIX}"


def _named_segments(directory: Path) -> Iterator[tuple[int, Path]]:
    for path in directory.glob(f"*{SUFFIX}"):
        with contextlib.suppress(ValueError):
            yield int(path.stem), path


def list_segments(directory: Path) -> list[int]:
    """Sequence numbers of the segment files (regular files only: a directory or
    other object named like a segment is a stray, see :func:`stray_segments`)."""
    return sorted(seq for seq, path in _named_segments(directory) if path.is_file())


def stray_segments(directory: Path) -> list[str]:
    """Names that look like segments but are not regular files."""
    return sorted(path.name for _seq, path in _named_segments(directory) if not path.is_file())


class _Window:
    """Bounded reads of one file, cut from an in-memory chunk."""

    def __init__(self, fd: int, end: int) -> None:
        self.fd, self.end = fd, end
        self.buf, self.start = b"", 0

    def get(self, offset: int, size: int) -> bytes | None:
        if offset + size > self.end:
            return None
        rel = offset - self.start
        if rel < 0 or rel + size > len(self.buf):
            self.buf = os.pread(self.fd, max(size, min(_READ_CHUNK, self.end - offset)), offset)
            self.start, rel = offset, 0
            if len(self.buf) < size:
                return None
        return self.buf[rel : rel + size]

    def find(self, needle: bytes, offset: int) -> int | None:
        while offset + len(needle) <= self.end:
            chunk = self.get(offset, min(_READ_CHUNK, self.end - offset))
            if chunk is None:
                return None
            found = chunk.find(needle)
            if found >= 0:
                return offset + found
            offset += max(1, len(chunk) - len(needle) + 1)
        return None


def _frame_at(window: _Window, offset: int) -> tuple[int, bytes] | str:
    """(end, payload) of the intact frame at ``offset``, or why there is none."""
    header = window.get(offset, HEADER_SIZE)
    if header is None:
        return "truncated header"
    magic, version, _flags, length, crc = _HEADER.unpack(header)
    if magic != MAGIC or version != FORMAT_VERSION or length > MAX_ENTRY:
        return "bad entry header"
    payload = window.get(offset + HEADER_SIZE, length)
    if payload is None:
        return "truncated entry"
    if zlib.crc32(payload) != crc:
        return "checksum mismatch"
    return offset + HEADER_SIZE + length, payload


def read_segment(
    path: Path,
    start: int = 0,
    limit: int | None = None,
    on_skip: Callable[[Skip], None] | None = None,
) -> Iterator[tuple[int, int, bytes]]:
    """Yield (offset, end, payload) for each intact frame from ``start``.

    ``limit`` bounds the bytes considered (the active segment's written end). Bytes
    that hold no intact frame are skipped up to the next intact frame (resync), with
    one warning per place, and reported to ``on_skip``; they are never yielded.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, IsADirectoryError):
        return
    try:
        size = os.fstat(fd).st_size
        window = _Window(fd, size if limit is None else min(size, limit))
        offset = start
        while offset < window.end:
            found = _frame_at(window, offset)
            if not isinstance(found, str):
                end, payload = found
                yield offset, end, payload
                offset = end
                continue
            resume = window.find(_SYNC, offset + 1)
            while resume is not None and isinstance(_frame_at(window, resume), str):
                resume = window.find(_SYNC, resume + 1)
            stop = window.end if resume is None else resume
            tail = resume is None and found.startswith("truncated")
            skip = Skip(path, offset, stop, found, tail)
            _warn_skip(skip)
            if on_skip is not None:
                on_skip(skip)
            if resume is None:
                return
            offset = resume
    finally:
        os.close(fd)


_skips_seen: set[tuple[str, int]] = set()


def _warn_skip(skip: Skip) -> None:
    # Warn once per place: the same bytes are seen by every scan until they are released.
    key = (str(skip.path), skip.offset)
    if key not in _skips_seen:
        _skips_seen.add(key)
        log.warning(
            "spool %s: %s at byte %d; skipping %d bytes%s",
            skip.path.name,
            skip.reason,
            skip.offset,
            skip.stop - skip.offset,
            "" if skip.tail else " (resuming at the next intact entry)",
        )
