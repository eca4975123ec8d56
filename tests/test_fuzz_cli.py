"""Fuzzing CLI filter values: any text for --since/--until/--seed-min/--seed/--model/
--prompt/--ids/--tag gives exit 0 (a result) or exit 2 (a one-line usage error) —
never a traceback, and never a change to the database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.cli import main
from ledger.store import Ledger
from tests.factories import new_record

OPTIONS = ["--since", "--until", "--seed-min", "--seed-max", "--seed", "--model", "--prompt", "--ids"]
OPTIONS += ["--tag", "--scheduler", "--experiment", "--backend", "--id"]
# Text that looks almost right for the typed options, and text that is anything at all.
_NEARLY = st.sampled_from(
    [
        "2026-11-25",
        "2026-11-25T10:00:00+05:00",
        "2026-13-45",
        "yesterday",
        "18446744073709551615",
        "18446744073709551616",
        "-1",
        "0x10",
        "1e3",
        "١٢٣",  # Arabic-Indic digits: int() accepts them, a seed must not
        "1,2,5-9",
        "9-1",
        "5-",
        "*",
        "%_%",
        "'; DROP TABLE records; --",
        "",
        " ",
        "\x00",
        "\x1b[31m",
        "9" * 400,
    ]
)
_VALUES = _NEARLY | st.text(max_size=40) | st.integers(-(2**70), 2**70).map(str)


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path: Path = tmp_path_factory.mktemp("fuzz-cli") / "l.db"
    url = f"sqlite:///{path}"
    with Ledger.open(url) as ledger:
        ledger.add([new_record(seed=s, prompt=f"p{s}") for s in (0, 1, 2**63, 2**64 - 1)])
    yield url


def _check(result: Any) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 2), (result.exit_code, result.output)
    if result.exit_code == 2:
        assert "Traceback" not in result.stderr
        assert result.stderr.strip(), "a usage error says why"
    else:
        for line in result.stdout.splitlines():
            json.loads(line)


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from(OPTIONS), _VALUES), min_size=1, max_size=3))
def test_list_filters_never_traceback(url: str, pairs: list[tuple[str, str]]) -> None:
    args = [item for pair in pairs for item in pair]
    if any("\x00" in a for a in args):
        return  # argv cannot carry NUL (the OS refuses it before seedledger runs)
    result = CliRunner().invoke(main, ["--db", url, "--json", "list", *args], catch_exceptions=True)
    _check(result)
    with Ledger.open(url) as ledger:
        assert ledger.count() == 4


@settings(max_examples=40)
@given(st.sampled_from(["report", "audit", "check"]), st.sampled_from(OPTIONS[:7]), _VALUES)
def test_other_commands_parse_filters_cleanly(url: str, command: str, option: str, value: str) -> None:
    if "\x00" in value:
        return
    # Only the parsing is exercised: --dry-run / an invalid --out keep these offline.
    extra = {"report": ["--out", "/nonexistent-dir/x/r.html"], "audit": ["--dry-run"], "check": []}[command]
    result = CliRunner().invoke(main, ["--db", url, command, option, value, *extra], catch_exceptions=True)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 2, 8), (result.exit_code, result.output)
