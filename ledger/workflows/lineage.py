"""`seedledger lineage ID`: the refinement tree around a record.

A record's ``parent_id`` (``--parent`` on ``record``/``sweep``) names the record it
refines. The lineage of a record is its chain of ancestors up to the root, and every
descendant below it; each step carries what changed from its parent (the grouped
generation-parameter changes of :mod:`ledger.workflows.compare`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import select

from ledger.core.records import Record
from ledger.store import Ledger
from ledger.store.ledger import row_to_record
from ledger.store.schema import records
from ledger.workflows.compare import Change, compare

#: Guards against runaway trees (and, defensively, against cycles).
MAX_NODES: Final = 10_000


@dataclass(frozen=True)
class LineageNode:
    record: Record
    changes: tuple[Change, ...]  # relative to the parent; empty for the root
    children: tuple[LineageNode, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        r = self.record
        return {
            "id": r.id,
            "parent_id": r.parent_id,
            "seed": r.seed,
            "model": r.model,
            "scheduler": r.scheduler or r.scheduler_requested,
            "steps": r.steps,
            "cfg_scale": r.cfg_scale,
            "changes": [c.as_dict() for c in self.changes],
            "children": [c.as_dict() for c in self.children],
        }


@dataclass(frozen=True)
class Lineage:
    focus: int
    root: LineageNode
    depth: int  # how many ancestors the focus record has
    truncated: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "focus": self.focus,
            "depth": self.depth,
            "truncated": self.truncated,
            "tree": self.root.as_dict(),
        }


def lineage(ledger: Ledger, record_id: int) -> Lineage:
    """Ancestors (up to the root) and all descendants of ``record_id``."""
    focus = ledger.get(record_id)
    chain = [focus]
    seen = {focus.id}
    while chain[-1].parent_id is not None and len(chain) < MAX_NODES:
        ancestor = ledger.get(chain[-1].parent_id)
        if ancestor.id in seen:
            break
        seen.add(ancestor.id)
        chain.append(ancestor)
    chain.reverse()  # root first

    # Descendants of the focus, breadth first, one query per level.
    children_of: dict[int, list[Record]] = {}
    level = [focus.id]
    truncated = False
    total = len(chain)
    with ledger.reading() as conn:
        while level:
            rows = conn.execute(select(records).where(records.c.parent_id.in_(level)).order_by(records.c.id))
            found = [row_to_record(row) for row in rows if row.id not in seen]
            if total + len(found) > MAX_NODES:
                found = found[: max(0, MAX_NODES - total)]
                truncated = True
            for child in found:
                seen.add(child.id)
                assert child.parent_id is not None
                children_of.setdefault(child.parent_id, []).append(child)
            total += len(found)
            level = [child.id for child in found] if not truncated else []

    def build(record: Record, parent: Record | None) -> LineageNode:
        changes = compare(parent, record).changes if parent is not None else ()
        kids = tuple(build(child, record) for child in children_of.get(record.id, []))
        return LineageNode(record, changes, kids)

    # The ancestors form a single path down to the focus, whose subtree is complete.
    node = build(focus, chain[-2] if len(chain) > 1 else None)
    for index in range(len(chain) - 2, -1, -1):
        record = chain[index]
        parent = chain[index - 1] if index > 0 else None
        changes = compare(parent, record).changes if parent is not None else ()
        node = LineageNode(record, changes, (node,))
    return Lineage(focus=focus.id, root=node, depth=len(chain) - 1, truncated=truncated)
