"""Runware request+response logs: one document, an array, or JSON Lines
(:mod:`ledger.core.documents` parses them; records keep their own times and UUIDs)."""

from __future__ import annotations

from ledger.core.documents import parse_documents
from ledger.core.records import NewRecord
from ledger.workflows.readers.base import Context


def read_runware(text: str, ctx: Context) -> tuple[NewRecord, ...]:
    return tuple(parse_documents(text, source=ctx.source))
