"""The Ledger repository: the only way the layers above read and write records."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Row, func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from ledger.core.records import Modality, NewRecord, Record, SeedOrigin, Source, Status, utcnow
from ledger.errors import InvalidInputError, NotFoundError, SchemaOutdatedError, StoreError, UsageError
from ledger.store import engine as engines
from ledger.store import migrate
from ledger.store.filters import ORDERINGS, RecordFilter
from ledger.store.schema import experiments, record_tags, records

if TYPE_CHECKING:  # imported lazily below: numpy/Pillow stay out of plain record work
    from ledger.fingerprint import Fingerprint
    from ledger.store.fingerprints import Match

_INSERT_CHUNK = 500


class Ledger:
    """Records in an SQL database. Open with :meth:`open`; close when done.

    Every method returns domain dataclasses, never live ORM rows. Writes are all or
    nothing: a batch that fails leaves the database as it was.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- opening ---------------------------------------------------------------

    @classmethod
    def open(cls, url: str | None = None, *, create: bool | None = None, must_exist: bool = False) -> Ledger:
        """Open the ledger at ``url`` and check its schema is at the code's head.

        ``create`` (default: only for SQLite) brings an empty database to head.
        ``must_exist`` refuses a SQLite file that does not exist yet (StoreError naming
        `seedledger db upgrade`) instead of creating it.
        A database behind head raises :class:`SchemaOutdatedError` naming the command.
        """
        if must_exist:
            engines.require_existing(url)
        engine = engines.create(url)
        ledger = cls(engine)
        try:
            ledger._check_schema(create)
        except BaseException:
            engine.dispose()
            raise
        return ledger

    def _check_schema(self, create: bool | None) -> None:
        if create is None:
            create = self.engine.dialect.name == "sqlite"
        with self.translate_errors():
            head = migrate.head_revision()
            current = migrate.current_revision(self.engine)
            if current == head:
                return
            if current is None and migrate.is_empty(self.engine):
                if create:
                    migrate.upgrade(self.engine)
                    return
                raise SchemaOutdatedError(
                    f"the database at {self.display_url} is empty; "
                    "run `seedledger db upgrade` to create the schema"
                )
        if current is None:
            raise StoreError(
                f"the database at {self.display_url} holds tables that are not a seedledger ledger"
            )
        raise SchemaOutdatedError(
            f"the database is at revision {current}, the code needs {head}; "
            "run `seedledger db upgrade` (back up first)"
        )

    @property
    def display_url(self) -> str:
        return engines.display_url(self.engine.url.render_as_string(hide_password=False))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- transactions ----------------------------------------------------------

    @contextmanager
    def translate_errors(self) -> Iterator[None]:
        """Turn SQLAlchemy errors into StoreError with the URL (password hidden)."""
        try:
            yield
        except OperationalError as exc:
            detail = str(exc.orig).strip().splitlines()[0] if exc.orig else "operational error"
            url = self.engine.url.render_as_string(hide_password=False)
            raise StoreError(engines.explain_unavailable(url, detail)) from exc
        except DBAPIError as exc:
            detail = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise StoreError(f"database error: {detail}") from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"database error: {exc.__class__.__name__}: {exc}") from exc

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction (SQLite: BEGIN IMMEDIATE), committed on success."""
        with self.translate_errors(), self.engine.connect() as conn:
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        with self.translate_errors(), self.engine.connect() as conn, conn.begin():
            yield conn

    # -- writing ---------------------------------------------------------------

    def add(
        self,
        new_records: Sequence[NewRecord],
        *,
        conn: Connection | None = None,
        fingerprints: Sequence[Fingerprint | None] | None = None,
        environments: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[int]:
        """Store records; return their ids in input order.

        A record whose ``idempotency_key`` is already stored is not stored again;
        its existing id is returned. All or nothing. ``fingerprints``, if given, is
        aligned with ``new_records`` (None where an output has none) and is stored in
        the same transaction; a record that already has a fingerprint keeps it.
        ``environments`` likewise (the runtime each output was made in).
        """
        if fingerprints is not None and len(fingerprints) != len(new_records):
            raise UsageError(
                f"{len(fingerprints)} fingerprints for {len(new_records)} records; pass one per record"
            )
        if environments is not None and len(environments) != len(new_records):
            raise UsageError(
                f"{len(environments)} environments for {len(new_records)} records; pass one per record"
            )
        if conn is None:
            with self.writing() as own:
                return self.add(new_records, conn=own, fingerprints=fingerprints, environments=environments)
        if not new_records:
            return []
        recorded_at = utcnow()
        rows = [_to_row(r, recorded_at) for r in new_records]
        keys = [row["idempotency_key"] for row in rows]
        if len(set(keys)) != len(keys):
            raise UsageError("two records in one batch share an idempotency key")
        ids: dict[str, int] = {}
        for start in range(0, len(rows), _INSERT_CHUNK):
            chunk = rows[start : start + _INSERT_CHUNK]
            conn.execute(self._insert_ignoring_duplicates(), chunk)
            chunk_keys = [row["idempotency_key"] for row in chunk]
            found = conn.execute(
                select(records.c.idempotency_key, records.c.id).where(
                    records.c.idempotency_key.in_(chunk_keys)
                )
            )
            ids.update({key: rid for key, rid in found})
        tag_rows = [
            {"record_id": ids[row["idempotency_key"]], "tag": tag}
            for row in rows
            for tag in dict.fromkeys(row["tags"])
        ]
        if tag_rows:
            conn.execute(self._insert_ignoring_duplicates(record_tags), tag_rows)
        if fingerprints is not None:
            from ledger.store import fingerprints as fingerprint_store

            fp_rows = {
                ids[key]: fingerprint_store.to_row(ids[key], fp, recorded_at)
                for key, fp in zip(keys, fingerprints, strict=True)
                if fp is not None
            }
            fingerprint_store.insert_ignoring_existing(conn, list(fp_rows.values()))
        if environments is not None:
            from ledger.store import environments as environment_store

            environment_store.insert_ignoring_existing(
                conn,
                [
                    {"record_id": ids[key], "environment": dict(env)}
                    for key, env in zip(keys, environments, strict=True)
                    if env is not None
                ],
            )
        return [ids[key] for key in keys]

    def _insert_ignoring_duplicates(self, table: Any = records) -> Any:
        if self.dialect == "postgresql":
            return pg_insert(table).on_conflict_do_nothing()
        if self.dialect == "sqlite":
            return sqlite_insert(table).on_conflict_do_nothing()
        return insert(table)  # pragma: no cover - only SQLite and PostgreSQL are supported

    def record(self, new_record: NewRecord) -> int:
        return self.add([new_record])[0]

    def create_experiment(
        self,
        kind: str,
        plan: dict[str, Any],
        *,
        name: str | None = None,
        experiment_id: str | None = None,
    ) -> str:
        experiment_id = experiment_id or f"exp-{uuid.uuid4().hex[:12]}"
        with self.writing() as conn:
            conn.execute(
                insert(experiments).values(
                    id=experiment_id, kind=kind, name=name, plan=plan, created_at=utcnow()
                )
            )
        return experiment_id

    def experiment(self, experiment_id: str) -> dict[str, Any]:
        with self.reading() as conn:
            row = conn.execute(select(experiments).where(experiments.c.id == experiment_id)).first()
        if row is None:
            raise NotFoundError(f"no experiment {experiment_id!r}")
        return dict(row._mapping)

    # -- reading ---------------------------------------------------------------

    def get(self, record_id: int) -> Record:
        with self.reading() as conn:
            row = conn.execute(select(records).where(records.c.id == record_id)).first()
        if row is None:
            raise NotFoundError(f"no record with id {record_id}")
        return row_to_record(row)

    def query(
        self,
        where: RecordFilter | None = None,
        *,
        order_by: str = "id",
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
        after: int | None = None,
    ) -> list[Record]:
        """Matching records; ``after``: only ids past it in the listing order (keyset
        pagination, with ``order_by="id"``)."""
        if order_by not in ORDERINGS:
            raise UsageError(f"cannot order by {order_by!r}; choose from {', '.join(ORDERINGS)}")
        if (limit is not None and limit < 0) or offset < 0:
            raise UsageError("--limit and --offset must not be negative")
        where = where or RecordFilter()
        column = records.c[order_by]
        keys = [column.desc() if descending else column.asc()]
        if order_by != "id":
            keys.append(records.c.id.desc() if descending else records.c.id.asc())
        stmt = select(records).where(where.where()).order_by(*keys).offset(offset)
        if after is not None:
            if order_by != "id":
                raise UsageError("--after pages by id: use it with --order id")
            stmt = stmt.where(records.c.id < after if descending else records.c.id > after)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.reading() as conn:
            return [row_to_record(row) for row in conn.execute(stmt)]

    def iter_records(self, where: RecordFilter | None = None, *, batch_size: int = 1000) -> Iterator[Record]:
        """Every matching record in id order, fetched in keyset pages (flat memory)."""
        where = where or RecordFilter()
        last_id: int | None = None
        while True:
            stmt = select(records).where(where.where())
            if last_id is not None:
                stmt = stmt.where(records.c.id > last_id)
            stmt = stmt.order_by(records.c.id).limit(batch_size)
            with self.reading() as conn:
                page = [row_to_record(row) for row in conn.execute(stmt)]
            yield from page
            if len(page) < batch_size:
                return
            last_id = page[-1].id

    # -- fingerprints ------------------------------------------------------------

    def attach_fingerprint(self, record_id: int, fp: Fingerprint, *, replace: bool = False) -> bool:
        """Store ``fp`` as the fingerprint of record ``record_id``; True if it changed.

        Attaching the same image again is a no-op. A record that already has the
        fingerprint of other pixels keeps it unless ``replace`` is set.
        """
        from ledger.fingerprint import content_hash_kind
        from ledger.store import fingerprints as fingerprint_store

        with self.writing() as conn:
            if conn.execute(select(records.c.id).where(records.c.id == record_id)).first() is None:
                raise NotFoundError(f"no record with id {record_id}")
            existing = fingerprint_store.get(conn, record_id)
            row = fingerprint_store.to_row(record_id, fp, utcnow())
            if existing is None:
                fingerprint_store.insert_ignoring_existing(conn, [row])
                return True
            if existing == fp:
                return False
            if not replace:
                if existing.pixel_sha256 == fp.pixel_sha256:
                    what = "a fingerprint of the same pixels made by another version"
                elif content_hash_kind(existing) != content_hash_kind(fp):  # another video pipeline
                    what = f"a fingerprint made by another version ({existing.version})"
                else:
                    what = f"a fingerprint of other pixels (content hash {existing.pixel_sha256[:12]}…)"
                raise InvalidInputError(
                    f"record {record_id} already has {what}; use --replace to overwrite it"
                )
            fingerprint_store.replace(conn, row)
            return True

    def environment_of(self, record_id: int) -> dict[str, Any] | None:
        """The runtime record ``record_id`` was made in, if it reported one."""
        from ledger.store import environments as environment_store

        with self.reading() as conn:
            return environment_store.get(conn, record_id)

    def fingerprint_of(self, record_id: int) -> Fingerprint:
        from ledger.store import fingerprints as fingerprint_store

        with self.reading() as conn:
            fp = fingerprint_store.get(conn, record_id)
            if fp is None:
                exists = conn.execute(select(records.c.id).where(records.c.id == record_id)).first()
        if fp is not None:
            return fp
        if exists is None:
            raise NotFoundError(f"no record with id {record_id}")
        raise NotFoundError(
            f"record {record_id} has no fingerprint; "
            f"attach one with `seedledger fingerprint {record_id} FILE`"
        )

    def find_image(self, fp: Fingerprint, radius: int = 8, *, limit: int | None = None) -> list[Match]:
        """Records whose output matches ``fp`` (equal pixels, or phash within
        ``radius`` bits), best first, each with its full comparison."""
        from ledger.store import fingerprints as fingerprint_store

        fingerprint_store.check_radius(radius)
        with self.reading() as conn:
            return fingerprint_store.find(conn, fp, radius=radius, limit=limit)

    def count(self, where: RecordFilter | None = None) -> int:
        where = where or RecordFilter()
        with self.reading() as conn:
            return int(
                conn.execute(select(func.count()).select_from(records).where(where.where())).scalar_one()
            )


def _to_row(r: NewRecord, recorded_at: Any) -> dict[str, Any]:
    return {
        "idempotency_key": r.idempotency_key or f"uid:{uuid.uuid4()}",
        "backend": r.backend,
        "task_type": r.task_type,
        "modality": str(r.modality),
        "model": r.model,
        "scheduler_requested": r.scheduler_requested,
        "scheduler": r.scheduler,
        "seed": r.seed,
        "seed_origin": str(r.seed_origin),
        "prompt": r.prompt,
        "negative_prompt": r.negative_prompt,
        "width": r.width,
        "height": r.height,
        "steps": r.steps,
        "cfg_scale": r.cfg_scale,
        "output_format": r.output_format,
        "params": dict(r.params),
        "response": dict(r.response),
        "task_uuid": r.task_uuid,
        "output_uuid": r.output_uuid,
        "output_index": r.output_index,
        "cost": r.cost,
        "source": str(r.source),
        "experiment_id": r.experiment_id,
        "parent_id": r.parent_id,
        "tags": list(r.tags),
        "status": str(r.status),
        "error_code": r.error_code,
        "error": r.error,
        "created_at": r.created_at,
        "recorded_at": recorded_at,
    }


def row_to_record(row: Row[Any]) -> Record:
    m = row._mapping
    return Record(
        id=int(m["id"]),
        idempotency_key=m["idempotency_key"],
        backend=m["backend"],
        task_type=m["task_type"],
        modality=Modality(m["modality"]),
        model=m["model"],
        scheduler_requested=m["scheduler_requested"],
        scheduler=m["scheduler"],
        seed=m["seed"],
        seed_origin=SeedOrigin(m["seed_origin"]),
        prompt=m["prompt"],
        negative_prompt=m["negative_prompt"],
        width=m["width"],
        height=m["height"],
        steps=m["steps"],
        cfg_scale=m["cfg_scale"],
        output_format=m["output_format"],
        params=m["params"],
        response=m["response"],
        task_uuid=m["task_uuid"],
        output_uuid=m["output_uuid"],
        output_index=m["output_index"],
        cost=m["cost"],
        source=Source(m["source"]),
        experiment_id=m["experiment_id"],
        parent_id=m["parent_id"],
        tags=tuple(m["tags"]),
        status=Status(m["status"]),
        error_code=m["error_code"],
        error=m["error"],
        created_at=m["created_at"],
        recorded_at=m["recorded_at"],
    )
