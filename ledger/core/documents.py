"""Runware exchange documents, as `seedledger record` and `import` read them.

One document is a JSON object::

    {"request": [task, ...] | task, "response": {"data": [...], "errors": [...]},
     "created_at": "2026-11-25T12:00:00Z", "backend": "runware",
     "tags": ["campaign-7"], "experiment_id": "...", "parent_id": 12}

Only ``request`` and ``response`` are required. A file holds one document, a JSON
array of documents, or JSON Lines (one document per line). Parsing is all or nothing:
the first bad document raises with its line number and nothing is returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ledger.core.jsonsafe import loads_bounded
from ledger.core.records import NewRecord, Source
from ledger.core.runware import records_from_exchange
from ledger.errors import InvalidInputError, LedgerError

_KNOWN_KEYS = frozenset(
    {"request", "response", "created_at", "backend", "tags", "experiment_id", "parent_id"}
)


def parse_documents(
    text: str,
    *,
    source: Source = Source.API,
    tags: tuple[str, ...] = (),
    experiment_id: str | None = None,
    parent_id: int | None = None,
    known_secrets: tuple[str, ...] = (),
) -> list[NewRecord]:
    """Parse a JSON document, an array of them, or JSON Lines into records."""
    if not text.strip():
        raise InvalidInputError("input is empty: expected a JSON document or JSON Lines")
    documents: list[tuple[str, Any]]
    try:
        # Integers stay exact (Python ints); NaN/Infinity and deep nesting are refused.
        whole = loads_bounded(text)
    except InvalidInputError:
        lines = text.splitlines()
        if len([line for line in lines if line.strip()]) < 2:
            raise
        documents = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                documents.append((f"line {number}", loads_bounded(line)))
            except InvalidInputError as exc:
                raise type(exc)(f"line {number}: {exc}") from None
    else:
        if isinstance(whole, list):
            documents = [(f"document {i + 1}", doc) for i, doc in enumerate(whole)]
        else:
            documents = [("document", whole)]

    out: list[NewRecord] = []
    for where, document in documents:
        try:
            out.extend(
                _records_of(
                    document,
                    source=source,
                    tags=tags,
                    experiment_id=experiment_id,
                    parent_id=parent_id,
                    known_secrets=known_secrets,
                )
            )
        except LedgerError as exc:
            raise type(exc)(f"{where}: {exc}") from None
    return out


def _records_of(document: Any, **options: Any) -> list[NewRecord]:
    if not isinstance(document, Mapping):
        raise InvalidInputError("expected an object with 'request' and 'response'")
    missing = {"request", "response"} - document.keys()
    if missing:
        raise InvalidInputError(f"missing {', '.join(sorted(missing))}")
    unknown = set(document.keys()) - _KNOWN_KEYS
    if unknown:
        raise InvalidInputError(f"unknown field(s): {', '.join(sorted(unknown))}")
    created_at = _created_at(document.get("created_at"))
    tags = document.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise InvalidInputError("tags: expected a list of non-empty strings")
    backend = document.get("backend", "runware")
    if not isinstance(backend, str) or not backend:
        raise InvalidInputError("backend: expected a non-empty string")
    experiment_id = document.get("experiment_id", options.pop("experiment_id"))
    parent_id = document.get("parent_id", options.pop("parent_id"))
    if parent_id is not None and (isinstance(parent_id, bool) or not isinstance(parent_id, int)):
        raise InvalidInputError("parent_id: expected an integer record id")
    merged_tags = tuple(dict.fromkeys([*options.pop("tags"), *tags]))
    records = records_from_exchange(
        document["request"],
        document["response"],
        backend=backend,
        created_at=created_at,
        tags=merged_tags,
        experiment_id=experiment_id,
        parent_id=parent_id,
        **options,
    )
    if not records:
        raise InvalidInputError("no inference task with a result or an error")
    return records


def _created_at(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError("created_at: expected an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(f"created_at: {value!r} is not ISO 8601") from None
    if parsed.tzinfo is None:
        raise InvalidInputError("created_at: needs a time zone (Z or +00:00)")
    return parsed.astimezone(UTC)
