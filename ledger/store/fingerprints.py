"""Fingerprints in the ``fingerprints`` table, and reverse lookup.

Reverse lookup ("which record made this image?"):

1. exact: ``pixel_sha256`` equal (indexed);
2. multi-index Hamming search on the 64-bit phash: split into four 16-bit chunks
   (``phash_c0`` … ``phash_c3``). Any stored hash within distance r of the query
   agrees with it within floor(r/4) bits on at least one chunk (pigeonhole), so the
   candidates are the rows where some chunk column is IN (the query chunk and all its
   ≤ floor(r/4)-bit flips). Each chunk index also holds ``phash`` and ``record_id``,
   so the probe never touches the table rows;
3. an exact re-check of the full 64-bit distance, in Python, identical on SQLite and
   PostgreSQL. PostgreSQL also filters by ``bit_count(phash # q)`` in the server
   (14+) so only matches cross the wire; SQLite has neither XOR nor popcount.

phash and dhash are stored as signed BIGINT: the unsigned 64 bits reinterpreted
(values ≥ 2^63 become negative), which both engines store exactly.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import combinations
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Integer,
    RowMapping,
    any_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, BIT
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ledger.errors import UsageError
from ledger.fingerprint import Comparison, Fingerprint, Verdict, compare, hamming, phash_chunks
from ledger.store.schema import fingerprints

#: Largest radius the indexed search accepts (4 chunks × 4 flipped bits: 2,517 probe
#: values per chunk, within both engines' bound-parameter limits).
MAX_RADIUS = 16
_CHUNKS = ("phash_c0", "phash_c1", "phash_c2", "phash_c3")
_2_63 = 1 << 63
_2_64 = 1 << 64


@dataclass(frozen=True)
class Match:
    """One record whose stored output matches a query image, with the comparison."""

    record_id: int
    comparison: Comparison

    @property
    def verdict(self) -> Verdict:
        return self.comparison.verdict

    def sort_key(self) -> tuple[int, int, int, int]:
        c = self.comparison
        return (c.verdict.rank, c.phash_distance, c.dhash_distance, self.record_id)


def to_signed(value: int) -> int:
    return value - _2_64 if value >= _2_63 else value


def to_unsigned(value: int) -> int:
    return value + _2_64 if value < 0 else value


def to_row(record_id: int, fp: Fingerprint, created_at: datetime) -> dict[str, Any]:
    c0, c1, c2, c3 = fp.phash_chunks
    return {
        "record_id": record_id,
        "version": fp.version,
        "media_type": fp.media_type,
        "file_sha256": fp.file_sha256,
        "pixel_sha256": fp.pixel_sha256,
        "width": fp.width,
        "height": fp.height,
        "phash": to_signed(fp.phash),
        "dhash": to_signed(fp.dhash),
        "phash_c0": c0,
        "phash_c1": c1,
        "phash_c2": c2,
        "phash_c3": c3,
        "thumbnail": fp.thumbnail,
        "created_at": created_at,
    }


def from_row(m: Mapping[str, Any] | RowMapping) -> Fingerprint:
    return Fingerprint(
        version=m["version"],
        media_type=m["media_type"],
        file_sha256=m["file_sha256"],
        pixel_sha256=m["pixel_sha256"],
        width=int(m["width"]),
        height=int(m["height"]),
        phash=to_unsigned(int(m["phash"])),
        dhash=to_unsigned(int(m["dhash"])),
        thumbnail=bytes(m["thumbnail"]),
    )


def insert_ignoring_existing(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert fingerprint rows; a record that already has one keeps it."""
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect == "postgresql":
        stmt: Any = pg_insert(fingerprints).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite_insert(fingerprints).on_conflict_do_nothing()
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        stmt = insert(fingerprints)
    conn.execute(stmt, list(rows))


def replace(conn: Connection, row: Mapping[str, Any]) -> None:
    conn.execute(delete(fingerprints).where(fingerprints.c.record_id == row["record_id"]))
    conn.execute(insert(fingerprints), [dict(row)])


def get(conn: Connection, record_id: int) -> Fingerprint | None:
    row = conn.execute(select(fingerprints).where(fingerprints.c.record_id == record_id)).first()
    return None if row is None else from_row(row._mapping)


def get_many(conn: Connection, record_ids: Iterable[int]) -> dict[int, Fingerprint]:
    ids = sorted(set(record_ids))
    found: dict[int, Fingerprint] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for row in conn.execute(select(fingerprints).where(fingerprints.c.record_id.in_(chunk))):
            found[int(row.record_id)] = from_row(row._mapping)
    return found


def flips(value: int, max_bits: int, width: int = 16, *, min_bits: int = 0) -> list[int]:
    """Every value that differs from ``value`` in ``min_bits`` … ``max_bits`` bits."""
    return [value ^ mask for mask in _masks(min_bits, max_bits, width)]


@functools.cache
def _masks(min_bits: int, max_bits: int, width: int = 16) -> tuple[int, ...]:
    return tuple(
        sum(1 << p for p in positions)
        for k in range(min_bits, max_bits + 1)
        for positions in combinations(range(width), k)
    )


def check_radius(radius: int) -> None:
    if not 0 <= radius <= MAX_RADIUS:
        raise UsageError(f"radius must be between 0 and {MAX_RADIUS} bits, not {radius}")


def within_radius(conn: Connection, phash: int, radius: int) -> dict[int, int]:
    """record_id -> phash distance for every stored phash within ``radius`` (exact).

    With s = radius // 4, any match has a chunk within s bits of the query's (the
    distances of the four chunks add up to at most radius). When radius = 4s that
    splits further: either some chunk is within s − 1 bits, or all four chunks are
    exactly s bits away. The second case is probed through one chunk index and checked
    on the other three chunks computed from ``phash``, which the index also holds, so
    at radius 8 the probes touch ~8× fewer rows than plain ≤ s-bit probes.
    """
    check_radius(radius)
    postgres = conn.dialect.name == "postgresql"
    statement, conditions = _lookup_statement(postgres, radius)
    chunks = phash_chunks(phash)
    params: dict[str, Any] = {"q": to_signed(phash)} if postgres else {}
    for name, chunk, low, high in conditions:
        values = flips(chunks[chunk], high, min_bits=low)
        if postgres:
            params[name] = values
        else:
            params.update({f"{name}_{k}": v for k, v in enumerate(values)})
    found: dict[int, int] = {}
    for record_id, stored in conn.execute(statement, params).all():
        # The exact re-check, the same on both engines (and it drops duplicates).
        distance = hamming(phash, to_unsigned(stored))
        if distance <= radius:
            found[record_id] = distance
    return found


_Condition = tuple[str, int, int, int]  # parameter name, chunk index, min bits, max bits


@functools.cache
def _lookup_statement(postgres: bool, radius: int) -> tuple[Any, list[_Condition]]:
    """The probe statement for one radius, built once with fixed bound parameters
    (the number of flipped values depends only on the radius), so SQLAlchemy compiles
    it once and every lookup only binds values."""
    per_chunk, rest = divmod(radius, 4)
    columns = [fingerprints.c[name] for name in _CHUNKS]
    probes: list[list[tuple[Any, int, int, int]]] = []
    if rest == 0 and per_chunk > 0:
        probes += [[(columns[i], i, 0, per_chunk - 1)] for i in range(4)]
        derived = [columns[0], *(_chunk_of_phash(i) for i in (1, 2, 3))]
        probes.append([(derived[i], i, per_chunk, per_chunk) for i in range(4)])
    else:
        probes += [[(columns[i], i, 0, per_chunk)] for i in range(4)]
    conditions: list[_Condition] = []
    selects = []
    for p, probe in enumerate(probes):
        where = []
        for c, (expr, chunk, low, high) in enumerate(probe):
            name = f"v{p}_{c}"
            conditions.append((name, chunk, low, high))
            if postgres:
                # One array parameter instead of hundreds of scalars.
                where.append(expr == any_(bindparam(name, type_=ARRAY(Integer))))
            else:
                count = len(_masks(low, high))
                where.append(expr.in_([bindparam(f"{name}_{k}", type_=Integer) for k in range(count)]))
        if postgres:
            # The distance computed in the server (PostgreSQL 14+): only matches travel.
            where.append(_pg_distance() <= radius)
        selects.append(select(fingerprints.c.record_id, fingerprints.c.phash).where(*where))
    return union_all(*selects), conditions


def _chunk_of_phash(i: int) -> Any:
    """Chunk i computed from the stored (signed) phash; the mask drops sign fill."""
    # An inline shift count: PostgreSQL has bigint >> integer but no bigint >> bigint.
    shift = literal_column(str(48 - 16 * i), Integer)
    return fingerprints.c.phash.bitwise_rshift(shift).bitwise_and(literal_column("65535", Integer))


def _pg_distance() -> Any:
    xor = fingerprints.c.phash.op("#")(bindparam("q", type_=BigInteger))
    return func.bit_count(cast(xor, BIT(64)))


def within_radius_full_scan(conn: Connection, phash: int, radius: int) -> dict[int, int]:
    """The same answer as :func:`within_radius` by reading every row (baseline, tests)."""
    found: dict[int, int] = {}
    rows = conn.execution_options(yield_per=50_000).execute(
        select(fingerprints.c.record_id, fingerprints.c.phash).where(fingerprints.c.phash.is_not(None))
    )
    for record_id, stored in rows:
        distance = hamming(phash, to_unsigned(int(stored)))
        if distance <= radius:
            found[int(record_id)] = distance
    return found


def with_pixel_hash(conn: Connection, pixel_sha256: str) -> list[int]:
    rows = conn.execute(select(fingerprints.c.record_id).where(fingerprints.c.pixel_sha256 == pixel_sha256))
    return [int(r) for (r,) in rows]


def find(conn: Connection, fp: Fingerprint, *, radius: int, limit: int | None = None) -> list[Match]:
    """Records whose fingerprint matches ``fp``: equal pixels, or phash within ``radius``;
    each compared in full, best first."""
    ids = set(with_pixel_hash(conn, fp.pixel_sha256)) | set(within_radius(conn, fp.phash, radius))
    stored = get_many(conn, ids)
    matches = sorted(
        (Match(record_id, compare(fp, other)) for record_id, other in stored.items()),
        key=Match.sort_key,
    )
    return matches if limit is None else matches[:limit]
