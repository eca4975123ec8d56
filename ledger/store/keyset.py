"""The statement of a newest-first keyset page of records, fast at any selectivity.

``WHERE filter ORDER BY id DESC LIMIT k`` has two good plans: walk the records newest
first and test each row (cheap when matches are common, a full scan when they are
rare), or walk an index that yields the matches already in id order (cheap either way).

- Equality filters get the second from the (column, id) indexes (schema.py).
- A tag gets it from record_tags' (tag, record_id) index: the page is driven from
  there and joined to records by primary key. With several tags, the rarest drives
  (capped counts on that index), the others are probed per row.
- A range (seed_min/seed_max, since/until) cannot yield id order. PostgreSQL's planner
  has statistics and chooses; SQLite keeps none unless ANALYZE ran, and has no range
  histograms without STAT4, so a count on the range's index, capped at ``PROBE_CAP``,
  decides and is passed on with SQLite's ``likelihood()``: few matches below the
  cursor, read them by that index and sort (at most ``PROBE_CAP`` rows; this wins over
  an equality's index and a tag too); many, walk newest first (about
  k × N / ``PROBE_CAP`` rows when matches are spread over the ids). The count walks
  the range's index: a cursor far below most of a wide range's matches makes it long.

- A prompt substring (``lower(prompt) LIKE '%text%'``) has a trigram index (migration
  0007). PostgreSQL's planner uses its pg_trgm GIN index for the filter as written.
  On SQLite, for text of 3 characters or more, a phrase query on the FTS5 trigram
  table (case-folded, so it finds a superset of the filter's matches; the filter is
  still applied) counts the candidates below the cursor, capped at ``PROBE_CAP``: few,
  the page is read from those ids (this wins over everything else, like a rare range);
  many, records are walked newest first as before. Shorter text is tested row by row.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import (
    ColumnElement,
    Connection,
    FromClause,
    Select,
    column,
    func,
    literal,
    literal_column,
    select,
    table,
)

from ledger.store.filters import RecordFilter, tag_clause
from ledger.store.schema import PROMPT_FTS, record_tags, records

PROBE_CAP = 5000
_RARE, _COMMON = "0.0001", "0.9999"


def page_statement(
    conn: Connection, where: RecordFilter, *, before: int | None, limit: int
) -> Select[tuple[object, ...]]:
    """Records matching ``where`` with id < ``before``, newest first, ``limit`` rows."""
    clauses, range_is_rare = where.column_clauses(), False
    if conn.dialect.name == "sqlite":
        clauses, range_is_rare = _sqlite_ranges(conn, where, before)
        rare_prompt = _sqlite_rare_prompt(conn, where.prompt, before)
        if rare_prompt is not None:
            clauses = [_likely(clause, _COMMON) for clause in clauses] + [rare_prompt]
            range_is_rare = True  # the prompt's candidates drive, not a tag
    if where.tags and not range_is_rare:
        drive = _rarest_tag(conn, where.tags)
        t = record_tags.c
        others = [tag_clause(tag, below=before) for tag in where.tags if tag != drive]
        stmt = (
            select(records)
            .select_from(record_tags.join(records, records.c.id == t.record_id))
            .where(t.tag == drive, *clauses, *others)
        )
        if before is not None:
            # on both sides of the join: PostgreSQL's merge join does not carry it over
            stmt = stmt.where(t.record_id < before, records.c.id < before)
        return stmt.order_by(t.record_id.desc()).limit(limit)
    stmt = select(records).where(*clauses, *(tag_clause(tag, below=before) for tag in where.tags))
    if before is not None:
        stmt = stmt.where(records.c.id < before)
    return stmt.order_by(records.c.id.desc()).limit(limit)


def _capped_count(conn: Connection, *clauses: ColumnElement[bool], table: FromClause = records) -> int:
    """How many rows match, counting no further than ``PROBE_CAP``."""
    inner = select(literal(1)).select_from(table).where(*clauses).limit(PROBE_CAP)
    return int(conn.execute(select(func.count()).select_from(inner.subquery())).scalar_one())


def _rarest_tag(conn: Connection, tags: tuple[str, ...]) -> str:
    if len(tags) == 1:
        return tags[0]
    counts = {tag: _capped_count(conn, record_tags.c.tag == tag, table=record_tags) for tag in tags}
    return min(tags, key=counts.__getitem__)


def _sqlite_ranges(
    conn: Connection, where: RecordFilter, before: int | None
) -> tuple[list[ColumnElement[bool]], bool]:
    """The column clauses, each range marked rare or common for SQLite's planner, and
    whether one range is rare (then its index drives the page, even under a tag)."""
    c = records.c
    seed = [c.seed >= where.seed_min] if where.seed_min is not None else []
    seed += [c.seed <= where.seed_max] if where.seed_max is not None else []
    created = [c.created_at >= where.since] if where.since is not None else []
    created += [c.created_at < where.until] if where.until is not None else []
    ranges = [group for group in (seed, created) if group]
    others = replace(where, seed_min=None, seed_max=None, since=None, until=None).column_clauses()
    if not ranges:
        return others, False
    # Matches below the cursor, counted on the range's own index (steered there).
    below = [_likely(c.id < before, _COMMON)] if before is not None else []
    counts = [_capped_count(conn, *(_likely(r, _RARE) for r in group), *below) for group in ranges]
    rarest = min(range(len(ranges)), key=counts.__getitem__)
    rare = counts[rarest] < PROBE_CAP
    marked: list[ColumnElement[bool]] = []
    for number, group in enumerate(ranges):
        weight = _RARE if rare and number == rarest else _COMMON
        marked.extend(_likely(clause, weight) for clause in group)
    if rare:  # the range's index beats an equality's too (SQLite prefers equalities)
        others = [_likely(clause, _COMMON) for clause in others]
    return others + marked, rare


def _sqlite_rare_prompt(
    conn: Connection, prompt: str | None, before: int | None
) -> ColumnElement[bool] | None:
    """``records.id IN (the FTS5 candidates below the cursor)`` when they are fewer than
    ``PROBE_CAP``, else None (also for text under 3 characters or a ledger without the table)."""
    if prompt is None or len(prompt) < 3 or not _has_prompt_fts(conn):
        return None
    fts = table(PROMPT_FTS, column("rowid"))
    # a phrase of the text's trigrams: a substring, case-folded; no LIKE wildcards to escape
    phrase = '"' + prompt.lower().replace('"', '""') + '"'
    found = select(fts.c.rowid).where(literal_column(PROMPT_FTS).op("MATCH")(phrase))
    if before is not None:
        found = found.where(fts.c.rowid < before)
    inner = found.limit(PROBE_CAP).subquery()
    if int(conn.execute(select(func.count()).select_from(inner)).scalar_one()) >= PROBE_CAP:
        return None
    return _likely(records.c.id.in_(found), _RARE)


def _has_prompt_fts(conn: Connection) -> bool:
    query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return conn.exec_driver_sql(query, (PROMPT_FTS,)).first() is not None


def _likely(clause: ColumnElement[bool], weight: str) -> ColumnElement[bool]:
    """SQLite's planner hint: ``clause`` is true for about ``weight`` of the rows."""
    return func.likelihood(clause, literal_column(weight))
