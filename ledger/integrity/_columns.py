"""Which column of a changed row no longer hashes to its sealed leaf.

The log keeps each leaf's hash, not the leaf: a changed row cannot be compared with
its sealed form column by column. What can be established:

- a column whose stored value no longer is a value of its type (bytes that are not
  UTF-8 in a text column, text that is not JSON in a JSON column): that column;
- a column whose sealed value the row itself still holds elsewhere: records keep the
  request and the response verbatim beside the columns extracted from them, so putting
  one of their values back into one column and recomputing the leaf may reproduce the
  sealed leaf hash. A SHA-256 match establishes the sealed row, so that column changed
  (and from what). One column at a time, from the row's own JSON values only.

Anything else is reported as not established: never a guess. ``verify`` decides this
on its Python path for both walkers, so both give the same report.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Integer, LargeBinary, String
from sqlalchemy.types import TypeDecorator

from ledger.integrity.leaves import EntryType
from ledger.integrity.merkle import leaf_hash
from ledger.store.types import SeedType, UTCDateTime

#: Witness values tried per column kind: bounds the work (one leaf hash per try) on
#: rows with large request JSON; only the first divergence is ever diagnosed.
_MAX_WITNESSES = 512
_SEED_MAX = 2**64 - 1


@dataclass(frozen=True)
class Recovered:
    """A column whose sealed value was established by reproducing the sealed leaf hash."""

    column: str
    sealed: Any  # the value in its leaf form

    def describe(self) -> str:
        text = repr(self.sealed)
        return f"{self.column} (sealed value {text if len(text) <= 60 else text[:59] + '…'})"


def _kind(column: Any) -> str | None:
    """The kinds of value a witness can stand for; None: not tried (times, binary)."""
    type_ = column.type
    if isinstance(type_, SeedType):
        return "seed"
    if isinstance(type_, UTCDateTime):
        return None
    impl = type_.impl if isinstance(type_, TypeDecorator) else type_
    if isinstance(impl, JSON | LargeBinary):
        return None
    if isinstance(impl, Boolean):
        return "bool"
    if isinstance(impl, Float):
        return "float"
    if isinstance(impl, Integer):
        return "int"
    if isinstance(impl, String):  # Text too
        return "str"
    return None


def _scalars(fields: dict[str, Any]) -> Iterator[Any]:
    """Scalar values inside the row's JSON-valued fields (keys and values), iteratively."""
    stack = [v for v in fields.values() if isinstance(v, dict | list)]
    while stack:
        item = stack.pop()
        children = list(item.items()) if isinstance(item, dict) else [(None, v) for v in item]
        for key, value in children:
            if key is not None:
                yield key
            if isinstance(value, dict | list):
                stack.append(value)
            else:
                yield value


def _witnesses(fields: dict[str, Any]) -> dict[str, list[Any]]:
    """Candidate sealed values per column kind, in their leaf form, deduplicated."""
    by_kind: dict[str, dict[tuple[type, Any], Any]] = {k: {} for k in ("seed", "bool", "float", "int", "str")}

    def add(kind: str, value: Any) -> None:
        bucket = by_kind[kind]
        if len(bucket) < _MAX_WITNESSES:
            bucket.setdefault((type(value), value), value)

    for value in _scalars(fields):
        if isinstance(value, bool):
            add("bool", value)
        elif isinstance(value, int):
            add("int", value)
            add("float", value)
            if 0 <= value <= _SEED_MAX:
                add("seed", str(value))
        elif isinstance(value, float):
            add("float", value)
        elif isinstance(value, str):
            add("str", value)
            if value.isascii() and value.isdigit() and int(value) <= _SEED_MAX:
                add("seed", str(int(value)))
    return {kind: list(bucket.values()) for kind, bucket in by_kind.items()}


def recover_changed(
    et: EntryType, index: int, fields: dict[str, Any], sealed: bytes
) -> tuple[Recovered, ...]:
    """The single column whose replacement by a value the row holds elsewhere (or by
    null) reproduces the ``sealed`` leaf hash; () when none does."""
    witnesses = _witnesses(fields)
    for column in et.table.columns:
        name = column.name
        if name == et.id_column:
            continue  # a changed id is a missing row at this leaf
        kind = _kind(column)
        current = fields[name]
        candidates: list[Any] = [None] if current is not None else []
        if kind is not None:
            candidates += witnesses[kind]
        for candidate in candidates:
            if candidate == current and type(candidate) is type(current):
                continue
            trial = dict(fields)
            trial[name] = candidate
            try:
                digest = leaf_hash(et.leaf_bytes_from_fields(index, trial))
            except (TypeError, ValueError):
                continue
            if digest == sealed:
                return (Recovered(name, candidate),)
    return ()


def undecodable_columns(fields: dict[str, Any]) -> tuple[str, ...]:
    """Columns holding raw bytes where the leaf form has text (bytes that are not UTF-8)."""
    return tuple(name for name, value in fields.items() if isinstance(value, bytes))


def unreadable_columns(et: EntryType, values: Any, dialect: Any) -> tuple[str, ...]:
    """Columns whose driver value cannot be read in its leaf form at all."""
    bad = []
    for name, value in zip(et.column_names, values, strict=True):
        try:
            et.row_fields_from_raw([value if n == name else None for n in et.column_names], dialect)
        except (TypeError, ValueError, OverflowError):
            bad.append(name)
    return tuple(bad)
