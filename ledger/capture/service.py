"""Service functions behind `seedledger spool status` and `seedledger spool drain`."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from ledger.capture.archiving import OutputArchiver
from ledger.capture.entries import decode_entry
from ledger.capture.fingerprints import default_fingerprinter
from ledger.capture.pairing import PendingTasks
from ledger.capture.recorder import resolve_spool
from ledger.capture.spool import (
    Skip,
    Spool,
    SpoolError,
    count_dead,
    list_segments,
    lock_owner,
    read_segment,
    segment_path,
    stray_segments,
)
from ledger.capture.writer import Counters, SpoolWriter
from ledger.errors import StoreError, UsageError
from ledger.store.archive import Archive


def spool_status(directory: str | os.PathLike[str] | None) -> dict[str, Any]:
    """What a spool directory holds, read without taking it over. While a process
    owns the spool, its committed-but-not-yet-released entries are counted too."""
    path = resolve_spool(directory)
    if not path.is_dir():
        raise UsageError(f"no spool directory at {path}")
    entries = records = size = torn = damaged = 0
    oldest: float | None = None
    segments = list_segments(path)
    for seq in segments:
        segment = segment_path(path, seq)
        skipped: list[Skip] = []
        for _offset, _end, payload in read_segment(segment, on_skip=skipped.append):
            entries += 1
            with contextlib.suppress(ValueError, KeyError, TypeError):
                records += len(decode_entry(payload).records)
        try:
            stat = segment.stat()
        except FileNotFoundError:
            continue
        size += stat.st_size
        torn += any(skip.tail for skip in skipped)
        damaged += sum(not skip.tail for skip in skipped)
        oldest = stat.st_mtime if oldest is None else min(oldest, stat.st_mtime)
    pending_tasks = len(PendingTasks(path / "pending.jsonl"))
    owner = lock_owner(path)
    return {
        "spool": str(path),
        "owner_pid": owner,
        "segments": len(segments),
        "bytes": size,
        "entries": entries,
        "records": records,
        "torn_segments": torn,
        "damaged_ranges": damaged,
        "dead_entries": count_dead(path),
        "stray": stray_segments(path),
        "pending_tasks": pending_tasks,
        "oldest_age_s": round(time.time() - oldest, 1) if oldest is not None else None,
    }


def drain(
    directory: str | os.PathLike[str] | None,
    db_url: str | None,
    *,
    timeout: float | None = 60.0,
    fingerprint: bool = True,
    archive: Archive | None = None,
) -> dict[str, Any]:
    """Land everything the spool holds into the ledger (exactly once), then report.
    With an ``archive``, fingerprinted outputs are kept there too (failures counted).
    Raises SpoolLockedError when a running process owns the spool (it drains itself)
    and StoreError when the database stays unreachable for ``timeout`` seconds."""
    path = resolve_spool(directory)
    if not Path(path).is_dir():
        raise UsageError(f"no spool directory at {path}")
    counters = Counters()
    archiver = OutputArchiver(archive) if archive is not None and fingerprint else None
    with Spool(path) as spool:
        writer = SpoolWriter(
            spool,
            db_url,
            counters,
            max_backoff=2.0,
            fingerprinter=default_fingerprinter(archiver=archiver) if fingerprint else None,
        )
        try:
            done = writer.drain(timeout=timeout)
        finally:
            writer.stop(drain=False)
        if not done:
            raise StoreError(
                f"spool not drained within {timeout:g}s: {writer.last_error or 'database unavailable'}; "
                "the records stay in the spool, run `seedledger spool drain` again"
            )
        skipped = {"damaged_ranges": spool.damaged, "torn_tails": spool.torn_tails}
    archived = archiver.snapshot() if archiver is not None else {}
    return {"spool": str(path), **counters.snapshot(), **skipped, "stray": stray_segments(path), **archived}


def drain_problem(result: dict[str, Any]) -> SpoolError | None:
    """Why a drain that emptied the spool still did not land everything: damaged
    bytes skipped (kept in ``dead/``) or entries the database refused. None when every
    entry landed. A torn tail (an append cut short by a crash, so never acknowledged to
    a caller) is reported but is not a loss."""
    parts = []
    if result["damaged_ranges"]:
        parts.append(f"{result['damaged_ranges']} damaged byte range(s) skipped")
    if result["failed"]:
        parts.append(f"{result['failed']} record(s) refused by the database")
    if not parts:
        return None
    return SpoolError(f"spool drained with losses: {', '.join(parts)}; kept in {result['spool']}/dead/")
