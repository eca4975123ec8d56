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

Every modality shares the table (``modality``, and its facts in ``detail``). A video's
sampled frames also go to ``fingerprint_frames``, chunked and indexed the same way, so
an image query finds the videos it is a frame of; lookups only ever compare a query
with fingerprints of its own modality (or, for an image, with video frames).
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
from ledger.fingerprint._payload import from_payload, to_payload
from ledger.store.schema import fingerprint_frames, fingerprints

#: Largest radius the indexed search accepts (4 chunks × 4 flipped bits: 2,517 probe
#: values per chunk, within both engines' bound-parameter limits).
MAX_RADIUS = 16
_CHUNKS = ("phash_c0", "phash_c1", "phash_c2", "phash_c3")
_2_63 = 1 << 63
_2_64 = 1 << 64


@dataclass(frozen=True)
class Match:
    """One record whose stored output matches a query, with the comparison.

    ``frame_time_s`` is set when an image query matched a sampled frame of a video
    record: the comparison is then the image against that frame.
    """

    record_id: int
    comparison: Comparison
    frame_time_s: float | None = None

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
    """The ``fingerprints`` row; a video's sampled frames ride along under ``"frames"``
    (written to ``fingerprint_frames`` by :func:`insert_ignoring_existing`/:func:`replace`)."""
    c0, c1, c2, c3 = fp.phash_chunks
    row = {
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
        "modality": fp.modality,
        "detail": to_payload(fp.detail),
    }
    if fp.modality == "video":
        row["frames"] = frame_rows(record_id, fp)
    return row


def frame_rows(record_id: int, fp: Fingerprint) -> list[dict[str, Any]]:
    detail = fp.detail
    rows = []
    for k, (t, phash) in enumerate(zip(detail.sample_times, detail.sample_phash, strict=True)):
        c0, c1, c2, c3 = phash_chunks(phash)
        rows.append(
            {
                "record_id": record_id,
                "sample": k,
                "time_s": t,
                "phash": to_signed(phash),
                "phash_c0": c0,
                "phash_c1": c1,
                "phash_c2": c2,
                "phash_c3": c3,
            }
        )
    return rows


def from_row(m: Mapping[str, Any]) -> Fingerprint:
    modality = m.get("modality") or "image"
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
        modality=modality,
        detail=from_payload(modality, m.get("detail")),
    )


def insert_ignoring_existing(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert fingerprint rows; a record that already has one keeps it."""
    if not rows:
        return
    main = [{k: v for k, v in row.items() if k != "frames"} for row in rows]
    frames = {row["record_id"]: row["frames"] for row in rows if row.get("frames")}
    if not frames:
        conn.execute(_insert_ignoring(conn, fingerprints), main)
        return
    # Frames only for the fingerprints this call stored (a record keeps its own).
    inserted = {
        int(r)
        for (r,) in conn.execute(
            _insert_ignoring(conn, fingerprints).returning(fingerprints.c.record_id), main
        ).all()
    }
    frame_list = [f for rid, rows_of in frames.items() if rid in inserted for f in rows_of]
    if frame_list:
        conn.execute(insert(fingerprint_frames), frame_list)


def _insert_ignoring(conn: Connection, table: Any) -> Any:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return pg_insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite_insert(table).on_conflict_do_nothing()
    return insert(table)  # pragma: no cover - only SQLite and PostgreSQL are supported


def replace(conn: Connection, row: Mapping[str, Any]) -> None:
    rid = row["record_id"]
    conn.execute(delete(fingerprint_frames).where(fingerprint_frames.c.record_id == rid))
    conn.execute(delete(fingerprints).where(fingerprints.c.record_id == rid))
    conn.execute(insert(fingerprints), [{k: v for k, v in row.items() if k != "frames"}])
    if row.get("frames"):
        conn.execute(insert(fingerprint_frames), list(row["frames"]))


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


def within_radius(conn: Connection, phash: int, radius: int, *, frames: bool = False) -> dict[int, int]:
    """record_id -> phash distance for every stored phash within ``radius`` (exact).

    With s = radius // 4, any match has a chunk within s bits of the query's (the
    distances of the four chunks add up to at most radius). When radius = 4s that
    splits further: either some chunk is within s − 1 bits, or all four chunks are
    exactly s bits away. The second case is probed through one chunk index and checked
    on the other three chunks computed from ``phash``, which the index also holds, so
    at radius 8 the probes touch ~8× fewer rows than plain ≤ s-bit probes.

    ``frames`` searches the sampled video frames instead (record_id -> the distance of
    its nearest frame).
    """
    check_radius(radius)
    postgres = conn.dialect.name == "postgresql"
    statement, conditions = _lookup_statement(postgres, radius, frames)
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
        if distance <= radius and distance < found.get(record_id, radius + 1):
            found[record_id] = distance
    return found


_Condition = tuple[str, int, int, int]  # parameter name, chunk index, min bits, max bits


@functools.cache
def _lookup_statement(postgres: bool, radius: int, frames: bool = False) -> tuple[Any, list[_Condition]]:
    """The probe statement for one radius, built once with fixed bound parameters
    (the number of flipped values depends only on the radius), so SQLAlchemy compiles
    it once and every lookup only binds values."""
    table = fingerprint_frames if frames else fingerprints
    per_chunk, rest = divmod(radius, 4)
    columns = [table.c[name] for name in _CHUNKS]
    probes: list[list[tuple[Any, int, int, int]]] = []
    if rest == 0 and per_chunk > 0:
        probes += [[(columns[i], i, 0, per_chunk - 1)] for i in range(4)]
        derived = [columns[0], *(_chunk_of_phash(table, i) for i in (1, 2, 3))]
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
            where.append(_pg_distance(table) <= radius)
        selects.append(select(table.c.record_id, table.c.phash).where(*where))
    return union_all(*selects), conditions


def _chunk_of_phash(table: Any, i: int) -> Any:
    """Chunk i computed from the stored (signed) phash; the mask drops sign fill."""
    # An inline shift count: PostgreSQL has bigint >> integer but no bigint >> bigint.
    shift = literal_column(str(48 - 16 * i), Integer)
    return table.c.phash.bitwise_rshift(shift).bitwise_and(literal_column("65535", Integer))


def _pg_distance(table: Any) -> Any:
    xor = table.c.phash.op("#")(bindparam("q", type_=BigInteger))
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
    """Records whose fingerprint matches ``fp``: equal content, or phash within
    ``radius``; each compared in full, best first. Audio and 3D have no usable
    phash index (their phash is a spectrogram's or a projection's): every stored
    fingerprint of that modality is compared. An image also finds the video records
    one of whose sampled frames it matches."""
    ids = set(with_pixel_hash(conn, fp.pixel_sha256))
    if fp.modality in ("image", "video"):
        ids |= set(within_radius(conn, fp.phash, radius))
    else:
        ids |= set(_of_modality(conn, fp.modality))
    if fp.modality == "video":
        ids |= set(within_radius(conn, fp.phash, radius, frames=True))
    stored = get_many(conn, ids)
    matches = [
        Match(rid, compare(fp, other)) for rid, other in stored.items() if other.modality == fp.modality
    ]
    if fp.modality == "image":
        matches += _frame_matches(conn, fp, radius)
    matches.sort(key=Match.sort_key)
    return matches if limit is None else matches[:limit]


def _of_modality(conn: Connection, modality: str) -> list[int]:
    rows = conn.execute(select(fingerprints.c.record_id).where(fingerprints.c.modality == modality))
    return [int(r) for (r,) in rows]


def _frame_matches(conn: Connection, fp: Fingerprint, radius: int) -> list[Match]:
    """The image against the nearest sampled frame of every video within ``radius``."""
    near = within_radius(conn, fp.phash, radius, frames=True)
    out = []
    for rid, video in get_many(conn, near).items():
        detail = video.detail
        if video.modality != "video" or detail is None:
            continue
        best = min(
            range(len(detail.sample_phash)),
            key=lambda k: (
                detail.sample_pixel_sha256[k] != fp.pixel_sha256,
                hamming(fp.phash, detail.sample_phash[k]),
            ),
        )
        frame = detail.frame_fingerprint(best, video.width, video.height)
        out.append(Match(rid, compare(fp, frame), frame_time_s=detail.sample_times[best]))
    return out
