"""A local durable spool: append-only segment files of checksummed entries.

Durability promise (documented in docs and asserted by the crash tests):

* When :meth:`Spool.append` returns, the entry has been written to the spool file with
  one ``write(2)``: it is in the operating system's page cache and survives the
  recording process being killed (``kill -9``, OOM, a crash).
* A background thread fsyncs with *group commit*: every append made while one fsync runs
  is covered by the next. So an entry also survives a power loss or kernel crash once
  the fsync that follows its append has completed, typically within one fsync (a few
  milliseconds). ``append(..., sync=True)`` or :meth:`Spool.sync` wait for that fsync,
  for callers that need power-loss durability before they go on. That thread also
  fsyncs and closes each segment an append rolled over from, so no append waits for
  the disk.
* The caller never waits for the database: the spool is the only thing on its path.
* An append is all or nothing. A write cut short (a full disk, a quota, a file size
  limit) is truncated back to the last whole entry before :class:`SpoolFullError` is
  raised, so the entries after it stay readable; when the disk is full, segments whose
  entries have all landed are deleted and the append is tried once more first.

Format and reading: :mod:`ledger.capture.frames`. Damaged bytes are skipped up to the
next intact entry and copied to ``dead/`` (never deleted unseen). A process always
starts a fresh segment, so it never appends after a torn tail. Segments are deleted
only after the store has committed every entry in them (:meth:`Spool.release`). One
process owns a spool directory at a time (an ``flock`` on ``spool.lock``); others may
read it for ``spool status``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import threading
import time
from pathlib import Path

from ledger.capture.frames import (
    HEADER_SIZE,
    MAX_ENTRY,
    Skip,
    encode_frame,
    list_segments,
    read_segment,
    segment_path,
    stray_segments,
)
from ledger.capture.spool_types import Entry, Position, SpoolError, SpoolFullError, SpoolLockedError
from ledger.capture.spooldir import ScanResult, count_dead, dead_letter, keep_skipped, lock_owner, scan

__all__ = [
    "HEADER_SIZE",
    "MAX_ENTRY",
    "Entry",
    "Position",
    "ScanResult",
    "Skip",
    "Spool",
    "SpoolError",
    "SpoolFullError",
    "SpoolLockedError",
    "count_dead",
    "encode_frame",
    "list_segments",
    "lock_owner",
    "read_segment",
    "scan",
    "segment_path",
    "stray_segments",
]

log = logging.getLogger(__name__)

#: Appends roll to a new segment past this size, so landed entries are released a
#: segment at a time while traffic continues (a small disk must not fill with them).
DEFAULT_SEGMENT_BYTES = 256 * 1024
#: Errors that mean "no room": the append is refused whole, never written in part.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


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
        self._retired: list[int] = []  # rolled-over segments' fds: the flusher fsyncs, then closes them
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
        self._landed = Position(0, 0)  # everything before this is in the store
        self._full_need: int | None = None  # bytes an append lacked room for, until one fits
        self.refused = 0  # appends refused whole for lack of room
        self.last_refusal: str | None = None
        self._skipped: set[tuple[int, int]] = set()  # (segment, offset) already quarantined
        self.damaged = 0  # damaged byte ranges skipped (and copied to dead/)
        self.torn_tails = 0  # tails cut short by a crash mid-append (an append that never returned)
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
        what is durable when this returns. Raises :class:`SpoolFullError` when there
        is no room (nothing of the entry is left in the spool)."""
        frame = encode_frame(payload)
        with self._mutex:
            if self._closed:
                raise SpoolError("the spool is closed")
            if self._error is not None:
                raise SpoolError(f"spool {self.directory} failed: {self._error.strerror}")
            failure = self._write(frame)
            if failure is not None and failure.errno in _NO_SPACE and self._reclaim():
                failure = self._write(frame)  # landed segments deleted: room for one more try
            if failure is not None:
                self.refused += 1
                self.last_refusal = f"{failure.strerror or failure}"
                if failure.errno in _NO_SPACE:
                    self._full_need = len(frame)
                    raise SpoolFullError(f"spool {self.directory} is full: {failure.strerror}")
                raise SpoolError(f"cannot write spool {self.directory}: {failure.strerror or failure}")
            self._full_need = None
            self.appended += 1
            end = self._end
            self._sync_cond.notify_all()
            if sync:
                while self._synced < end and self._error is None and not self._closed:
                    self._sync_cond.wait(1.0)
        return end

    def _write(self, frame: bytes) -> OSError | None:
        """One all-or-nothing write of ``frame`` (called with _mutex held)."""
        try:
            if self._fd is None or (self._end.offset + len(frame) > self.segment_bytes and self._end.offset):
                self._open_segment()
        except SpoolError as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else None
            return cause or OSError(errno.EIO, str(exc))
        except OSError as exc:  # closing the previous segment failed (its fsync)
            return exc
        assert self._fd is not None and self._active is not None
        failure: OSError | None
        try:
            written = os.write(self._fd, frame)
        except OSError as exc:
            written, failure = 0, exc
        else:
            failure = None if written == len(frame) else OSError(errno.ENOSPC, "short write: no space left")
        if failure is not None:
            # Cut the partial frame off, so the entries after it stay readable; if even
            # that fails, never append to this segment again (its tail is torn).
            try:
                os.ftruncate(self._fd, self._end.offset)
            except OSError:
                log.error("spool segment %d: cannot cut off a partial entry; starting another", self._active)
                self._close_fd(fsync=False)
            return failure
        self._end = Position(self._active, self._end.offset + len(frame))
        return None

    def _reclaim(self) -> bool:
        """Delete segments whose entries have all landed, the active one included
        (called with _mutex held, on a full disk). True when something was deleted."""
        deleted = 0
        with self._fd_mutex:
            # A deleted segment's space comes back only once its fd is closed: close
            # the rolled-over ones now rather than when the flusher gets to them.
            retired, self._retired = self._retired, []  # taken first: never closed twice
            for old in retired:
                try:
                    os.fsync(old)
                except OSError as exc:  # as in the flusher: sync() must not promise them
                    log.error("spool fsync failed: %s", exc.strerror)
                    self._error = exc
                finally:
                    with contextlib.suppress(OSError):
                        os.close(old)
        if self._active is not None and self._end.offset and self._landed >= self._end:
            self._close_fd(fsync=False)
            with contextlib.suppress(FileNotFoundError):
                segment_path(self.directory, self._active).unlink()
                deleted += 1
            self._active = None
            self._synced = self._end = Position(self._next_seq, 0)
        for seq in list_segments(self.directory):
            if seq >= self._landed.segment or seq == self._active:
                break
            with contextlib.suppress(FileNotFoundError):
                segment_path(self.directory, seq).unlink()
                deleted += 1
        return deleted > 0

    @property
    def under_pressure(self) -> bool:
        """True since an append was refused for lack of room, until one fits again."""
        return self._full_need is not None

    def accepting(self) -> bool:
        """Whether an append is expected to fit: False after a refusal for lack of room
        until the file system has room for that entry again."""
        with self._mutex:
            if self._closed or self._error is not None:
                return False
            need = self._full_need
        if need is None:
            return True
        try:
            stat = os.statvfs(self.directory)
        except OSError:
            return False
        return stat.f_bavail * stat.f_frsize >= need + 64 * 1024

    def _open_segment(self) -> None:
        if self._fd is not None:
            # Rolling over: the flusher fsyncs and closes the finished segment, so the
            # appending caller never waits for a disk flush (a segment is closed
            # durable all the same; _synced moves past it only after that fsync).
            self._retired.append(self._fd)
            self._fd = None
        for _attempt in range(100):  # a stray file or directory may hold a name: skip it
            seq = self._next_seq
            self._next_seq += 1
            path = segment_path(self.directory, seq)
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o600)
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise SpoolError(f"cannot create spool segment {path}: {exc.strerror}") from exc
        else:
            raise SpoolError(f"cannot create a spool segment in {self.directory}: names taken")
        self._active = seq
        self._end = Position(seq, 0)
        if self._synced < self._end and not self._retired:
            self._synced = self._end  # nothing before this segment waits for an fsync
        # The new file's directory entry is fsync'd by the flusher with its first entry,
        # off the caller's path.
        self._dir_dirty = True

    def _flush_loop(self) -> None:
        while True:
            with self._mutex:
                while self._synced >= self._end and not self._retired and not self._closed:
                    self._sync_cond.wait()
                if self._closed and self._synced >= self._end and not self._retired:
                    return
                fd, target = self._fd, self._end
                retired, self._retired = self._retired, []  # this loop owns (and closes) them
                dir_dirty, self._dir_dirty = self._dir_dirty, False
            try:
                with self._fd_mutex:
                    try:
                        for old in retired:
                            os.fsync(old)
                        # The active segment may have been retired meanwhile (still open
                        # in _retired) or closed by _close_fd (fsync'd there, or landed).
                        if fd is not None and (fd == self._fd or fd in self._retired):
                            os.fsync(fd)
                    finally:
                        for old in retired:
                            os.close(old)
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
            path = segment_path(self.directory, seq)
            for offset, stop, payload in read_segment(path, start, limit, self._quarantine):
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
            self._landed = max(self._landed, consumed)
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

    def _quarantine(self, skip: Skip) -> None:
        """Keep bytes that hold no intact entry in ``dead/`` (once), before the segment
        holding them can be released."""
        seq = int(skip.path.stem)
        with self._mutex:
            if (seq, skip.offset) in self._skipped:
                return
            self._skipped.add((seq, skip.offset))
            if skip.tail:
                self.torn_tails += 1
            else:
                self.damaged += 1
        keep_skipped(self.directory, seq, skip)

    def problems(self) -> list[str]:
        """What is wrong with the spool now, one line each (empty when healthy)."""
        out = [f"not a segment file: {name}" for name in stray_segments(self.directory)]
        with self._mutex:
            if self._error is not None:
                out.append(f"spool failed: {self._error.strerror}")
            if self._full_need is not None:
                out.append(f"spool full: {self.refused} entries refused ({self.last_refusal})")
            if self.damaged:
                out.append(f"{self.damaged} damaged byte ranges skipped (kept in dead/)")
        return out

    def dead_letter(self, payload: bytes, reason: str) -> None:
        """Keep an entry the store rejects for good, out of the drain path."""
        dead_letter(self.directory, payload, reason)

    # -- closing -------------------------------------------------------------------

    def close(self) -> None:
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            self._sync_cond.notify_all()
        self._flusher.join()
        with self._mutex:
            for old in self._retired:  # left by a failed flusher
                with contextlib.suppress(OSError):
                    os.close(old)
            self._retired.clear()
            self._close_fd()
        os.close(self._lock_file)

    def _close_fd(self, *, fsync: bool = True) -> None:
        # Called with _mutex held. fsync before close: a closed segment is durable.
        with self._fd_mutex:
            if self._fd is not None:
                try:
                    if fsync:
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
