"""Shared fixtures: real databases (SQLite files, PostgreSQL on 127.0.0.1:5432).

PostgreSQL tests create their own database from a migrated template and drop it
afterwards. Without CI they skip when the server is unreachable; with CI=true they
fail instead, so a missing PostgreSQL can never pass as green.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ledger.store import Ledger, migrate
from ledger.store import engine as engines

PG_ADMIN_URL = os.environ.get("SEEDLEDGER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SENTINEL_KEY = "sk-SENTINEL-4f1c2a9e-do-not-store"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "SEEDLEDGER_DATABASE_URL",
        "RUNWARE_API_KEY",
        "SEEDLEDGER_SIGNING_KEY",
        "SEEDLEDGER_MODELS",
        "SEEDLEDGER_ARCHIVE",
    ):
        monkeypatch.delenv(name, raising=False)


# -- SQLite ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = engines.create(str(path))
    migrate.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture
def sqlite_url(_sqlite_template: Path, tmp_path: Path) -> str:
    """A fresh SQLite ledger file at head."""
    path = tmp_path / "ledger.db"
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite:///{path}"


# -- PostgreSQL ------------------------------------------------------------------------


def _pg_admin_engine():  # type: ignore[no-untyped-def]
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})


def _pg_url(database: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + database


def _pg_admin_or_skip():  # type: ignore[no-untyped-def]
    """An AUTOCOMMIT admin engine; skip without PostgreSQL, but fail in CI."""
    admin = _pg_admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # pragma: no cover - depends on the machine
        admin.dispose()
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI and unreachable at {PG_ADMIN_URL}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_URL}")
    return admin


@contextmanager
def _pg_database(prefix: str, template: str | None = None) -> Iterator[str]:
    """A new database (a copy of ``template`` when given), dropped on exit."""
    admin = _pg_admin_or_skip()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def _pg_template() -> Iterator[str]:
    with _pg_database("sl_tpl") as name:
        engine = engines.create(_pg_url(name))
        migrate.upgrade(engine)
        engine.dispose()
        yield name


@pytest.fixture
def pg_url(_pg_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database at head, dropped after the test."""
    with _pg_database("sl_test", template=_pg_template) as name:
        yield _pg_url(name)


@pytest.fixture
def pg_empty_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (no schema), dropped after the test."""
    with _pg_database("sl_empty") as name:
        yield _pg_url(name)


# -- either engine ---------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh ledger URL at head, once on SQLite and once on PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    """An open Ledger on a fresh database, on both engines."""
    opened = Ledger.open(db_url)
    yield opened
    opened.close()


# -- hypothesis --------------------------------------------------------------------------
# Fuzz tests run with a fixed budget and a fixed seed (derandomize) so CI is repeatable;
# a failure prints the example and a reproduction blob. HYPOTHESIS_PROFILE=deep explores more.
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci",
    max_examples=150,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("deep", max_examples=5000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# -- the demo, run once per session ------------------------------------------------------


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`seedledger --json demo` run once as a subprocess: its summary plus stderr."""
    import json

    from tests.cli import seedledger

    out = tmp_path_factory.mktemp("demo") / "demo-out"
    done = seedledger("--json", "demo", "--dir", str(out), timeout=300)
    assert done.code == 0, done.err
    return {**json.loads(done.out), "stderr": done.err, "dir": str(out)}


# -- order: the longest files first -----------------------------------------------------


#: The longest test files (minutes on 2 cores), started first: with a file per xdist
#: worker (`--dist loadfile`) one of them started last would run on alone at the end.
LONGEST_FIRST = (
    "test_readme.py",
    "test_diffusers.py",
    "test_cli_records.py",
    "test_integrity.py",
    "test_credentials.py",
    "test_websocket_sdks.py",
    "test_ui_access.py",
    "test_wheel.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Whole files move (a file's own order is kept: its module fixtures rely on it)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


# -- proof in the CI log that the PostgreSQL tests ran ----------------------------------


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    counts: dict[str, int] = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            if "postgres" in getattr(report, "keywords", {}) and report.when in ("call", "setup"):
                if outcome == "passed" and report.when != "call":
                    continue
                counts[outcome] = counts.get(outcome, 0) + 1
    shown = ", ".join(f"{n} {o}" for o, n in counts.items()) or "none collected"
    terminalreporter.write_line(f"PostgreSQL tests (marker 'postgres'): {shown}")
