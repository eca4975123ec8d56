"""Which database a command opens: a mistyped path is refused, PostgreSQL set-up is explained."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.cli import seedledger
from tests.conftest import _pg_admin_or_skip, _pg_url
from tests.factories import exchange

# Commands that only read: each must refuse a SQLite file that does not exist.
READERS = [
    ("list",),
    ("show", "1"),
    ("check",),
    ("report", "--format", "json", "--out", "{tmp}/r.json"),
    ("verify", "--key-file", "{tmp}/signing.key"),
    ("audit", "--replay-backend", "reference", "--dry-run"),
    ("audit", "list"),
    ("audit", "show", "1"),
    ("compare", "1", "2"),
    ("diff", "1", "2"),
    ("lineage", "1"),
    ("prove", "1"),
    ("checkpoint",),
    ("seal", "--key-file", "{tmp}/signing.key"),
    ("pick", "1", "--out", "{tmp}/pick.json"),
    ("db", "current"),
]


@pytest.mark.parametrize("command", READERS, ids=lambda c: " ".join(c[:2]))
def test_read_commands_refuse_a_missing_sqlite_file(tmp_path: Path, command: tuple[str, ...]) -> None:
    missing = tmp_path / "typo.db"
    if "{tmp}/signing.key" in command:
        assert seedledger("keys", "generate", "--out", str(tmp_path / "signing.key"), "--name", "t").code == 0
    args = [part.replace("{tmp}", str(tmp_path)) for part in command]
    done = seedledger("--db", str(missing), *args)
    assert done.code == 4, (done.code, done.err)
    assert done.err.count("\n") == 1, done.err
    assert f"no ledger at {missing}" in done.err
    assert f"seedledger --db {missing} db upgrade" in done.err
    assert not missing.exists()


def test_relative_env_url_after_cd_names_the_absolute_path(tmp_path: Path) -> None:
    home, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    env = {"SEEDLEDGER_DATABASE_URL": "ledger.db"}
    done = seedledger("record", "-", input=json.dumps(exchange(7)), env=env, cwd=home)
    assert done.code == 0, done.err
    assert (home / "ledger.db").is_file()
    lost = seedledger("list", env=env, cwd=elsewhere)
    assert lost.code == 4
    assert f"no ledger at {elsewhere / 'ledger.db'}" in lost.err
    assert not (elsewhere / "ledger.db").exists()


def test_write_commands_create_the_ledger(tmp_path: Path) -> None:
    by_record, by_import, by_upgrade = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "c.db"
    assert seedledger("--db", str(by_record), "record", "-", input=json.dumps(exchange(1))).code == 0
    logfile = tmp_path / "log.jsonl"
    logfile.write_text(json.dumps(exchange(2)) + "\n", encoding="utf-8")
    assert seedledger("--db", str(by_import), "import", str(logfile)).code == 0
    assert seedledger("--db", str(by_upgrade), "db", "upgrade").code == 0
    for path in (by_record, by_import, by_upgrade):
        listed = seedledger("--db", str(path), "--json", "list")
        assert listed.code == 0, listed.err
    assert len(seedledger("--db", str(by_record), "--json", "list").json_lines()) == 1


def test_missing_postgres_driver_names_the_install_command(tmp_path: Path) -> None:
    # A psycopg that cannot be imported, ahead of the real one on the path.
    fake = tmp_path / "site" / "psycopg"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError('no psycopg here', name='psycopg')\n")
    path = os.pathsep.join(p for p in (str(fake.parent), os.environ.get("PYTHONPATH", "")) if p)
    done = seedledger("--db", "postgresql://postgres@127.0.0.1:5432/x", "list", env={"PYTHONPATH": path})
    assert done.code == 4, done.err
    assert done.err.count("\n") == 1, done.err
    assert "-m pip install 'psycopg[binary]>=3.1.18'" in done.err


@pytest.fixture
def pg_missing_url() -> Iterator[str]:
    """A URL naming a PostgreSQL database that does not exist (dropped afterwards if created)."""
    admin = _pg_admin_or_skip()
    name = f"sl_missing_{uuid.uuid4().hex[:12]}"
    try:
        yield _pg_url(name).replace("postgresql+psycopg://", "postgresql://")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.postgres
def test_db_upgrade_on_a_missing_postgres_database(pg_missing_url: str) -> None:
    name = pg_missing_url.rsplit("/", 1)[1]
    done = seedledger("--db", pg_missing_url, "db", "upgrade")
    assert done.code == 4
    assert done.err.count("\n") == 1, done.err
    assert "FATAL" not in done.err
    assert f"createdb -h 127.0.0.1 -p 5432 -U postgres {name}" in done.err
    assert "seedledger db upgrade --create" in done.err
    created = seedledger("--db", pg_missing_url, "db", "upgrade", "--create")
    assert created.code == 0, created.err
    assert "created database" in created.err
    again = seedledger("--db", pg_missing_url, "db", "upgrade", "--create")
    assert again.code == 0 and "created database" not in again.err
    assert seedledger("--db", pg_missing_url, "record", "-", input=json.dumps(exchange(3))).code == 0
    assert len(seedledger("--db", pg_missing_url, "--json", "list").json_lines()) == 1
