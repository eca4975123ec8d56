"""A local durable spool: append-only segment files of checksummed entries.

Durability promise (documented in docs and asserted by the crash tests):

* When :meth:`Spool.append` returns, the entry has been written to the spool file with
  one ``write(2)``: it is in the operating system's page cache and survives the
  recording process being killed (``kill -9``, OOM, a crash).
* A background thread fsyncs with *group commit*: every append made while one fsync runs
  is covered by the next. So an entry also survives a power loss or kernel crash once
  the fsync that follows its append has completed, typically within one fsync (a few
  milliseconds). ``append(..., sync=True)`` or :meth:`Spool.sync` wait for that fsync,
  for callers that need power-loss durability before they go on.
* The caller never waits for the database: the spool is the only thing on its path.

Format: files ``<seq>.spool`` in the spool directory; each entry is a 12-byte header
(magic ``SL``, format version, flags, payload length u32, CRC-32 of the payload u32,
little endian) followed by the payload. An entry cut short by a crash (a torn tail) or
whose checksum does not match is detected on reading: the rest of that segment is
skipped with a warning. A process always starts a fresh segment, so it never appends
after a torn tail. Segments are deleted only after the store has committed every
entry in them (:meth:`Spool.release`). One process owns a spool directory at a time
(an ``flock`` on ``spool.lock``); others may read it for ``spool status``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ledger.errors import LedgerError, UsageError

log = logging.getLogger(__name__)

MAGIC = b"SL"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<2sBBII")
HEADER_SIZE = _HEADER.size
MAX_ENTRY = 256 * 1024 * 1024
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
_SUFFIX = ".spool"


class SpoolError(LedgerError):
    """The spool directory cannot be used (permissions, disk full, locked)."""

    exit_code = 4


class SpoolLockedError(UsageError):
    """Another process owns the spool directory."""


@dataclass(frozen=True, order=True)
class Position:
    """A place in the spool: segment number and byte offset within it."""

    segment: int
    offset: int


class Entry(NamedTuple):
    segment: int
    offset: int  # where the entry starts
    stop: int  # where the next entry starts
    payload: bytes

    @property
    def position(self) -> Position:
        return Position(self.segment, self.offset)

    @property
    def end(self) -> Position:
        return Position(self.segment, self.stop)


@dataclass(frozen=True)
class ScanResult:
    entries: int
    bytes: int
    torn: int  # segments whose tail (or a damaged entry) had to be skipped


def encode_frame(payload: bytes) -> bytes:
    if len(payload) > MAX_ENTRY:
        raise UsageError(f"spool entry of {len(payload)} bytes exceeds the {MAX_ENTRY}-byte limit")
    return _HEADER.pack(MAGIC, FORMAT_VERSION, 0, len(payload), zlib.crc32(payload)) + payload


def segment_path(directory: Path, seq: int) -> Path:
    return directory / f"{seq:016d}{_SUFFIX}"


def list_segments(directory: Path) -> list[int]:
    out = []
    for path in directory.glob(f"*{_SUFFIX}"):
        with contextlib.suppress(ValueError):
            out.append(int(path.stem))
    return sorted(out)


_READ_CHUNK = 8 * 1024 * 1024


def read_segment(path: Path, start: int = 0, limit: int | None = None) -> Iterator[tuple[int, int, bytes]]:
    """Yield (offset, end, payload) for each intact entry from ``start``.

    ``limit`` bounds the bytes considered (the active segment's written end). A torn or
    damaged entry stops the scan with a warning; it is never yielded. The file is read
    in large chunks and frames are cut from memory.
    """
    try:
        handle = path.open("rb", buffering=0)
    except FileNotFoundError:
        return
    with handle:
        size = os.fstat(handle.fileno()).st_size
        end_of_data = size if limit is None else min(size, limit)
        offset = start
        handle.seek(offset)
        buf = b""
        buf_start = offset  # file offset of buf[0]
        read_to = offset  # file offset just past buf

        def refill(need: int) -> bool:
            nonlocal buf, buf_start, read_to
            keep = buf[offset - buf_start :]
            want = min(max(_READ_CHUNK, need - len(keep)), end_of_data - read_to)
            more = handle.read(want) if want > 0 else b""
            buf, buf_start = keep + more, offset
            read_to += len(more)
            return len(buf) >= need

        while offset < end_of_data:
            rel = offset - buf_start
            if len(buf) - rel < HEADER_SIZE:
                if not refill(HEADER_SIZE):
                    _warn_torn(path, offset, end_of_data, "truncated header")
                    return
                rel = 0
            magic, version, _flags, length, crc = _HEADER.unpack_from(buf, rel)
            if magic != MAGIC or version != FORMAT_VERSION or length > MAX_ENTRY:
                _warn_torn(path, offset, end_of_data, "bad entry header")
                return
            end = offset + HEADER_SIZE + length
            if end > end_of_data:
                _warn_torn(path, offset, end_of_data, "truncated entry")
                return
            if rel + HEADER_SIZE + length > len(buf):
                if not refill(HEADER_SIZE + length):
                    _warn_torn(path, offset, end_of_data, "truncated entry")
                    return
                rel = 0
            payload = buf[rel + HEADER_SIZE : rel + HEADER_SIZE + length]
            if zlib.crc32(payload) != crc:
                _warn_torn(path, offset, end_of_data, "checksum mismatch")
                return
            yield offset, end, payload
            offset = end


_torn_seen: set[tuple[str, int]] = set()


def _warn_torn(path: Path, offset: int, end: int, why: str) -> None:
    # Warn once per place: the same torn tail is seen by every scan until it is deleted.
    key = (str(path), offset)
    if key not in _torn_seen:
        _torn_seen.add(key)
        log.warning("spool %s: %s at byte %d; skipping %d bytes", path.name, why, offset, end - offset)


def scan(directory: Path) -> ScanResult:
    """Count intact entries and bytes left in a spool directory (read only)."""
    entries = total = torn = 0
    for seq in list_segments(directory):
        path = segment_path(directory, seq)
        last_end = 0
        for _offset, end, _payload in read_segment(path):
            entries += 1
            last_end = end
        with contextlib.suppress(FileNotFoundError):
            size = path.stat().st_size
            total += size
            if size > last_end:
                torn += 1
    return ScanResult(entries=entries, bytes=total, torn=torn)


def lock_owner(directory: Path) -> int | None:
    """The pid that owns the spool directory, or None when it is free."""
    lock_path = directory / "spool.lock"
    if not lock_path.exists():
        return None
    with lock_path.open("a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            text = handle.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return None


class Spool:
    """The spool of one process. Thread-safe; :meth:`append` is the hot path."""

    def __init__(
        self, directory: str | os.PathLike[str], *, segment_bytes: int = DEFAULT_SEGMENT_BYTES
    ) -> None:
        self.directory = Path(directory).expanduser()
        self.segment_bytes = segment_bytes
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot create spool directory {self.directory}: {exc.strerror}") from None
        self._lock_file = self._take_lock()
        existing = list_segments(self.directory)
        self._first = existing[0] if existing else 1
        # Never append to a segment from an earlier run: it may end in a torn entry.
        self._next_seq = (existing[-1] + 1) if existing else 1
        self._mutex = threading.Lock()
        self._fd: int | None = None
        self._active: int | None = None
        self._end = Position(self._next_seq, 0)  # written end of the spool
        self._synced = self._end
        self._sync_cond = threading.Condition(self._mutex)
        # Held around every fsync and every close of the segment fd, so the flusher
        # never fsyncs a descriptor number that was closed (and maybe reused).
        self._fd_mutex = threading.Lock()
        self._closed = False
        self._dir_dirty = False
        self._error: OSError | None = None
        self.appended = 0
        self._flusher = threading.Thread(target=self._flush_loop, name="seedledger-spool-fsync", daemon=True)
        self._flusher.start()

    # -- ownership -------------------------------------------------------------

    def _take_lock(self) -> int:
        path = self.directory / "spool.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                owner = lock_owner(self.directory)
                raise SpoolLockedError(
                    f"spool {self.directory} is in use by process {owner}; "
                    "that process drains it (stop it first, or use another --spool directory)"
                ) from None
            raise SpoolError(f"cannot lock spool {self.directory}: {exc.strerror}") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        return fd

    # -- writing ---------------------------------------------------------------

    def append(self, payload: bytes, *, sync: bool = False) -> Position:
        """Append one entry; return its end position. See the module docstring for
        what is durable when this returns."""
        frame = encode_frame(payload)
        with self._mutex:
            if self._closed:
                raise SpoolError("the spool is closed")
            if self._error is not None:
                raise SpoolError(f"spool {self.directory} failed: {self._error.strerror}")
            if self._fd is None or (self._end.offset + len(frame) > self.segment_bytes and self._end.offset):
                self._open_segment()
            assert self._fd is not None and self._active is not None
            try:
                written = os.write(self._fd, frame)
                if written != len(frame):  # pragma: no cover - regular files write fully
                    raise OSError(errno.EIO, "short write")
            except OSError as exc:
                raise SpoolError(f"cannot write spool {self.directory}: {exc.strerror}") from None
            self._end = Position(self._active, self._end.offset + len(frame))
            self.appended += 1
            end = self._end
            self._sync_cond.notify_all()
            if sync:
                while self._synced < end and self._error is None and not self._closed:
                    self._sync_cond.wait(1.0)
        return end

    def _open_segment(self) -> None:
        self._close_fd()
        seq = self._next_seq
        self._next_seq += 1
        path = segment_path(self.directory, seq)
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o600)
        except OSError as exc:
            raise SpoolError(f"cannot create spool segment {path}: {exc.strerror}") from None
        self._active = seq
        self._end = Position(seq, 0)
        if self._synced < self._end:
            self._synced = self._end
        # The new file's directory entry is fsync'd by the flusher with its first entry,
        # off the caller's path.
        self._dir_dirty = True

    def _flush_loop(self) -> None:
        while True:
            with self._mutex:
                while self._synced >= self._end and not self._closed:
                    self._sync_cond.wait()
                if self._closed and self._synced >= self._end:
                    return
                fd, target = self._fd, self._end
                dir_dirty, self._dir_dirty = self._dir_dirty, False
            try:
                with self._fd_mutex:
                    # A segment closed meanwhile was fsync'd by _close_fd.
                    if fd is not None and fd == self._fd:
                        os.fsync(fd)
                if dir_dirty:
                    _fsync_dir(self.directory)
            except OSError as exc:
                log.error("spool fsync failed: %s", exc.strerror)
                with self._mutex:
                    self._error = exc
                    self._sync_cond.notify_all()
                return
            with self._mutex:
                if self._synced < target:
                    self._synced = target
                self._sync_cond.notify_all()

    def sync(self, timeout: float | None = None) -> bool:
        """Wait until everything appended so far is fsync'd."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._mutex:
            target = self._end
            while self._synced < target and self._error is None and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._sync_cond.wait(remaining if remaining is not None else 1.0)
            return self._synced >= target

    # -- reading and releasing ---------------------------------------------------

    @property
    def end(self) -> Position:
        with self._mutex:
            return self._end

    def start(self) -> Position:
        """The oldest position still in the spool."""
        segments = list_segments(self.directory)
        return Position(segments[0], 0) if segments else self.end

    def read(
        self, after: Position, max_entries: int = 1000, max_bytes: int = 64 * 1024 * 1024
    ) -> list[Entry]:
        """Intact entries from ``after`` onward, at most ``max_entries``. A segment
        whose tail is torn is left behind: reading continues with the next one."""
        with self._mutex:
            end = self._end
            active = self._active
        out: list[Entry] = []
        size = 0
        for seq in list_segments(self.directory):
            if seq < after.segment:
                continue
            start = after.offset if seq == after.segment else 0
            limit = end.offset if seq == active else None
            for offset, stop, payload in read_segment(segment_path(self.directory, seq), start, limit):
                out.append(Entry(seq, offset, stop, payload))
                size += len(payload)
                if len(out) >= max_entries or size >= max_bytes:
                    return out
            if seq == active:
                break
        return out

    def release(self, consumed: Position, *, rotate: bool = False) -> int:
        """Delete segments entirely before ``consumed`` (their entries are in the store).
        With ``rotate``, when ``consumed`` is the written end of the active segment,
        that segment is closed and deleted too; the next append starts a new one.
        Returns how many segment files were deleted."""
        deleted = 0
        with self._mutex:
            if (
                rotate
                and self._active is not None
                and consumed >= self._end
                and consumed.segment == self._active
            ):
                self._close_fd()
                self._active = None
                self._synced = self._end = Position(self._next_seq, 0)
                consumed = self._end
            active = self._active
        for seq in list_segments(self.directory):
            if seq >= consumed.segment or seq == active:
                break
            with contextlib.suppress(FileNotFoundError):
                segment_path(self.directory, seq).unlink()
                deleted += 1
        if deleted:
            with contextlib.suppress(OSError):
                _fsync_dir(self.directory)
        return deleted

    def pending_bytes(self) -> int:
        total = 0
        for seq in list_segments(self.directory):
            with contextlib.suppress(FileNotFoundError):
                total += segment_path(self.directory, seq).stat().st_size
        return total

    # -- dead letters ---------------------------------------------------------------

    def dead_letter(self, payload: bytes, reason: str) -> None:
        """Keep an entry the store rejects for good, out of the drain path."""
        dead = self.directory / "dead"
        dead.mkdir(exist_ok=True)
        path = dead / f"dead-{os.getpid()}{_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, encode_frame(payload))
            os.fsync(fd)
        finally:
            os.close(fd)
        log.error("spool entry moved to %s: %s", path, reason)

    # -- closing -------------------------------------------------------------------

    def close(self) -> None:
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            self._sync_cond.notify_all()
        self._flusher.join()
        with self._mutex:
            self._close_fd()
        os.close(self._lock_file)

    def _close_fd(self) -> None:
        # Called with _mutex held. fsync before close: a closed segment is durable.
        with self._fd_mutex:
            if self._fd is not None:
                try:
                    os.fsync(self._fd)
                finally:
                    os.close(self._fd)
                    self._fd = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def count_dead(directory: Path) -> int:
    dead = directory / "dead"
    if not dead.is_dir():
        return 0
    return sum(1 for path in dead.glob(f"*{_SUFFIX}") for _ in read_segment(path))
