"""What ``verify`` reports: the first divergence between the stored log and the stored
rows, and the report of one verification."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger.errors import IntegrityError

__all__ = ["Divergence", "Found", "VerifyReport"]


@dataclass(frozen=True)
class Divergence:
    """The first place where the stored log and the stored rows disagree."""

    kind: str  # changed-row, missing-row, missing-leaf, extra-leaf, unsealed-in-the-middle,
    # unknown-entry-type, bad-checkpoint, bad-signature, root-mismatch, head-mismatch,
    # inconsistent-with-saved
    detail: str
    leaf_index: int | None = None
    entry_type: str | None = None
    entry_id: int | None = None
    #: changed-row: the columns established as changed (``_columns``); () when the
    #: change could not be attributed to a column.
    columns: tuple[str, ...] = ()

    def message(self) -> str:
        where = f"leaf {self.leaf_index}" if self.leaf_index is not None else ""
        if self.entry_type is not None:
            entry = f"{self.entry_type} {self.entry_id}"
            where = f"{where} ({entry})" if where else entry
        return f"log does not verify: {where + ': ' if where else ''}{self.kind}: {self.detail}"


@dataclass(frozen=True)
class VerifyReport:
    size: int
    root: bytes
    checkpoints: int
    latest_checkpoint: int | None
    entries: dict[str, int]
    divergence: Divergence | None = None
    against: dict[str, Any] | None = None
    #: Leaves the native walker recomputed and matched (the rest took the Python path).
    native_leaves: int = field(default=0, compare=False)
    #: Which leaf walk ran: "native" (the walker, with the Python path for any leaf it
    #: does not confirm) or "python"; and why the Python path read more than that.
    path: str = field(default="python", compare=False)
    path_reason: str | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.divergence is None

    @property
    def unsigned(self) -> int:
        """Leaves sealed after the latest checkpoint (not yet covered by a signature)."""
        return self.size - (self.latest_checkpoint or 0)

    def raise_for_divergence(self) -> None:
        if self.divergence is not None:
            raise IntegrityError(self.divergence.message())


class Found(Exception):
    """Raised where a check fails: the divergence to report (caught by ``verify``)."""

    def __init__(self, divergence: Divergence) -> None:
        self.divergence = divergence
