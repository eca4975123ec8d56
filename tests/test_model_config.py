"""The user's model catalog (SEEDLEDGER_MODELS) changes what check and audit conclude."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli import seedledger
from tests.factories import exchange


def test_user_catalog_marks_a_model_seedless(sqlite_url: str, tmp_path: Path) -> None:
    document = exchange(5, model="civitai:4384@128713")
    assert seedledger("--db", sqlite_url, "record", "-", input=json.dumps(document)).code == 0
    before = seedledger("--db", sqlite_url, "--json", "check", "--all")
    assert before.code == 0, before.err
    assert "seedless-model" not in before.out
    config = tmp_path / "models.toml"
    config.write_text('[models."civitai:4384@*"]\nseed = false\nnote = "house model ignores seeds"\n')
    after = seedledger("--db", sqlite_url, "--json", "check", "--all", env={"SEEDLEDGER_MODELS": str(config)})
    assert after.code == 0, after.err
    assert "seedless-model" in after.out and "house model ignores seeds" in after.out


def test_a_broken_catalog_file_is_a_clear_usage_error(sqlite_url: str, tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text("[models\nbroken")
    assert seedledger("--db", sqlite_url, "record", "-", input=json.dumps(exchange(5))).code == 0
    done = seedledger("--db", sqlite_url, "check", env={"SEEDLEDGER_MODELS": str(config)})
    assert done.code == 2, done.err
    assert "models.toml" in done.err and "Traceback" not in done.err
