"""The report's integrity section: the latest checkpoint, the verification of the log
(full by default: every sealed row re-hashed), which key checked the signatures, and
the consistency with a previous checkpoint.

Never attest what was not checked: the cheap mode (``leaf-hashes``) reports
``not-rehashed``, never ``passed``; a signature checked with the key the ledger itself
stores says so.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from ledger.errors import InvalidInputError
from ledger.integrity._input import load_json
from ledger.integrity.divergence import Divergence
from ledger.integrity.merkle import CompactRange
from ledger.integrity.note import Checkpoint, NoteError, Verifier, load_verifiers, open_checkpoint
from ledger.integrity.verify import verify as verify_log
from ledger.reports import _queries as q
from ledger.reports._model import (
    CheckpointInfo,
    DivergenceInfo,
    IntegritySection,
    KeyInfo,
    PreviousCheckpoint,
    VerificationInfo,
)
from ledger.store import Ledger
from ledger.store.filters import RecordFilter

#: ``checkpoint`` is the cheap mode's former name, kept for existing scripts.
VERIFY_MODES = ("full", "leaf-hashes", "none")
_ALIASES = {"checkpoint": "leaf-hashes"}


def verify_mode(mode: str) -> str:
    mode = _ALIASES.get(mode, mode)
    if mode not in VERIFY_MODES:
        raise InvalidInputError(f"--verify must be one of {', '.join(VERIFY_MODES)}")
    return mode


def integrity_section(
    conn: Connection,
    where: RecordFilter,
    total: int,
    *,
    mode: str,
    keys: tuple[str, ...],
    previous: Path | None,
    ledger: Ledger | None,
) -> IntegritySection:
    mode = verify_mode(mode)
    row = q.latest_checkpoint(conn)
    checkpoint = None
    if row is not None:
        checkpoint = CheckpointInfo(
            size=int(row["size"]),
            root_hex=bytes(row["root"]).hex(),
            origin=row["origin"],
            key_name=row["key_name"],
            key_id=row["key_id"],
            verifier=row["verifier"],
            note=row["note"],
            created_at=row["created_at"],
        )
    sealed = q.sealed_record_count(conn, where)
    verifiers, trusted = _verifiers(keys, checkpoint)
    verification = None
    if checkpoint is not None and mode == "full":
        verification = _verify_full(ledger, checkpoint, verifiers, trusted)
    elif checkpoint is not None and mode == "leaf-hashes":
        verification = _verify_leaf_hashes(conn, checkpoint, verifiers, trusted)
    return IntegritySection(
        checkpoint=checkpoint,
        checkpoints=q.checkpoint_count(conn),
        log_size=q.log_size(conn),
        sealed_records=sealed,
        unsealed_records=total - sealed,
        verification=verification,
        previous=None if previous is None else _previous(conn, previous, checkpoint, verifiers),
    )


def no_log(total: int) -> IntegritySection:
    return IntegritySection(
        checkpoint=None,
        checkpoints=0,
        log_size=0,
        sealed_records=0,
        unsealed_records=total,
        verification=None,
        previous=None,
    )


def _verifiers(keys: tuple[str, ...], cp: CheckpointInfo | None) -> tuple[list[Verifier], bool]:
    """(keys, trusted): keys given by the caller (--key, SEEDLEDGER_VERIFIER_KEY), else
    the one the ledger stores beside its checkpoint (self-attested)."""
    given = load_verifiers(keys)
    if given:
        return given, True
    return ([Verifier.parse(cp.verifier)] if cp else []), False


def _key(cp: CheckpointInfo, verifiers: list[Verifier], trusted: bool) -> KeyInfo | None:
    """The key that verified the latest checkpoint's signature (None: none did)."""
    try:
        _, opened = open_checkpoint(cp.note, verifiers)
    except NoteError:
        return None
    v = opened.verified_by[0]
    return KeyInfo(trusted=trusted, name=v.name, key_id=v.key_id_hex, verifier=str(v))


def _failed(
    mode: str, ran_at: datetime, kind: str, message: str, leaves: int = 0, **where: Any
) -> VerificationInfo:
    return VerificationInfo(
        status="failed",
        mode=mode,
        ran_at=ran_at,
        detail=message,
        leaves_checked=leaves,
        divergence=DivergenceInfo(kind=kind, message=message, **where),
    )


def _verify_leaf_hashes(
    conn: Connection, cp: CheckpointInfo, verifiers: list[Verifier], trusted: bool
) -> VerificationInfo:
    """The latest checkpoint's signature, and its root recomputed from the stored leaf
    hashes. Rows are not re-hashed: a row changed behind the log's back passes this."""
    ran_at = datetime.now(UTC)
    mode = "leaf-hashes"
    try:
        parsed, _ = open_checkpoint(cp.note, verifiers)
    except NoteError as exc:
        return _failed(mode, ran_at, "bad-signature", f"checkpoint at size {cp.size}: {exc}")
    if parsed.size != cp.size or parsed.root.hex() != cp.root_hex or parsed.origin != cp.origin:
        return _failed(
            mode, ran_at, "bad-checkpoint", "the signed note disagrees with the stored checkpoint columns"
        )
    tree = CompactRange()
    tree.extend(q.iter_leaf_hashes(conn, cp.size))
    if tree.size != cp.size:
        return _failed(
            mode,
            ran_at,
            "missing-leaf",
            f"only leaves 0…{tree.size - 1} of the checkpoint's {cp.size} are stored",
            tree.size,
            leaf_index=tree.size,
        )
    if tree.root().hex() != cp.root_hex:
        return _failed(
            mode, ran_at, "root-mismatch", "the stored leaf hashes do not hash to the signed root", tree.size
        )
    return VerificationInfo(
        status="not-rehashed",
        mode=mode,
        ran_at=ran_at,
        detail=f"signature valid; the {cp.size} stored leaf hashes hash to the signed root; "
        "rows not re-hashed (a row changed after sealing is not found: use --verify full)",
        leaves_checked=tree.size,
        key=_key(cp, verifiers, trusted),
    )


def _divergence(d: Divergence) -> DivergenceInfo:
    return DivergenceInfo(
        kind=d.kind,
        message=d.message(),
        leaf_index=d.leaf_index,
        entry_type=d.entry_type,
        entry_id=d.entry_id,
        columns=d.columns,
    )


def _verify_full(
    ledger: Ledger | None, cp: CheckpointInfo, verifiers: list[Verifier], trusted: bool
) -> VerificationInfo:
    """``seedledger verify``: every leaf recomputed from its row, every checkpoint root
    and signature checked."""
    ran_at = datetime.now(UTC)
    if ledger is None:
        return _failed("full", ran_at, "not-verified", "no ledger to verify")
    result = verify_log(ledger, verifiers)
    leaves = sum(result.entries.values())
    path = result.path
    if result.divergence is not None:
        return VerificationInfo(
            status="failed",
            mode="full",
            ran_at=ran_at,
            detail=result.divergence.message(),
            leaves_checked=leaves,
            divergence=_divergence(result.divergence),
            key=_key(cp, verifiers, trusted),
            path=path,
        )
    return VerificationInfo(
        status="passed",
        mode="full",
        ran_at=ran_at,
        detail=f"{leaves} leaves recomputed from their rows, {result.checkpoints} checkpoint(s) and "
        f"their signatures check; log size {result.size}"
        + (f" (Python path: {result.path_reason})" if result.path_reason else ""),
        leaves_checked=leaves,
        key=_key(cp, verifiers, trusted),
        path=path,
    )


def _previous(
    conn: Connection, path: Path, current: CheckpointInfo | None, verifiers: list[Verifier]
) -> PreviousCheckpoint:
    note = _read_previous_note(path)
    signature_ok: bool | None = None
    try:
        if verifiers:
            prev, _ = open_checkpoint(note, verifiers)
            signature_ok = True
        else:
            prev = Checkpoint.parse(note[: note.find("\n\n") + 1] if "\n\n" in note else note)
    except NoteError as exc:
        try:
            prev = Checkpoint.parse(note[: note.find("\n\n") + 1])
        except NoteError:
            raise InvalidInputError(f"{path} holds no readable checkpoint: {exc}") from None
        signature_ok = False

    def result(*, consistent: bool, detail: str) -> PreviousCheckpoint:
        return PreviousCheckpoint(
            origin=prev.origin,
            size=prev.size,
            root_hex=prev.root.hex(),
            signature_ok=signature_ok,
            consistent=consistent,
            detail=detail,
        )

    if current is None:
        return result(consistent=False, detail="no checkpoint in this ledger yet")
    if prev.origin != current.origin:
        return result(
            consistent=False,
            detail=f"origin {prev.origin!r} is not this log's {current.origin!r}",
        )
    if prev.size > current.size:
        return result(
            consistent=False,
            detail=f"previous size {prev.size} > current {current.size}: log shrank",
        )
    tree = CompactRange()
    for leaf in q.iter_leaf_hashes(conn, prev.size):
        tree.append(leaf)
    if tree.size != prev.size or tree.root() != prev.root:
        return result(
            consistent=False,
            detail=f"the first {prev.size} leaves of this log do not hash to the previous root",
        )
    return result(
        consistent=True,
        detail=f"the first {prev.size} leaves of this log hash to the previous root; "
        f"the log grew by {current.size - prev.size}",
    )


def _read_previous_note(path: Path) -> str:
    """A signed checkpoint note, or a previous JSON report holding one."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read previous checkpoint {path}: {exc}") from None
    if text.lstrip().startswith(("{", "[")):
        data = load_json(text, str(path))
        try:
            note = data["integrity"]["checkpoint"]["note"]
        except (KeyError, TypeError):
            raise InvalidInputError(f"{path} is not a seedledger JSON report with a checkpoint") from None
        if not isinstance(note, str):
            raise InvalidInputError(f"{path}: the report's checkpoint note is not text")
        return note
    return text


__all__ = ["VERIFY_MODES", "integrity_section", "no_log", "verify_mode"]
