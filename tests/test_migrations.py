"""ORM metadata and Alembic migrations agree, on both engines.

Every revision is walked: an empty database goes up to head, autogenerate's compare
finds no difference from ``ledger.store.schema.metadata``, and everything goes back
down to base again.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from ledger.store import engine as engines
from ledger.store import migrate
from ledger.store.schema import PROMPT_FTS, PROMPT_TRGM_INDEX, include_object, metadata


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return str(request.getfixturevalue("pg_empty_url"))


def _diff(engine) -> list:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": include_object}
        )
        return compare_metadata(context, metadata)


def _tables(engine) -> set[str]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        names = set(inspect(conn).get_table_names()) - {"alembic_version"}
        return {name for name in names if not name.startswith(PROMPT_FTS)}  # FTS5 and its shadow tables


def test_every_revision_upgrades_and_downgrades_and_head_matches_metadata(empty_url: str) -> None:
    engine = engines.create(empty_url)
    try:
        script = ScriptDirectory.from_config(migrate._config())
        revisions = [rev.revision for rev in reversed(list(script.walk_revisions()))]
        assert revisions[-1] == migrate.head_revision() == migrate.script_head()
        # Step up one revision at a time: each upgrade applies on top of the last.
        for revision in revisions:
            migrate.upgrade(engine, revision)
            assert migrate.current_revision(engine) == revision
        assert _diff(engine) == []
        assert _tables(engine) == set(metadata.tables)
        with engine.connect() as conn:  # the prompt index (migration 0007) is there
            found = inspect(conn)
            if engine.dialect.name == "sqlite":
                assert PROMPT_FTS in found.get_table_names()
            else:
                assert PROMPT_TRGM_INDEX in {ix["name"] for ix in found.get_indexes("records")}
        # And all the way down, one step at a time.
        for previous in [*reversed(revisions[:-1]), "base"]:
            migrate.downgrade(engine, previous)
            assert migrate.current_revision(engine) == (None if previous == "base" else previous)
        assert _tables(engine) == set()
        with engine.connect() as conn:  # the prompt index went too (_tables leaves FTS5 out)
            assert not [name for name in inspect(conn).get_table_names() if name.startswith(PROMPT_FTS)]
        # Up again from base to head in one go.
        migrate.upgrade(engine)
        assert _diff(engine) == []
    finally:
        engine.dispose()
