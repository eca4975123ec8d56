"""Canonical leaf bytes: what the Merkle log commits to for each sealed entry.

A leaf is the canonical JSON (``ledger.core.canonical``, RFC 8785 subset) of::

    {"format": "seedledger/leaf", "v": <entry type version>, "type": <entry type>,
     "index": <leaf index>, "row": {<every column of the stored row>}}

``row`` holds every column of the entry's table, by column name, so the leaf can be
recomputed from the stored row alone and any change to any column is found. ``index``
binds the entry to its position in the log, so moving sealed entries around is found at
the exact leaf even when the moved leaf hashes are moved with them.

Column values are written in one fixed form per column type:

- seeds (``SeedType``): the unsigned 64-bit value as a decimal *string* (JSON readers
  lose integers above 2^53);
- times (``UTCDateTime``): ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC, always 6 digits;
- binary (``LargeBinary``): standard padded base64;
- JSON columns: the stored JSON value itself (canonicalized with the rest);
- integers, floats, strings, null: as JSON (floats via canonical_json's rules).

Entry types are registered in :data:`ENTRY_TYPES` (``record`` built in). A layer with
a new append-only table (audit results, …) registers an :class:`EntryType` naming its
table (whose integer id column becomes ``log_entries.entry_id``) and bumps ``version``
whenever the table's columns change. ``docs/integrity.md`` documents the format.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Dialect, Float, Integer, LargeBinary, String, Table, and_, type_coerce
from sqlalchemy.types import NullType, TypeDecorator, TypeEngine

from ledger.core.canonical import canonical_json
from ledger.integrity.merkle import leaf_hash
from ledger.store.schema import audit_results, fingerprints, log_entries, record_environments, records
from ledger.store.types import SeedType, UTCDateTime

LEAF_FORMAT = "seedledger/leaf"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_SEED_OFFSET = 2**63  # SeedType stores seed − 2^63

Converter = Callable[[Any], Any]


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False).encode
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def _may_hold_integral_float(text: str) -> bool:
    """repr() writes an integral float as "<digits>.0" below 1e16 and with "e+" above;
    in compact JSON a number ends at ",", "}", "]" or the end. A match inside a string
    is a harmless false alarm (the exact path runs instead). Two scans of the text."""
    i = text.find(".0")
    while i != -1:
        if text[i + 2 : i + 3] in (",", "}", "]", ""):
            return True
        i = text.find(".0", i + 2)
    return "e+" in text


def canonical_bytes(value: Any) -> bytes:
    """``canonical_json(value)``, byte for byte, several times faster for the values
    the ledger stores (dicts with string keys, as every JSON column reads back).

    The C JSON encoder with sorted keys writes the same bytes as canonical_json unless
    (a) a key holds a character outside the BMP (UTF-16 order differs from code point
    order), (b) a float is integral (canonical_json writes 7.0 as 7), or (c) a value is
    not JSON. Those cases, detected (with harmless false alarms) on the encoded text, go
    to canonical_json itself.
    tests/test_integrity.py checks the equality on generated values.
    """
    try:
        text = _encode(value)
    except (TypeError, ValueError):
        return canonical_json(value)  # raises its own, precise error
    if (not text.isascii() and _ASTRAL.search(text)) or _may_hold_integral_float(text):
        return canonical_json(value)
    return text.encode()


def format_time(value: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC (TIME_FORMAT), always 6 fraction digits."""
    if value.tzinfo is not None and value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # isoformat pads the year to 4 digits on every platform (strftime's %Y may not).
    return value.isoformat(timespec="microseconds")[:26] + "Z"


def _seed(value: Any) -> Any:
    return None if value is None else str(int(value))


def _time(value: Any) -> Any:
    return None if value is None else format_time(value)


def _binary(value: Any) -> Any:
    return None if value is None else base64.b64encode(bytes(value)).decode()


def _converter(type_: TypeEngine[Any]) -> Converter | None:
    """How a column's value is written in the leaf; None: as it is."""
    if isinstance(type_, SeedType):
        return _seed
    if isinstance(type_, UTCDateTime):
        return _time
    impl = type_.impl if isinstance(type_, TypeDecorator) else type_
    if isinstance(impl, LargeBinary):
        return _binary
    return None  # JSON values, integers, floats, strings: canonical JSON writes them


def _sqlite_time(processor: Converter | None) -> Converter:
    """SQLite keeps UTCDateTime as ``YYYY-MM-DD HH:MM:SS.ffffff`` (SQLAlchemy's storage
    format, always six digits): rewrite it in place, the same string format_time gives
    for the parsed value. Anything else is parsed the SQLAlchemy way first."""

    def convert(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str) and len(value) == 26 and value[10] == " " and value[19] == ".":
            return value[:10] + "T" + value[11:] + "Z"
        return format_time(processor(value) if processor else value)

    return convert


def _raw_converter(column: Any, dialect: Dialect) -> Converter | None:
    """The leaf form straight from the driver's value: SQLAlchemy's own result
    processing for the column type, then :func:`_converter`, with fast paths for the
    hot types. Gives exactly what :func:`_converter` gives for the processed value."""
    type_ = column.type
    if isinstance(type_, SeedType):
        return _raw_seed
    if isinstance(type_, Float) and not type_.asdecimal:
        # Both drivers return float for REAL / double precision (PostgreSQL's processor
        # would need the column's type OID, which a plain select does not give here).
        return _raw_float
    processor = type_.dialect_impl(dialect).result_processor(dialect, None)
    if isinstance(type_, UTCDateTime) and dialect.name == "sqlite":
        return _sqlite_time(processor)
    parsed = _converter(type_)
    if processor is None:
        return parsed
    if parsed is None:
        return processor
    return lambda value, _p=processor, _c=parsed: _c(_p(value))


def _native_kind(column: Any, dialect: Dialect) -> str | None:
    """The native walker's form of a column (``_leafwalk/``: v, f, S, t, j, b): the
    very leaf form :func:`_raw_converter` gives, byte for byte (the sealer stores the
    walker's hashes as they are). None when the walker has no such form: any other
    TypeDecorator (its own result processing), a JSON deserializer other than
    ``json.loads``, a Boolean, Numeric, Enum and the like."""
    type_ = column.type
    if isinstance(type_, SeedType):
        return "S"
    if isinstance(type_, UTCDateTime):
        return "t"
    if isinstance(type_, TypeDecorator):
        return None
    if isinstance(type_, Float):
        return None if type_.asdecimal else "f"
    if isinstance(type_, JSON):
        deserializer = getattr(dialect, "_json_deserializer", None)
        return "j" if deserializer in (None, json.loads) else None
    processor = type_.dialect_impl(dialect).result_processor(dialect, None)
    if processor is not None:
        return None
    if type(type_) is LargeBinary:
        return "b"
    if isinstance(type_, Integer | String) and not isinstance(type_, Boolean):
        return "v"  # the driver's value as it is, like the Python path
    return None


def _raw_float(value: Any) -> Any:
    return None if value is None else float(value)


def _raw_seed(value: Any) -> Any:
    return None if value is None else str(int(value) + _SEED_OFFSET)


@dataclass(frozen=True)
class EntryType:
    """A kind of log entry: one append-only table whose rows are sealed as leaves."""

    name: str
    version: int
    table: Table
    id_column: str = "id"
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _converted: tuple[tuple[str, Converter], ...] = field(init=False, repr=False, compare=False)
    _raw: dict[str, tuple[tuple[str, Converter], ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        names = tuple(c.name for c in self.table.columns)
        converted = tuple(
            (c.name, conv) for c in self.table.columns if (conv := _converter(c.type)) is not None
        )
        object.__setattr__(self, "_names", names)
        object.__setattr__(self, "_converted", converted)

    @property
    def column_names(self) -> tuple[str, ...]:
        return self._names

    @property
    def id_position(self) -> int:
        """The id column's position among :attr:`column_names`."""
        return self._names.index(self.id_column)

    def row_fields(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Every column of ``row`` in its fixed leaf form."""
        fields = {name: row[name] for name in self._names}
        for name, convert in self._converted:
            fields[name] = convert(fields[name])
        return fields

    def row_fields_from_values(self, values: Any) -> dict[str, Any]:
        """:meth:`row_fields` for a row given as values in table column order."""
        fields = dict(zip(self._names, values, strict=True))
        for name, convert in self._converted:
            fields[name] = convert(fields[name])
        return fields

    # -- the fast path: values as the driver returns them, no SQLAlchemy processing --

    def raw_columns(self, source: Any = None, *, prefix: str = "") -> list[Any]:
        """Columns of ``source`` (the table or an alias of it), in table order, selected
        without SQLAlchemy's result processing; read them with :meth:`row_fields_from_raw`."""
        source = self.table if source is None else source
        return [type_coerce(source.c[name], NullType()).label(prefix + name) for name in self._names]

    def row_fields_from_raw(self, values: Any, dialect: Dialect) -> dict[str, Any]:
        """:meth:`row_fields` for driver values (see :meth:`raw_columns`)."""
        converted = self._raw.get(dialect.name)
        if converted is None:
            converted = tuple(
                (c.name, conv) for c in self.table.columns if (conv := _raw_converter(c, dialect)) is not None
            )
            self._raw[dialect.name] = converted
        fields = dict(zip(self._names, values, strict=True))
        for name, convert in converted:
            fields[name] = convert(fields[name])
        return fields

    def native_kinds(self, dialect: Dialect) -> tuple[str, ...] | None:
        """Each column's form for the native walker, in table column order; None when
        some column has no native form (verify then takes the Python path)."""
        kinds = tuple(_native_kind(c, dialect) for c in self.table.columns)
        return None if None in kinds else kinds  # type: ignore[return-value]

    def leaf_pieces(self) -> tuple[bytes, bytes, bytes, tuple[tuple[bytes, str], ...]]:
        """The fixed bytes of this type's leaves around the index and the row columns:
        ``prefix INDEX middle ("name":VALUE, in key order) suffix``, with each column's
        key bytes (a comma before all but the first). Mirrors :meth:`leaf_bytes_from_fields`."""
        prefix = b'{"format":' + canonical_json(LEAF_FORMAT) + b',"index":'
        middle = b',"row":{'
        suffix = b'},"type":' + canonical_json(self.name) + b',"v":' + canonical_json(self.version) + b"}"
        names = sorted(self._names, key=lambda n: n.encode("utf-16-be"))
        keys = tuple(((b"," if i else b"") + canonical_json(n) + b":", n) for i, n in enumerate(names))
        return prefix, middle, suffix, keys

    def leaf_bytes(self, index: int, row: Mapping[str, Any]) -> bytes:
        return self.leaf_bytes_from_fields(index, self.row_fields(row))

    def leaf_bytes_from_fields(self, index: int, fields: dict[str, Any]) -> bytes:
        return canonical_bytes(
            {"format": LEAF_FORMAT, "v": self.version, "type": self.name, "index": index, "row": fields}
        )

    def leaf_hash(self, index: int, row: Mapping[str, Any]) -> bytes:
        return leaf_hash(self.leaf_bytes(index, row))


def joined_entries(
    types: Sequence[EntryType], head: Sequence[Any], row_columns: Callable[[EntryType, Any, str], list[Any]]
) -> tuple[list[Any], Any, list[int]]:
    """``log_entries`` outer-joined to the row of each entry type, for reading log
    entries with their rows: the columns to select (``head``, then each type's
    ``row_columns(entry_type, alias, prefix)``), the FROM clause, and where each type's
    columns start among the selected ones. A row's columns are NULL unless the entry
    is of its type."""
    columns = list(head)
    joined: Any = log_entries
    starts: list[int] = []
    for i, et in enumerate(types):
        alias = et.table.alias(f"t{i}")
        starts.append(len(columns))
        columns.extend(row_columns(et, alias, f"t{i}_"))
        joined = joined.outerjoin(
            alias,
            and_(log_entries.c.entry_type == et.name, alias.c[et.id_column] == log_entries.c.entry_id),
        )
    return columns, joined, starts


RECORD = EntryType("record", 1, records)
#: Defined for the fingerprint layer to register when its rows are append-only.
FINGERPRINT = EntryType("fingerprint", 1, fingerprints, id_column="record_id")

#: One stored replay result of an audit run (ledger.audit); rows are never updated.
AUDIT_RESULT = EntryType("audit-result", 1, audit_results)

#: The runtime a record's output was made in (ledger.store.environments); append-only.
ENVIRONMENT = EntryType("environment", 1, record_environments, id_column="record_id")

#: Entry types the sealer seals and the verifier knows, in sealing order.
ENTRY_TYPES: dict[str, EntryType] = {
    RECORD.name: RECORD,
    AUDIT_RESULT.name: AUDIT_RESULT,
    ENVIRONMENT.name: ENVIRONMENT,
}


def register(entry_type: EntryType) -> None:
    """Add an entry type to the log (idempotent for the same definition)."""
    existing = ENTRY_TYPES.get(entry_type.name)
    if existing is not None and existing != entry_type:
        raise ValueError(f"entry type {entry_type.name!r} is already registered differently")
    if len(entry_type.name) > 32:
        raise ValueError("entry type names are at most 32 characters")
    ENTRY_TYPES[entry_type.name] = entry_type


def entry_type(name: str) -> EntryType:
    try:
        return ENTRY_TYPES[name]
    except KeyError:
        raise KeyError(name) from None
