"""Alembic, driven from code: the migrations ship inside the package.

Opening a ledger only compares two revisions, so that path does not import Alembic
(it and Mako cost about 0.1 s of every CLI start-up): the head is a constant, checked
against the migration scripts by tests/test_migrations.py, and the current revision
is read from Alembic's own version table with plain SQL.
"""

from __future__ import annotations

from importlib.resources import files
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

from ledger.errors import StoreError

if TYPE_CHECKING:
    from alembic.config import Config

#: The newest migration's revision. A new migration must change it (the test above
#: fails until it does).
HEAD_REVISION = "0007"

#: Alembic's table, in the default schema (Alembic's own default).
VERSION_TABLE = "alembic_version"


def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(files("ledger") / "migrations"))
    return config


def head_revision() -> str:
    return HEAD_REVISION


def script_head() -> str:
    """The head as the migration scripts say (imports every script)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if not inspect(connection).has_table(VERSION_TABLE):
            return None
        versions = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(versions) > 1:  # seedledger's history is linear: several heads is not a ledger of ours
        raise StoreError(f"{VERSION_TABLE} names {len(versions)} revisions: {', '.join(sorted(versions))}")
    return str(versions[0]) if versions else None


def is_empty(engine: Engine) -> bool:
    with engine.connect() as connection:
        return not inspect(connection).get_table_names()


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    from alembic import command

    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
