"""Steps (3) and (4) of ``verify`` (see its module docstring): the leaves in order,
each recomputed from its stored row (natively where the walker can), and every
checkpoint checked when the recomputed tree reaches its size."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection

from ledger.errors import InvalidInputError
from ledger.integrity import _native, merkle
from ledger.integrity._columns import Recovered, recover_changed, undecodable_columns
from ledger.integrity._reading import Unreadable, stream
from ledger.integrity.divergence import Divergence, Found
from ledger.integrity.leaves import EntryType
from ledger.integrity.merkle import CompactRange
from ledger.integrity.note import NoteError, Verifier, open_checkpoint
from ledger.integrity.seal import StoredCheckpoint

#: The name verify's messages have always been logged under.
log = logging.getLogger("ledger.integrity.verify")

__all__ = ["Walk", "walk_native"]


def _check_checkpoint(cp: StoredCheckpoint, root: bytes, verifiers: Sequence[Verifier]) -> None:
    """(4) for one checkpoint, against the recomputed ``root`` at its size."""
    try:
        body, _ = open_checkpoint(cp.note, verifiers)
    except NoteError as exc:
        raise Found(
            Divergence("bad-signature", f"checkpoint at size {cp.size}: {exc}", _last_leaf(cp.size))
        ) from None
    if (body.origin, body.size, body.root) != (cp.origin, cp.size, cp.root):
        raise Found(
            Divergence(
                "bad-checkpoint",
                f"checkpoint at size {cp.size}: the signed body does not match the stored columns",
                _last_leaf(cp.size),
            )
        )
    if body.root != root:
        raise Found(
            Divergence(
                "root-mismatch",
                f"checkpoint at size {cp.size} signed root {body.root.hex()[:16]}…, the stored rows "
                f"give {root.hex()[:16]}… (entries before leaf {cp.size} were changed, moved or removed)",
                _last_leaf(cp.size),
            )
        )


def _last_leaf(size: int) -> int | None:
    """The last leaf a checkpoint of ``size`` covers (None for the empty tree)."""
    return size - 1 if size > 0 else None


class Walk:
    """Steps (3) and (4) as the leaves arrive in order: the recomputed tree, the count
    per entry type, and the checkpoints still to check. Both the Python path
    (:meth:`leaf`, one row at a time) and the native walker (:meth:`confirmed`, leaves
    it recomputed and matched itself) advance it."""

    def __init__(
        self,
        head_size: int,
        cps: Sequence[StoredCheckpoint],
        verifiers: Sequence[Verifier],
        middle: Divergence | None,
        counts: dict[str, int],
        progress: Callable[[int], None] | None,
    ) -> None:
        self.head_size = head_size
        self.verifiers = verifiers
        self.middle = middle
        self.counts = counts
        self.progress = progress
        self.compact = CompactRange()
        self.native_leaves = 0
        self.path = "python"
        self.path_reason: str | None = None
        self._pending = iter(cps)
        self.next_cp = next(self._pending, None)
        self._reached()  # a size-0 checkpoint is checked before any leaf

    def stop(self) -> int:
        """Where the next pause is due: the head, the next checkpoint, or the place of
        an entry inserted in the middle."""
        stop = self.head_size
        if self.next_cp is not None:
            stop = min(stop, self.next_cp.size)
        if self.middle is not None and self.middle.leaf_index is not None:
            stop = min(stop, self.middle.leaf_index)
        return max(stop, self.compact.size)

    def leaf(self, row: Any, et: EntryType | None, fields: Any) -> None:
        """(3) for the next leaf, recomputed here from its row."""
        index = self.compact.size
        if self.middle is not None and self.middle.leaf_index is not None and self.middle.leaf_index <= index:
            raise Found(self.middle)
        if int(row.leaf_index) != index:
            raise Found(
                Divergence(
                    "missing-leaf",
                    f"leaf {index} is absent; the next stored leaf is {row.leaf_index}",
                    index,
                )
            )
        name, entry_id = row.entry_type, int(row.entry_id)
        if et is None:
            raise Found(
                Divergence("unknown-entry-type", f"entry type {name!r} is not known", index, name, entry_id)
            )
        if fields is None:
            raise Found(
                Divergence("missing-row", f"the sealed {name} row is gone (deleted)", index, name, entry_id)
            )
        if isinstance(fields, Unreadable):
            raise Found(
                _changed(
                    index,
                    name,
                    entry_id,
                    fields.columns,
                    f"no longer holds a value of its type ({fields.cause})",
                )
            )
        try:
            digest = merkle.leaf_hash(et.leaf_bytes_from_fields(index, fields))
        except (InvalidInputError, TypeError, ValueError) as exc:  # not JSON-encodable any more
            raise Found(
                _changed(
                    index, name, entry_id, undecodable_columns(fields), f"is not text ({type(exc).__name__})"
                )
            ) from None
        sealed = bytes(row.leaf_hash)
        if digest != sealed:
            recovered = recover_changed(et, index, fields, sealed)
            raise Found(_changed(index, name, entry_id, (), "", recovered))
        self.compact.append(digest)
        self.counts[name] += 1
        if index >= self.head_size:
            raise Found(
                Divergence(
                    "extra-leaf",
                    f"the log head has {self.head_size} leaves; this entry lies beyond it",
                    index,
                    name,
                    entry_id,
                )
            )
        self._reached(index)

    def confirmed(self, compact: CompactRange, counts: dict[str, int]) -> None:
        """Leaves the native walker recomputed and matched, up to ``compact.size``
        (never past :meth:`stop`)."""
        before = self.compact.size
        self.compact = compact
        self.native_leaves += compact.size - before
        for name, n in counts.items():
            self.counts[name] += n
        self._reached(before)

    def _reached(self, before: int | None = None) -> None:
        """(4) checkpoints at the current size; progress every 100,000 leaves."""
        while self.next_cp is not None and self.next_cp.size == self.compact.size:
            _check_checkpoint(self.next_cp, self.compact.root(), self.verifiers)
            self.next_cp = next(self._pending, None)
        if self.progress is None or before is None:
            return
        if self.compact.size // 100_000 > before // 100_000:
            self.progress(self.compact.size)


def _changed(
    index: int,
    name: str,
    entry_id: int,
    columns: tuple[str, ...],
    why: str,
    recovered: tuple[Recovered, ...] = (),
) -> Divergence:
    """(3) a changed-row divergence naming the columns established as changed (columns
    with a value that is not of their type, or a sealed value recovered), else saying
    honestly that no column could be established."""
    head = f"the {name} row no longer hashes to its sealed leaf"
    if recovered:
        detail = (
            f"{head}: column {', '.join(r.describe() for r in recovered)} was changed (set back to "
            "that value, found in the row's own JSON columns or null, the row hashes to its sealed "
            "leaf again)"
        )
        return Divergence("changed-row", detail, index, name, entry_id, tuple(r.column for r in recovered))
    if columns:
        detail = f"{head}: column {', '.join(columns)} {why}"
        return Divergence("changed-row", detail, index, name, entry_id, columns)
    detail = (
        f"{head}: which column changed cannot be established (the log keeps each leaf's hash, not "
        "its columns, and no single column set back to a value the row still holds elsewhere "
        "reproduces it); or the entry was moved from another leaf position"
    )
    if why:
        detail += f" ({why})"
    return Divergence("changed-row", detail, index, name, entry_id)


#: Leaves per native call: bounds the walker's memory (32 bytes a leaf) and how long
#: an interrupt waits.
_NATIVE_CHUNK = 1 << 17
#: After this many leaves the walker could not confirm, verify stops asking it.
_NATIVE_GIVE_UP = 256


def walk_native(conn: Connection, walk: Walk, types: Sequence[EntryType]) -> str | None:
    """(3) with the native walker while it is available: it confirms runs of leaves;
    each leaf it stops at goes through :meth:`Walk.leaf` (the Python path), which
    names any divergence. Returns when the head is reached or the walker is not used,
    with the reason when the Python path is left to read the rest (else None)."""
    walker, reason = _native.open_walker_or_reason(conn, types)
    if walker is None:
        return reason
    walk.path = "native"
    names = [et.name for et in types]
    refused = 0
    try:
        while walk.compact.size < walk.head_size:
            stop = walk.stop()
            if walk.compact.size == stop:
                # a pause with nothing confirmed: an entry inserted in the middle
                # belongs here, so the Python path reports it
                return None
            try:
                size, hashes, counts, problem = walker.walk(
                    walk.compact.size, list(walk.compact.hashes), min(stop, walk.compact.size + _NATIVE_CHUNK)
                )
            except (RuntimeError, MemoryError) as exc:
                log.warning("native leaf walk failed (%s); verifying the rest in Python", exc)
                return f"the native leaf walk failed ({exc}); the rest was verified in Python"
            walk.confirmed(CompactRange(size, hashes), dict(zip(names, counts, strict=True)))
            if problem is None:
                continue
            refused += 1
            if refused > _NATIVE_GIVE_UP:
                return f"the native walker left {_NATIVE_GIVE_UP} leaves unconfirmed; the rest read in Python"
            row = next(stream(conn, types, start=problem, page=1), None)
            if row is None:
                return None  # nothing stored from here on: the end of verify names it
            walk.leaf(*row)
    finally:
        walker.close()
    return None
