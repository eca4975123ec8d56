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

Steps (3) and (4) live in ``_walk``, step (6) in ``_consistency``, the report types in
``divergence``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import Connection, exists, func, select

from ledger.errors import InvalidInputError
from ledger.integrity._consistency import check_against, open_saved
from ledger.integrity._reading import snapshot, stream
from ledger.integrity._walk import Walk, walk_native
from ledger.integrity.divergence import Divergence, Found, VerifyReport
from ledger.integrity.leaves import ENTRY_TYPES, EntryType
from ledger.integrity.merkle import EMPTY_ROOT
from ledger.integrity.note import Checkpoint, NoteFormatError, Verifier, parse_checkpoint_note
from ledger.integrity.seal import _stored, read_head
from ledger.store import Ledger
from ledger.store.schema import checkpoints, log_entries

__all__ = ["verify"]


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
        walk: Walk | None = None
        saved: Checkpoint | None = None
        counted: list[EntryType] = []
        walked = False
        try:
            if against is not None:
                saved = open_saved(against, verifiers)
            # (2) entries inserted in the middle, to be reported where they belong
            middle, counted = _unsealed_in_middle(conn, types, count_first=True)
            walk = Walk(head_size, cps, verifiers, middle, counts, progress)
            # (3) every leaf, recomputed from its row: natively where it can, then the
            # rest (and anything stored beyond the head) on the Python path
            if native:
                walk.path_reason = walk_native(conn, walk, types)
            else:
                walk.path_reason = "the Python path was asked for (native=False)"
            for row, et, fields in stream(conn, types, start=walk.compact.size):
                walk.leaf(row, et, fields)
            walked = True
            compact = walk.compact
            if middle is not None:
                raise Found(middle)
            # (5) the head and checkpoints beyond the leaves
            if compact.size < head_size:
                raise Found(
                    Divergence(
                        "missing-leaf",
                        f"the log head has {head_size} leaves, only {compact.size} are stored",
                        compact.size,
                    )
                )
            if walk.next_cp is not None:
                raise Found(
                    Divergence(
                        "missing-leaf",
                        f"checkpoint at size {walk.next_cp.size} lies beyond the "
                        f"{compact.size} stored leaves",
                        compact.size,
                    )
                )
            if head is not None and (head.compact.hashes != compact.hashes or head.root != compact.root()):
                raise Found(
                    Divergence("head-mismatch", "the stored log head does not match the stored leaves")
                )
            # (6) against a checkpoint saved elsewhere
            against_report = None
            if saved is not None:
                against_report = check_against(conn, saved, cps[-1] if cps else None)
        except Found as found:
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
