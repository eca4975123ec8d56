"""Record selection, shared by list, audit, report and lookup commands."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, select

from ledger.core.seeds import parse_seed
from ledger.errors import InvalidInputError
from ledger.store.schema import record_tags, records

ORDERINGS = ("id", "created_at", "seed", "model", "scheduler")


@dataclass(frozen=True, kw_only=True)
class RecordFilter:
    """Which records to select. Every field narrows the selection (AND)."""

    ids: tuple[int, ...] = ()
    model: str | None = None  # exact AIR, or a pattern with * wildcards
    scheduler: str | None = None
    seed: int | None = None
    seed_min: int | None = None
    seed_max: int | None = None
    since: datetime | None = None  # created_at >= since
    until: datetime | None = None  # created_at < until
    prompt: str | None = None  # case-insensitive substring
    experiment: str | None = None
    tags: tuple[str, ...] = ()  # all of them
    status: str | None = None
    backend: str | None = None
    source: str | None = None
    modality: str | None = None

    def __post_init__(self) -> None:
        for name in ("seed", "seed_min", "seed_max"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, parse_seed(value))
        if self.seed_min is not None and self.seed_max is not None and self.seed_min > self.seed_max:
            raise InvalidInputError("--seed-min is greater than --seed-max")
        if self.since and self.until and self.since >= self.until:
            raise InvalidInputError("--since must be earlier than --until")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise InvalidInputError(f"--{name} needs a time zone (use Z or +00:00)")

    def clauses(self) -> list[ColumnElement[bool]]:
        """SQL conditions; every user value is a bound parameter."""
        return self.column_clauses() + [tag_clause(tag) for tag in self.tags]

    def column_clauses(self) -> list[ColumnElement[bool]]:
        """The conditions on the records table's own columns (every one but ``tags``)."""
        c = records.c
        out: list[ColumnElement[bool]] = []
        if self.ids:
            out.append(c.id.in_(self.ids))
        if self.model is not None:
            out.append(_match(c.model, self.model))
        if self.scheduler is not None:
            out.append(_match(c.scheduler, self.scheduler))
        if self.seed is not None:
            out.append(c.seed == self.seed)
        if self.seed_min is not None:
            out.append(c.seed >= self.seed_min)
        if self.seed_max is not None:
            out.append(c.seed <= self.seed_max)
        if self.since is not None:
            out.append(c.created_at >= self.since)
        if self.until is not None:
            out.append(c.created_at < self.until)
        if self.prompt is not None:
            out.append(func.lower(c.prompt).contains(self.prompt.lower(), autoescape=True))
        if self.experiment is not None:
            out.append(c.experiment_id == self.experiment)
        for name in ("status", "backend", "source", "modality"):
            value = getattr(self, name)
            if value is not None:
                out.append(c[name] == value)
        return out

    def where(self) -> ColumnElement[bool]:
        clauses = self.clauses()
        return and_(*clauses) if clauses else and_(True)


def tag_clause(tag: str, *, below: int | None = None) -> ColumnElement[bool]:
    """The record carries ``tag`` (a probe of record_tags' primary key per record).
    ``below``: the record's id is known to be below it (a keyset page), which lets
    PostgreSQL bound a semi-join on the tag index instead of walking it from the top."""
    t = record_tags.c
    inner = select(t.record_id).where(t.record_id == records.c.id, t.tag == tag)
    if below is not None:
        inner = inner.where(t.record_id < below)
    return exists(inner.correlate(records))


def _match(column: ColumnElement[Any], pattern: str) -> ColumnElement[bool]:
    if "*" not in pattern:
        return column == pattern
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(escaped.replace("*", "%"), escape="\\")
