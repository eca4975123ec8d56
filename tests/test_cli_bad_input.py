"""Hostile JSON at the CLI's entry points: one line, exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger.core.jsonsafe import JSONTooDeepError, json_depth, loads_bounded
from ledger.errors import InvalidInputError
from tests.cli import seedledger
from tests.factories import exchange

DEEP = "[" * 100_000 + "]" * 100_000


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "RecursionError" not in err
    return lines[0]


def test_loads_bounded_measures_depth_outside_strings() -> None:
    assert json_depth('{"a": "[[[[{{{{", "b": [1, [2]]}') == 3
    assert json_depth('"\\"[[["') == 0
    assert loads_bounded('{"a": [1, {"b": 18446744073709551615}]}') == {"a": [1, {"b": 2**64 - 1}]}
    assert loads_bounded(b"[[1]]", max_depth=2) == [[1]]
    with pytest.raises(JSONTooDeepError, match="nested 3 levels deep; at most 2"):
        loads_bounded("[[[1]]]", max_depth=2)
    with pytest.raises(JSONTooDeepError):
        loads_bounded(DEEP)
    with pytest.raises(InvalidInputError, match="NaN is not valid JSON"):
        loads_bounded("[NaN]")
    assert loads_bounded("[NaN]", allow_constants=True)[0] != 0
    with pytest.raises(InvalidInputError, match="invalid JSON"):
        loads_bounded("{")


def test_record_refuses_deep_nesting_with_one_line(sqlite_url: str) -> None:
    done = seedledger("--db", sqlite_url, "record", "-", input=DEEP)
    assert done.code == 2
    assert "nested 100000 levels deep" in _one_line_error(done.err)
    # JSON Lines of deep documents are refused the same way, and nothing is kept.
    lines = json.dumps(exchange(5)) + "\n" + DEEP + "\n"
    done = seedledger("--db", sqlite_url, "record", "-", input=lines)
    assert done.code == 2
    assert "line 2: JSON nested" in _one_line_error(done.err)
    listed = seedledger("--db", sqlite_url, "--json", "list")
    assert listed.code == 0 and listed.json_lines() == []


def test_import_skips_a_deep_json_file_with_its_reason(sqlite_url: str, tmp_path: Path) -> None:
    hostile = tmp_path / "hostile.json"
    hostile.write_text(DEEP, encoding="utf-8")
    done = seedledger("--db", sqlite_url, "--json", "import", str(hostile))
    assert "Traceback" not in done.err and "RecursionError" not in done.err
    assert "nested 100000 levels deep" in done.out + done.err
    listed = seedledger("--db", sqlite_url, "--json", "list")
    assert listed.json_lines() == []


@pytest.mark.parametrize(
    ("name", "text"),
    [("models.json", '{"models": ' + DEEP + "}"), ("models.toml", "[models]\nx = " + DEEP + "\n")],
)
def test_model_catalog_refuses_deep_nesting(tmp_path: Path, name: str, text: str) -> None:
    catalog = tmp_path / name
    catalog.write_text(text, encoding="utf-8")
    done = seedledger("reference-server", "--port", "0", "--models", str(catalog), timeout=60)
    assert done.code == 2
    line = _one_line_error(done.err)
    assert str(catalog) in line and "nested" in line
