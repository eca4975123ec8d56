"""Step (6) of ``verify``: the rekor-cli ``loginfo`` pattern against a checkpoint saved
elsewhere earlier (larger now: an RFC 9162 consistency proof; equal: the same root;
smaller: fail)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from ledger.integrity import merkle
from ledger.integrity._reading import range_hash
from ledger.integrity.divergence import Divergence, Found
from ledger.integrity.merkle import ProofError
from ledger.integrity.note import Checkpoint, NoteError, Verifier, open_checkpoint
from ledger.integrity.seal import StoredCheckpoint

__all__ = ["check_against", "open_saved"]


def open_saved(note: str, verifiers: Sequence[Verifier]) -> Checkpoint:
    """(6) rekor-cli loginfo: first verify the saved checkpoint's own signature."""
    try:
        saved, _ = open_checkpoint(note, verifiers)
    except NoteError as exc:
        raise Found(Divergence("bad-signature", f"saved checkpoint: {exc}")) from None
    return saved


def check_against(conn: Connection, saved: Checkpoint, current: StoredCheckpoint | None) -> dict[str, Any]:
    """(6) The current latest checkpoint must extend the saved one."""
    if current is None:
        raise Found(
            Divergence(
                "inconsistent-with-saved",
                f"the log has no checkpoint; the saved one has size {saved.size}",
            )
        )
    if saved.origin != current.origin:
        raise Found(
            Divergence(
                "inconsistent-with-saved",
                f"saved checkpoint is for log {saved.origin!r}, this log is {current.origin!r}",
            )
        )
    report: dict[str, Any] = {"saved_size": saved.size, "current_size": current.size}
    # (6a) smaller now: the log lost leaves.
    if current.size < saved.size:
        raise Found(
            Divergence(
                "inconsistent-with-saved",
                f"current size {current.size} is less than the saved size {saved.size}",
                current.size,
            )
        )
    # (6b) equal: the roots must match.
    if current.size == saved.size:
        if current.root != saved.root:
            raise Found(
                Divergence(
                    "inconsistent-with-saved",
                    f"same size {saved.size}, different roots: the log was rewritten",
                    max(saved.size - 1, 0),
                )
            )
        report["proof"] = "same root"
        return report
    # (6c) larger now: RFC 9162 consistency proof from the saved size to the current one.
    # From the empty tree there is nothing to prove (merkle module docstring).
    if saved.size == 0:
        report["proof"] = "saved checkpoint is the empty tree"
        return report
    proof = merkle.consistency_proof(saved.size, current.size, lambda a, b: range_hash(conn, a, b))
    try:
        merkle.verify_consistency(saved.size, current.size, saved.root, current.root, proof)
    except ProofError as exc:
        raise Found(
            Divergence(
                "inconsistent-with-saved",
                f"the log at size {current.size} does not extend the saved checkpoint: {exc}",
                saved.size - 1,
            )
        ) from None
    report["proof"] = [h.hex() for h in proof]
    return report
