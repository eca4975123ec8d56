"""Verify the log from the stored rows (inclusion proofs of one entry: ``proofs``).

``verify`` trusts nothing stored in the log tables except as something to compare
against. Its steps (marked ``# (n)`` in the code):

1. Read the log head and every checkpoint.
2. Find entries that are not sealed but have sealed entries of the same type after
   them (inserted in the middle); remember the leaf position where the first belongs.
   Types whose row count matches their sealed entries are settled by the walk of step 3
   finding every sealed row; if it finds anything, they are searched exactly.
3. Stream every log entry in leaf order joined to its stored row (flat memory). For
   each leaf: the index must be the next one (no gap), the row must exist, and the leaf
   recomputed from the row must hash to the sealed leaf hash. The recomputed hashes, not
   the stored ones, extend a compact range. On SQLite the native walker (``_native``)
   confirms runs of leaves; each leaf it does not confirm goes through this module's
   Python path, which names any divergence.
4. Whenever the recomputed tree reaches a checkpoint's size: the checkpoint's signature
   must verify with a known key, its body must match its columns, and its root must
   equal the recomputed root.
5. At the end: the number of leaves, the compact range and the root must equal the
   stored head; no checkpoint may lie beyond the head.
6. With ``against``: the rekor-cli ``loginfo`` pattern against a checkpoint saved
   elsewhere earlier (larger now: a consistency proof; equal: same root; smaller: fail).

The first divergence in leaf order is reported, naming the leaf, the entry and what
differs. Nothing else is checked after it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, exists, func, select

from ledger.errors import IntegrityError, InvalidInputError
from ledger.integrity import _native, merkle
from ledger.integrity._columns import Recovered, recover_changed, undecodable_columns
from ledger.integrity._reading import Unreadable, range_hash, snapshot, stream
from ledger.integrity.leaves import ENTRY_TYPES, EntryType
from ledger.integrity.merkle import EMPTY_ROOT, CompactRange, ProofError
from ledger.integrity.note import (
    Checkpoint,
    NoteError,
    NoteFormatError,
    Verifier,
    open_checkpoint,
    parse_checkpoint_note,
)
from ledger.integrity.seal import StoredCheckpoint, _stored, read_head
from ledger.store import Ledger
from ledger.store.schema import checkpoints, log_entries

log = logging.getLogger(__name__)


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


class _Found(Exception):
    def __init__(self, divergence: Divergence) -> None:
        self.divergence = divergence


def _all_sealed_by_count(conn: Connection, et: EntryType, top: int) -> bool:
    """Whether every row of ``et`` up to id ``top`` is sealed, judged by counting: as
    many rows as sealed entries. Two index scans instead of an anti-join (a seek per
    row). Conclusive only together with a walk that finds no missing row (then every
    sealed entry has its row, and equal counts leave no row unsealed); ``verify``
    runs the exact search whenever the walk finds anything."""
    id_col = et.table.c[et.id_column]
    sealed = conn.execute(
        select(func.count()).select_from(log_entries).where(log_entries.c.entry_type == et.name)
    ).scalar_one()
    # "id + 0": count from the smallest index, not by walking the table's rows
    stored = conn.execute(select(func.count()).select_from(et.table).where(id_col + 0 <= top)).scalar_one()
    return int(sealed) == int(stored)


def _unsealed_in_middle(
    conn: Connection, types: Sequence[EntryType], *, count_first: bool = False
) -> tuple[Divergence | None, list[EntryType]]:
    """(2) The unsealed entry that has sealed entries of its type after it, first in
    leaf order. With ``count_first``, types whose counts match are not searched; they
    come back in the list, to be searched if the walk finds a divergence."""
    first: Divergence | None = None
    counted: list[EntryType] = []
    for et in types:
        id_col = et.table.c[et.id_column]
        top = conn.execute(
            select(func.max(log_entries.c.entry_id)).where(log_entries.c.entry_type == et.name)
        ).scalar()
        if top is None:
            continue
        if count_first and _all_sealed_by_count(conn, et, int(top)):
            counted.append(et)
            continue
        sealed = exists().where(log_entries.c.entry_type == et.name, log_entries.c.entry_id == id_col)
        missing = conn.execute(select(func.min(id_col)).where(~sealed).where(id_col < top)).scalar()
        if missing is None:
            continue
        position = conn.execute(
            select(func.min(log_entries.c.leaf_index)).where(
                log_entries.c.entry_type == et.name, log_entries.c.entry_id > missing
            )
        ).scalar_one()
        candidate = Divergence(
            "unsealed-in-the-middle",
            f"{et.name} {missing} is not in the log but {et.name}s after it are "
            "(inserted in the middle; if recording is in progress, run `seedledger seal` "
            "and verify again)",
            int(position),
            et.name,
            int(missing),
        )
        if first is None or (candidate.leaf_index or 0) < (first.leaf_index or 0):
            first = candidate
    return first, counted


def _first(
    conn: Connection,
    found: Divergence,
    types: Sequence[EntryType],
    counted: Sequence[EntryType],
    walked: bool,
) -> Divergence:
    """The divergence to report once the walk found ``found``, when some types were
    only counted in step (2): the exact search over every type then gives the entry
    inserted in the middle that the plain walk would have stopped at. It comes first if
    it lies at or before ``found`` (or ``found`` is itself such an entry, of a later
    leaf at best), or if the walk had finished (``walked``)."""
    if not counted:
        return found
    middle, _ = _unsealed_in_middle(conn, types)
    if middle is None or middle.leaf_index is None:
        return found
    if walked or found.kind == "unsealed-in-the-middle":
        return middle
    if found.leaf_index is None:  # found before any leaf (a size-0 checkpoint)
        return found
    return middle if middle.leaf_index <= found.leaf_index else found


def _check_checkpoint(cp: StoredCheckpoint, root: bytes, verifiers: Sequence[Verifier]) -> None:
    """(4) for one checkpoint, against the recomputed ``root`` at its size."""
    try:
        body, _ = open_checkpoint(cp.note, verifiers)
    except NoteError as exc:
        raise _Found(
            Divergence("bad-signature", f"checkpoint at size {cp.size}: {exc}", _last_leaf(cp.size))
        ) from None
    if (body.origin, body.size, body.root) != (cp.origin, cp.size, cp.root):
        raise _Found(
            Divergence(
                "bad-checkpoint",
                f"checkpoint at size {cp.size}: the signed body does not match the stored columns",
                _last_leaf(cp.size),
            )
        )
    if body.root != root:
        raise _Found(
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


class _Walk:
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
            raise _Found(self.middle)
        if int(row.leaf_index) != index:
            raise _Found(
                Divergence(
                    "missing-leaf",
                    f"leaf {index} is absent; the next stored leaf is {row.leaf_index}",
                    index,
                )
            )
        name, entry_id = row.entry_type, int(row.entry_id)
        if et is None:
            raise _Found(
                Divergence("unknown-entry-type", f"entry type {name!r} is not known", index, name, entry_id)
            )
        if fields is None:
            raise _Found(
                Divergence("missing-row", f"the sealed {name} row is gone (deleted)", index, name, entry_id)
            )
        if isinstance(fields, Unreadable):
            raise _Found(
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
            raise _Found(
                _changed(
                    index, name, entry_id, undecodable_columns(fields), f"is not text ({type(exc).__name__})"
                )
            ) from None
        sealed = bytes(row.leaf_hash)
        if digest != sealed:
            recovered = recover_changed(et, index, fields, sealed)
            raise _Found(_changed(index, name, entry_id, (), "", recovered))
        self.compact.append(digest)
        self.counts[name] += 1
        if index >= self.head_size:
            raise _Found(
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


def _walk_native(conn: Connection, walk: _Walk, types: Sequence[EntryType]) -> str | None:
    """(3) with the native walker while it is available: it confirms runs of leaves;
    each leaf it stops at goes through :meth:`_Walk.leaf` (the Python path), which
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


def verify(
    ledger: Ledger,
    verifiers: Sequence[Verifier],
    *,
    against: str | None = None,
    progress: Callable[[int], None] | None = None,
    native: bool = True,
) -> VerifyReport:
    """Verify the whole log; see the module docstring. Never raises for a divergence:
    the report carries it (``report.raise_for_divergence()``). ``native=False`` keeps
    to the Python path (the native walker only changes the speed; ``_native``)."""
    types = list(ENTRY_TYPES.values())
    counts = {et.name: 0 for et in types}
    if against is not None:
        # (6) a file that is not a checkpoint note at all is bad input, not tampering
        try:
            parse_checkpoint_note(against)
        except NoteFormatError as exc:
            raise InvalidInputError(f"the saved checkpoint is not a signed checkpoint note: {exc}") from None
    with snapshot(ledger) as conn:
        # (1) head and checkpoints
        head = read_head(conn)
        cps = [_stored(r) for r in conn.execute(select(checkpoints).order_by(checkpoints.c.size))]
        head_size = head.size if head else 0
        latest = cps[-1].size if cps else None
        walk: _Walk | None = None
        saved: Checkpoint | None = None
        counted: list[EntryType] = []
        walked = False
        try:
            if against is not None:
                saved = _open_saved(against, verifiers)
            # (2) entries inserted in the middle, to be reported where they belong
            middle, counted = _unsealed_in_middle(conn, types, count_first=True)
            walk = _Walk(head_size, cps, verifiers, middle, counts, progress)
            # (3) every leaf, recomputed from its row: natively where it can, then the
            # rest (and anything stored beyond the head) on the Python path
            if native:
                walk.path_reason = _walk_native(conn, walk, types)
            else:
                walk.path_reason = "the Python path was asked for (native=False)"
            for row, et, fields in stream(conn, types, start=walk.compact.size):
                walk.leaf(row, et, fields)
            walked = True
            compact = walk.compact
            if middle is not None:
                raise _Found(middle)
            # (5) the head and checkpoints beyond the leaves
            if compact.size < head_size:
                raise _Found(
                    Divergence(
                        "missing-leaf",
                        f"the log head has {head_size} leaves, only {compact.size} are stored",
                        compact.size,
                    )
                )
            if walk.next_cp is not None:
                raise _Found(
                    Divergence(
                        "missing-leaf",
                        f"checkpoint at size {walk.next_cp.size} lies beyond the "
                        f"{compact.size} stored leaves",
                        compact.size,
                    )
                )
            if head is not None and (head.compact.hashes != compact.hashes or head.root != compact.root()):
                raise _Found(
                    Divergence("head-mismatch", "the stored log head does not match the stored leaves")
                )
            # (6) against a checkpoint saved elsewhere
            against_report = None
            if saved is not None:
                against_report = _check_against(conn, saved, cps[-1] if cps else None)
        except _Found as found:
            divergence = _first(conn, found.divergence, types, counted, walked)
            root = walk.compact.root() if walk is not None else EMPTY_ROOT
            return VerifyReport(
                head_size,
                root,
                len(cps),
                latest,
                counts,
                divergence=divergence,
                native_leaves=walk.native_leaves if walk is not None else 0,
                path=walk.path if walk is not None else "python",
                path_reason=walk.path_reason if walk is not None else None,
            )
    return VerifyReport(
        head_size,
        compact.root(),
        len(cps),
        latest,
        counts,
        against=against_report,
        native_leaves=walk.native_leaves,
        path=walk.path,
        path_reason=walk.path_reason,
    )


def _open_saved(note: str, verifiers: Sequence[Verifier]) -> Checkpoint:
    """(6) rekor-cli loginfo: first verify the saved checkpoint's own signature."""
    try:
        saved, _ = open_checkpoint(note, verifiers)
    except NoteError as exc:
        raise _Found(Divergence("bad-signature", f"saved checkpoint: {exc}")) from None
    return saved


def _check_against(conn: Connection, saved: Checkpoint, current: StoredCheckpoint | None) -> dict[str, Any]:
    """(6) The current latest checkpoint must extend the saved one."""
    if current is None:
        raise _Found(
            Divergence(
                "inconsistent-with-saved",
                f"the log has no checkpoint; the saved one has size {saved.size}",
            )
        )
    if saved.origin != current.origin:
        raise _Found(
            Divergence(
                "inconsistent-with-saved",
                f"saved checkpoint is for log {saved.origin!r}, this log is {current.origin!r}",
            )
        )
    report: dict[str, Any] = {"saved_size": saved.size, "current_size": current.size}
    # (6a) smaller now: the log lost leaves.
    if current.size < saved.size:
        raise _Found(
            Divergence(
                "inconsistent-with-saved",
                f"current size {current.size} is less than the saved size {saved.size}",
                current.size,
            )
        )
    # (6b) equal: the roots must match.
    if current.size == saved.size:
        if current.root != saved.root:
            raise _Found(
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
        raise _Found(
            Divergence(
                "inconsistent-with-saved",
                f"the log at size {current.size} does not extend the saved checkpoint: {exc}",
                saved.size - 1,
            )
        ) from None
    report["proof"] = [h.hex() for h in proof]
    return report
