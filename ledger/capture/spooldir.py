"""A spool directory seen from outside its owner (``spool status``), and its ``dead/``
folder: entries the store refused for good, and bytes that held no intact entry
(damaged, or a torn tail), kept rather than deleted so nothing disappears unseen."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ledger.capture.frames import SUFFIX, Skip, encode_frame, list_segments, read_segment, segment_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScanResult:
    entries: int
    bytes: int
    torn: int  # segments whose tail (or a damaged entry) had to be skipped


def scan(directory: Path) -> ScanResult:
    """Count intact entries and bytes left in a spool directory (read only)."""
    entries = total = torn = 0
    for seq in list_segments(directory):
        path = segment_path(directory, seq)
        skipped: list[Skip] = []
        for _item in read_segment(path, on_skip=skipped.append):
            entries += 1
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
        torn += bool(skipped)
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


def _write_synced(path: Path, data: bytes, flags: int) -> None:
    path.parent.mkdir(exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def dead_letter(directory: Path, payload: bytes, reason: str) -> None:
    """Keep an entry the store rejects for good, out of the drain path."""
    path = directory / "dead" / f"dead-{os.getpid()}{SUFFIX}"
    _write_synced(path, encode_frame(payload), os.O_APPEND)
    log.error("spool entry moved to %s: %s", path, reason)


def keep_skipped(directory: Path, seq: int, skip: Skip) -> None:
    """Copy the bytes of ``skip`` to ``dead/<segment>-<offset>.damaged`` (or ``.torn``)."""
    kind = "torn" if skip.tail else "damaged"
    target = directory / "dead" / f"{seq:016d}-{skip.offset}.{kind}"
    try:
        with skip.path.open("rb") as source:
            source.seek(skip.offset)
            data = source.read(skip.stop - skip.offset)
        _write_synced(target, data, os.O_TRUNC)
    except OSError as exc:
        log.error("cannot keep %s spool bytes in %s: %s", kind, target, exc.strerror)
        return
    log.error("spool %s: %d %s bytes kept in %s", skip.path.name, len(data), kind, target)


def count_dead(directory: Path) -> int:
    """Entries in ``dead/`` (refused by the store) plus kept ranges of damaged bytes."""
    dead = directory / "dead"
    if not dead.is_dir():
        return 0
    entries = sum(1 for path in dead.glob(f"*{SUFFIX}") for _ in read_segment(path))
    return entries + sum(1 for _ in dead.glob("*.damaged"))
