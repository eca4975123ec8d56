"""`find FILE` over the ledger, for every modality.

The store matches a query fingerprint by content hash and phash (``Ledger.find_image``).
A video record fingerprinted by an older pipeline carries another kind of content hash
(SHA-256 before pipeline 3), which never decides ``identical`` against the query's; so
the file is fingerprinted once more the way each such record was (``like=``) and those
records are compared again, and an exact copy of an old record is still ``identical``.
"""

from __future__ import annotations

from pathlib import Path

from ledger.fingerprint import Fingerprint, compare, fingerprint_file
from ledger.store import Ledger
from ledger.store.fingerprints import Match


def find_file(
    ledger: Ledger,
    path: Path,
    *,
    radius: int,
    limit: int | None,
    modality: str | None = None,
    max_pixels: int,
) -> tuple[Fingerprint, list[Match]]:
    """The file's fingerprint and the records matching it, best first (``limit`` at most)."""
    fp = fingerprint_file(path, modality, max_pixels=max_pixels)
    matches = ledger.find_image(fp, radius, limit=None if fp.modality == "video" else limit)
    if fp.modality == "video":
        matches = _older_pipelines_again(ledger, path, fp, matches, max_pixels)
        matches = matches if limit is None else matches[:limit]
    return fp, matches


def _older_pipelines_again(
    ledger: Ledger, path: Path, fp: Fingerprint, matches: list[Match], max_pixels: int
) -> list[Match]:
    from ledger.fingerprint.video import content_hash_of, pipeline_like

    kind = content_hash_of(fp.version)
    again: dict[int, Fingerprint] = {}  # pipeline -> the file fingerprinted by it
    out = []
    for m in matches:
        version = getattr(m.comparison, "version_b", None)  # the stored side's (videos only)
        if m.frame_time_s is not None or version is None or content_hash_of(version) in (kind, None):
            out.append(m)
            continue
        stored = ledger.fingerprint_of(m.record_id)
        pipeline = pipeline_like(stored.version)
        if pipeline not in again:
            again[pipeline] = fingerprint_file(path, "video", max_pixels=max_pixels, like=stored)
        out.append(Match(m.record_id, compare(again[pipeline], stored)))
    return sorted(out, key=Match.sort_key)
