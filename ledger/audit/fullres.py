"""Full-resolution audits: a replay compared with the record's archived original.

The stored fingerprint keeps a 48-pixel thumbnail, blind to fine drift. When the run
has an output archive (``AuditOptions.archive``) and it holds the record's original
(named by the fingerprint's file hash, and checked against it on read), the replay is
compared pixel by pixel (:func:`ledger.fingerprint.compare_originals`): PSNR and SSIM
join the distances and a ``near-identical`` that they contradict becomes ``similar``.
Without the original the thumbnail comparison stands, and the result says why
(``replay["original"]``): nothing is reported as checked at full resolution that was not.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from ledger.core.records import Modality, Record
from ledger.errors import LedgerError
from ledger.fingerprint import Comparison, Fingerprint, Verdict, compare_originals
from ledger.store.archive import Archive

log = logging.getLogger("ledger.audit")

#: ``replay["original"]``: how the replay was compared.
COMPARED: Final = "compared at full resolution"
NOT_ARCHIVED: Final = "not archived: compared with the thumbnail"


class OriginalComparer:
    """Refines image comparisons with archived originals (one per run)."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    async def refine(
        self, record: Record, stored: Fingerprint, comparison: Comparison, replay: bytes
    ) -> tuple[Comparison, str | None]:
        """The comparison to keep, and what to note about the original (None: not an
        image, or pixel-identical already)."""
        if record.modality is not Modality.IMAGE or comparison.verdict is Verdict.IDENTICAL:
            return comparison, None
        try:
            original = await asyncio.to_thread(self.archive.get, stored.file_sha256)
        except LedgerError as exc:  # a damaged or unreadable archive file is never used
            log.warning("audit: record %s: archived original not used: %s", record.id, exc)
            return comparison, f"not used ({exc}): compared with the thumbnail"
        if original is None:
            return comparison, NOT_ARCHIVED
        try:
            refined = await asyncio.to_thread(compare_originals, comparison, original, replay)
        except LedgerError as exc:
            log.warning("audit: record %s: full-resolution comparison failed: %s", record.id, exc)
            return comparison, f"not compared ({exc}): compared with the thumbnail"
        if not refined.full_resolution:  # sizes differ: the size already decided it
            return comparison, "sizes differ: compared with the thumbnail"
        return refined, COMPARED
