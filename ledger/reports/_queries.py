"""The SQL statements a report runs (the audit history's are in ``_history``, the
runtime environments' in ``_queries_environments``).

Aggregates are GROUP BY queries in the database; per-record sections are keyset
pages (``id > last ORDER BY id LIMIT n``), so a report's memory does not grow with
the ledger. The latest audit result of a record is the one with the highest id.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Dialect,
    String,
    and_,
    case,
    func,
    inspect,
    literal,
    select,
    type_coerce,
)
from sqlalchemy.types import TypeDecorator

from ledger.store.filters import RecordFilter
from ledger.store.schema import (
    audit_results,
    checkpoints,
    fingerprints,
    log_entries,
    log_state,
    record_environments,
    record_warnings,
    records,
)

PAGE_SIZE = 2000


class _Time(TypeDecorator[datetime]):
    """UTC times read without SQLAlchemy's regex parse of SQLite's text form (the hot
    spot of a 100,000-row report); PostgreSQL's driver already returns datetimes."""

    impl = String
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        moment: datetime = value
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _time(column: Any, name: str) -> Any:
    return type_coerce(column, _Time()).label(name)


r = records.c
ar = audit_results.c

#: Columns of the records table a report shows (never params/response: they may
#: hold base64 output payloads).
RECORD_COLUMNS = (
    r.id,
    _time(r.created_at, "created_at"),
    r.modality,
    r.model,
    r.scheduler,
    r.scheduler_requested,
    r.backend,
    r.source,
    r.status,
    r.seed,
    r.seed_origin,
    r.prompt,
    r.output_format,
    r.width,
    r.height,
)

_HAS_SEED = case((r.seed.is_(None), 0), else_=1).label("has_seed")


def has_tables(conn: Connection, *names: str) -> bool:
    inspector = inspect(conn)
    return all(inspector.has_table(name) for name in names)


_ar2 = audit_results.alias("ar_latest")


def _latest_result_id() -> Any:
    """Correlated: the id of a record's latest audit result (index on record_id).

    ``max(id + 0)``, not ``max(id)``: planners turn a bare max(id) into a backward walk
    of the primary key filtered on record_id, which reads every newer result for each
    record when statistics are missing (e.g. right after a bulk load)."""
    latest = func.max(_ar2.c.id + 0)
    return select(latest).where(_ar2.c.record_id == r.id).correlate(records).scalar_subquery()


def _latest_per_record() -> Any:
    return (
        select(ar.record_id.label("record_id"), func.max(ar.id).label("result_id"))
        .group_by(ar.record_id)
        .subquery("latest")
    )


# -- summary ----------------------------------------------------------------------------


def summary_groups(conn: Connection, where: RecordFilter) -> list[dict[str, Any]]:
    """Counts per distinct (modality, model, scheduler, backend, source, status, seed?)."""
    keys = (
        r.modality,
        r.model,
        r.scheduler,
        r.scheduler_requested,
        r.backend,
        r.source,
        r.status,
        _HAS_SEED,
    )
    stmt = select(*keys, func.count().label("n")).where(where.where()).group_by(*keys)
    return [dict(row._mapping) for row in conn.execute(stmt)]


def time_span(conn: Connection, where: RecordFilter) -> tuple[Any, Any]:
    row = conn.execute(select(func.min(r.created_at), func.max(r.created_at)).where(where.where())).one()
    return row[0], row[1]


# -- audit --------------------------------------------------------------------------------


def audit_groups(conn: Connection, where: RecordFilter) -> list[dict[str, Any]]:
    """Latest result per selected record, counted by model, scheduler, verdict, outcome."""
    latest = _latest_per_record()
    keys = (r.model, r.scheduler, r.scheduler_requested, ar.verdict, ar.outcome)
    stmt = (
        select(*keys, func.count().label("n"))
        .select_from(
            records.join(latest, latest.c.record_id == r.id).join(audit_results, ar.id == latest.c.result_id)
        )
        .where(where.where())
        .group_by(*keys)
    )
    return [dict(row._mapping) for row in conn.execute(stmt)]


# -- warnings -----------------------------------------------------------------------------


def warning_groups(conn: Connection, where: RecordFilter) -> list[dict[str, Any]]:
    w = record_warnings.c
    stmt = (
        select(w.code, func.max(w.severity).label("severity"), func.count().label("n"))
        .join(records, r.id == w.record_id)
        .where(where.where())
        .group_by(w.code)
        .order_by(func.count().desc(), w.code)
    )
    return [dict(row._mapping) for row in conn.execute(stmt)]


def warned_count(conn: Connection, where: RecordFilter) -> int:
    """Records of the selection with at least one warning."""
    w = record_warnings.c
    warned = select(w.record_id).distinct().subquery()
    stmt = select(func.count()).select_from(records.join(warned, warned.c.record_id == r.id))
    return int(conn.execute(stmt.where(where.where())).scalar_one())


def iter_warning_records(
    conn: Connection, where: RecordFilter, code: str, *, limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """Records of the selection carrying ``code``, in id order, keyset-paged.

    Pages walk the (record_id, code) primary key from the last id: ``code || ''``
    keeps planners off the code index, whose use would sort every page."""
    w = record_warnings.c
    stmt = (
        select(*RECORD_COLUMNS, w.detail)
        .select_from(record_warnings.join(records, r.id == w.record_id))
        .where((w.code + "") == code, where.where())
    )
    for page in keyset_pages(conn, stmt, w.record_id, "id", limit=limit):
        yield from page


def iter_warning_ids(conn: Connection, where: RecordFilter, code: str) -> Iterator[int]:
    """Only the ids of :func:`iter_warning_records` (the JSON risk register lists them all)."""
    w = record_warnings.c
    clauses = where.clauses()
    last_id: int | None = None
    while True:
        stmt = select(w.record_id).where((w.code + "") == code)
        if clauses:
            stmt = stmt.join(records, r.id == w.record_id).where(*clauses)
        if last_id is not None:
            stmt = stmt.where(w.record_id > last_id)
        page = conn.execute(stmt.order_by(w.record_id).limit(10 * PAGE_SIZE)).scalars().all()
        yield from page
        if len(page) < 10 * PAGE_SIZE:
            return
        last_id = page[-1]


def keyset_pages(
    conn: Connection, stmt: Any, key: Any, name: str, *, limit: int | None = None
) -> Iterator[list[dict[str, Any]]]:
    """Pages of ``stmt`` in ``key`` order, ``key > last`` each time (``name``: the key's
    label in the rows), at most ``limit`` rows in all; no empty page."""
    last: Any = None
    left = limit
    while left is None or left > 0:
        size = PAGE_SIZE if left is None else min(PAGE_SIZE, left)
        page = stmt if last is None else stmt.where(key > last)
        rows = _dicts(conn.execute(page.order_by(key).limit(size)))
        if rows:
            yield rows
        if len(rows) < size:
            return
        last = rows[-1][name]
        if left is not None:
            left -= len(rows)


def _dicts(result: Any) -> list[dict[str, Any]]:
    keys = list(result.keys())
    # .all() fetches the page in one DBAPI call; iterating would call fetchone per row.
    return [dict(zip(keys, row, strict=True)) for row in result.all()]


def warnings_for(conn: Connection, ids: Sequence[int]) -> dict[int, list[str]]:
    if not ids:
        return {}
    w = record_warnings.c
    out: dict[int, list[str]] = {}
    rows = conn.execute(select(w.record_id, w.code).where(w.record_id.in_(ids)).order_by(w.record_id, w.code))
    for record_id, code in rows:
        out.setdefault(int(record_id), []).append(code)
    return out


# -- per-record rows ------------------------------------------------------------------------


def _record_pages(
    conn: Connection, where: RecordFilter, *, audits: bool, size: int = PAGE_SIZE
) -> Iterator[list[dict[str, Any]]]:
    """Keyset pages of selected records, each with the id of its latest audit result.

    The pages' related rows are then fetched by primary key (``IN`` the page's ids),
    one simple query per table: plans that stay index lookups on both engines, with
    or without planner statistics, where one big join per page did not."""
    latest = _latest_result_id() if audits else literal(None)
    last_id: int | None = None
    while True:
        stmt = select(*RECORD_COLUMNS, latest.label("latest_id")).where(where.where())
        if last_id is not None:
            stmt = stmt.where(r.id > last_id)
        page = _dicts(conn.execute(stmt.order_by(r.id).limit(size)))
        if not page:
            return
        yield page
        if len(page) < size:
            return
        last_id = page[-1]["id"]


def _by_key(conn: Connection, stmt: Any) -> dict[Any, dict[str, Any]]:
    """Rows keyed by their first column."""
    return {row["key"]: row for row in _dicts(conn.execute(stmt))}


def _results(conn: Connection, ids: list[int], columns: Sequence[Any], *, evidence: bool = False) -> Any:
    stmt = select(ar.id.label("key"), *columns).where(ar.id.in_(ids))
    if evidence:
        stmt = stmt.where(ar.outcome.in_(EVIDENCE_OUTCOMES))
    return _by_key(conn, stmt)


def _replay_environment(replay: Any) -> tuple[Any, Any]:
    """(replay environment, its differences from the record's) from a result's replay JSON."""
    if not isinstance(replay, dict):
        return None, None
    return replay.get("environment"), replay.get("environment_differences")


def environments_for(conn: Connection, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    e = record_environments.c
    rows = conn.execute(select(e.record_id, e.environment).where(e.record_id.in_(list(ids))))
    return {int(rid): dict(env) for rid, env in rows if isinstance(env, dict)}


def iter_record_rows(
    conn: Connection, where: RecordFilter, *, audits: bool, sealed: bool, environments: bool = False
) -> Iterator[list[dict[str, Any]]]:
    """Pages of record rows with fingerprint, latest audit result and leaf index; with
    ``environments``, audited records also get their recorded runtime environment and,
    when the latest replay was not identical, the replay's environment and differences."""
    f = fingerprints.c
    for page in _record_pages(conn, where, audits=audits):
        ids = [row["id"] for row in page]
        fps = _by_key(
            conn,
            select(f.record_id.label("key"), f.pixel_sha256, f.file_sha256).where(f.record_id.in_(ids)),
        )
        leaves: dict[Any, dict[str, Any]] = {}
        if sealed:
            le = log_entries.c
            leaves = _by_key(
                conn,
                select(le.entry_id.label("key"), le.leaf_index).where(
                    le.entry_type == "record", le.entry_id.in_(ids)
                ),
            )
        results: dict[Any, dict[str, Any]] = {}
        if audits:
            wanted = [row["latest_id"] for row in page if row["latest_id"] is not None]
            columns: tuple[Any, ...] = (
                ar.run_id.label("audit_run_id"),
                ar.verdict,
                ar.outcome,
                _time(ar.created_at, "audited_at"),
            )
            if environments:
                # The replay JSON only where it can name drift: not for identical replays.
                columns += (case((ar.verdict != "identical", ar.replay), else_=None).label("replay"),)
            results = _results(conn, wanted, columns)
        envs: dict[int, dict[str, Any]] = {}
        if environments and audits:
            envs = environments_for(conn, [row["id"] for row in page if row["latest_id"] is not None])
        for row in page:
            fp = fps.get(row["id"], {})
            result = results.get(row["latest_id"], {})
            row["pixel_sha256"] = fp.get("pixel_sha256")
            row["file_sha256"] = fp.get("file_sha256")
            row["leaf_index"] = leaves.get(row["id"], {}).get("leaf_index")
            for key in ("audit_run_id", "verdict", "outcome", "audited_at"):
                row[key] = result.get(key)
            row["environment"] = envs.get(row["id"])
            row["replay_environment"], row["environment_differences"] = _replay_environment(
                result.get("replay")
            )
        yield page


EVIDENCE_OUTCOMES = ("fail", "expected-drift")


def evidence_count(conn: Connection, where: RecordFilter) -> int:
    latest = _latest_per_record()
    stmt = (
        select(func.count())
        .select_from(
            records.join(latest, latest.c.record_id == r.id).join(audit_results, ar.id == latest.c.result_id)
        )
        .where(where.where(), ar.outcome.in_(EVIDENCE_OUTCOMES))
    )
    return int(conn.execute(stmt).scalar_one())


def iter_evidence(
    conn: Connection,
    where: RecordFilter,
    *,
    limit: int | None = None,
    thumbnails: bool = True,
    environments: bool = False,
) -> Iterator[dict[str, Any]]:
    """Failures and expected drift among the latest results, in result-id order.

    Keyset pages walk the results' primary key once; only failed or drifted results
    are checked for being their record's latest (one index lookup each), and only
    their records are read."""
    f = fingerprints.c
    x = audit_results.alias("ar_newer")
    is_latest = ar.id == select(func.max(x.c.id + 0)).where(x.c.record_id == ar.record_id).scalar_subquery()
    columns: list[Any] = [
        *RECORD_COLUMNS,
        ar.id.label("result_id"),
        ar.run_id,
        ar.verdict,
        ar.outcome,
        ar.distances,
        ar.error_code,
        ar.replay_pixel_sha256,
        ar.replay,
    ]
    if thumbnails:
        columns.extend([ar.replay_thumbnail, ar.replay.label("replay_facts")])  # a video's strip
    base = (
        select(*columns)
        .select_from(audit_results.join(records, r.id == ar.record_id))
        .where((ar.outcome + "").in_(EVIDENCE_OUTCOMES), is_latest, where.where())
    )
    for rows in keyset_pages(conn, base, ar.id, "result_id", limit=limit):
        fp_columns: list[Any] = [f.record_id.label("key"), f.pixel_sha256]
        if thumbnails:
            # the detail payload carries a video's frame strip (null for images)
            fp_columns.extend([f.thumbnail, f.detail.label("fingerprint_detail")])
        fps = _by_key(conn, select(*fp_columns).where(f.record_id.in_([row["id"] for row in rows])))
        envs = environments_for(conn, [row["id"] for row in rows]) if environments else {}
        for row in rows:
            fp = fps.get(row["id"], {})
            row["pixel_sha256"] = fp.get("pixel_sha256")
            row["thumbnail"] = fp.get("thumbnail")
            row["fingerprint_detail"] = fp.get("fingerprint_detail")
            row["environment"] = envs.get(row["id"])
            row["replay_environment"], row["environment_differences"] = _replay_environment(
                row.pop("replay", None)
            )
            yield row


# -- integrity ------------------------------------------------------------------------------


def latest_checkpoint(conn: Connection) -> dict[str, Any] | None:
    row = conn.execute(select(checkpoints).order_by(checkpoints.c.size.desc()).limit(1)).first()
    return dict(row._mapping) if row else None


def checkpoint_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(checkpoints)).scalar_one())


def log_size(conn: Connection) -> int:
    size = conn.execute(select(log_state.c.size).where(log_state.c.id == 1)).scalar()
    return int(size or 0)


def sealed_record_count(conn: Connection, where: RecordFilter) -> int:
    le = log_entries.c
    stmt = (
        select(func.count())
        .select_from(records.join(log_entries, and_(le.entry_type == "record", le.entry_id == r.id)))
        .where(where.where())
    )
    return int(conn.execute(stmt).scalar_one())


def iter_leaf_hashes(conn: Connection, upto: int) -> Iterator[bytes]:
    """Stored leaf hashes 0 … upto−1 in index order, keyset-paged."""
    le = log_entries.c
    last = -1
    while last + 1 < upto:
        rows = conn.execute(
            select(le.leaf_index, le.leaf_hash)
            .where(le.leaf_index > last, le.leaf_index < upto)
            .order_by(le.leaf_index)
            .limit(10 * PAGE_SIZE)
        ).all()
        if not rows:
            return
        for index, value in rows:
            if index != last + 1:
                return  # a gap: the caller sees fewer leaves than asked for
            last = index
            yield bytes(value)
