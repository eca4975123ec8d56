"""Engines for SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from ledger import config
from ledger.errors import StoreError, UsageError

DEFAULT_DATABASE = "seedledger.db"
#: What `pip install 'seedledger[postgres]'` adds; named in the missing-driver message.
POSTGRES_DRIVER = "psycopg[binary]>=3.1.18"
ENV_DATABASE_URL = config.DATABASE_URL.name
SQLITE_BUSY_TIMEOUT_MS = 30_000


def resolve_url(url: str | None = None) -> str:
    """The database URL to use: the argument, the environment, or ./seedledger.db.

    A plain path is taken as a SQLite file; ``postgresql://`` uses psycopg 3.
    """
    url = url or config.DATABASE_URL.raw() or DEFAULT_DATABASE
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser()}"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def sqlite_file(url: str | None = None) -> Path | None:
    """The file a SQLite URL names (absolute), or None (in-memory, other engines, bad URL)."""
    try:
        parsed = make_url(resolve_url(url))
    except ArgumentError:
        return None
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return Path(database).expanduser().resolve()


def require_existing(url: str | None = None) -> None:
    """Refuse a SQLite file that does not exist, for commands that only read.

    Opening a missing file would create an empty ledger: a mistyped ``--db`` (or a
    relative ``SEEDLEDGER_DATABASE_URL`` after a ``cd``) would then answer "no
    records" instead of saying the path is wrong."""
    path = sqlite_file(url)
    if path is not None and not path.exists():
        raise StoreError(
            f"no ledger at {path}: check --db / ${ENV_DATABASE_URL}, or create one with "
            f"`seedledger --db {shlex.quote(str(path))} db upgrade`"
        )


def display_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid database URL>"


def sqlite_json(value: Any) -> str:
    """How JSON columns are written on SQLite: compact, keys sorted, UTF-8 as it is.

    The values read back are the same as with ``json.dumps``' defaults; the text is the
    canonical form (``ledger.core.canonical``) for all but integral floats and keys
    outside the BMP, so ``verify``'s native walker copies it instead of re-encoding it
    (``ledger/integrity/_leafwalk_src/``). PostgreSQL keeps JSONB in its own form."""
    try:
        return _sorted_json(value)
    except TypeError:  # keys of mixed types cannot be sorted; json.dumps' defaults can write them
        return _compact_json(value)


# Built once: json.dumps builds a new encoder per call for any non-default option.
_sorted_json = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode
_compact_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control from pysqlite so BEGIN IMMEDIATE works (the
    # SQLAlchemy recipe for SQLite transactions); see _on_sqlite_begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _on_sqlite_begin(connection: Any) -> None:
    # Writers take the write lock up front: a deferred transaction that reads and
    # then writes fails at once with SQLITE_BUSY when another writer got there first.
    mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


def create(url: str | None = None, **options: Any) -> Engine:
    """Create an engine for ``url`` (see :func:`resolve_url`) with the pragmas and
    timeouts seedledger relies on."""
    resolved = resolve_url(url)
    try:
        parsed = make_url(resolved)
    except ArgumentError:
        raise UsageError(f"invalid database URL: {display_url(resolved)}") from None
    try:
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:":
                parent = Path(database).expanduser().resolve().parent
                if not parent.is_dir():
                    raise StoreError(f"directory for the SQLite ledger does not exist: {parent}")
            options.setdefault("json_serializer", sqlite_json)
            engine = create_engine(
                resolved, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **options
            )
            event.listen(engine, "connect", _on_sqlite_connect)
            event.listen(engine, "begin", _on_sqlite_begin)
            return engine
        if parsed.get_backend_name() == "postgresql":
            options.setdefault("pool_pre_ping", True)
            options.setdefault("connect_args", {"connect_timeout": 10})
            return create_engine(resolved, **options)
    except NoSuchModuleError:
        raise UsageError(f"unsupported database URL: {display_url(resolved)}") from None
    except ModuleNotFoundError as exc:
        raise StoreError(
            f"the {parsed.get_backend_name()} driver ({exc.name}) is not installed in {sys.prefix}; "
            f"install it with: {shlex.quote(sys.executable)} -m pip install {shlex.quote(POSTGRES_DRIVER)}"
        ) from None
    raise UsageError(f"unsupported database {parsed.get_backend_name()!r}: use SQLite or PostgreSQL")


# psycopg's connection error for a database name the server does not have.
_NO_DATABASE = re.compile(r'database "([^"]+)" does not exist')


def explain_unavailable(url: str, detail: str) -> str:
    """The one-line message for a database that cannot be reached.

    A PostgreSQL database that does not exist yet gets the commands that create it,
    instead of the server's raw FATAL line."""
    missing = _NO_DATABASE.search(detail)
    if missing is None:
        return f"database {display_url(url)} unavailable: {detail}"
    parsed = make_url(url)
    host, port = parsed.host or "localhost", str(parsed.port or 5432)
    createdb = ["createdb", "-h", host, "-p", port, *(["-U", parsed.username] if parsed.username else [])]
    createdb.append(missing.group(1))
    return (
        f"database {missing.group(1)!r} does not exist on {host}:{port}; "
        f"create it with `{shlex.join(createdb)}` or `seedledger db upgrade --create`"
    )


def create_database(url: str | None = None) -> bool:
    """Create the PostgreSQL database ``url`` names, if it is missing; True if created.

    Connects to the server's ``postgres`` maintenance database (CREATE DATABASE cannot
    run in a transaction, hence AUTOCOMMIT). SQLite files are created on open: False."""
    resolved = resolve_url(url)
    parsed = make_url(resolved)
    if parsed.get_backend_name() != "postgresql" or not parsed.database:
        return False
    admin_url: URL = parsed.set(database="postgres")
    admin = create(admin_url.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": parsed.database}
            ).first()
            if exists:
                return False
            quoted = conn.dialect.identifier_preparer.quote_identifier(parsed.database)
            conn.exec_driver_sql(f"CREATE DATABASE {quoted}")
            return True
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None)
        detail = str(orig or exc).strip().splitlines()[0]
        raise StoreError(f"cannot create database {parsed.database!r}: {detail}") from None
    finally:
        admin.dispose()
