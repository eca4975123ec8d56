"""No module under ledger/ over 500 lines without a reason in docs/architecture.md
(the list between the ``module-size-exceptions`` markers)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 500
_SECTION = re.compile(r"<!-- module-size-exceptions -->\n(.*?)<!-- /module-size-exceptions -->", re.DOTALL)
_ENTRY = re.compile(r"^- `(?P<path>ledger/[^`]+\.py)`: (?P<reason>\S.*)$")


def exceptions(doc: str) -> dict[str, str]:
    """The listed modules and their reasons; a line in the list that is not an entry
    (other than the placeholder) is an error, so a typo cannot hide a module."""
    match = _SECTION.search(doc)
    if match is None:
        raise ValueError("docs/architecture.md has no module-size-exceptions list")
    listed: dict[str, str] = {}
    for line in match.group(1).splitlines():
        if not line.strip() or line.strip() == "(none today)":
            continue
        entry = _ENTRY.match(line)
        if entry is None:
            raise ValueError(f"not an entry (- `ledger/path.py`: reason): {line!r}")
        listed[entry["path"]] = entry["reason"]
    return listed


def line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def problems(root: Path, doc: str) -> list[str]:
    listed = exceptions(doc)
    found: list[str] = []
    for path in sorted((root / "ledger").rglob("*.py")):
        name = path.relative_to(root).as_posix()
        lines = line_count(path)
        if lines > LIMIT and name not in listed:
            found.append(f"{name} has {lines} lines (over {LIMIT}): split it or list it with a reason")
    for name in listed:
        path = root / name
        if not path.is_file():
            found.append(f"{name} is listed but does not exist")
        elif line_count(path) <= LIMIT:
            found.append(f"{name} is listed but has {line_count(path)} lines: drop the entry")
    return found


def test_no_module_over_the_limit_without_a_stated_reason() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert problems(ROOT, doc) == []


def _tree(tmp_path: Path, lines: int) -> Path:
    (tmp_path / "ledger" / "sub").mkdir(parents=True)
    (tmp_path / "ledger" / "small.py").write_text("x = 1\n" * 10)
    (tmp_path / "ledger" / "sub" / "big.py").write_text("x = 1\n" * lines)
    return tmp_path


def _doc(*entries: str) -> str:
    body = "".join(f"{e}\n" for e in entries) or "(none today)\n"
    return f"# arch\n\n<!-- module-size-exceptions -->\n{body}<!-- /module-size-exceptions -->\n"


def test_an_unlisted_long_module_is_named(tmp_path: Path) -> None:
    root = _tree(tmp_path, LIMIT + 1)
    assert problems(root, _doc()) == [
        f"ledger/sub/big.py has {LIMIT + 1} lines (over {LIMIT}): split it or list it with a reason"
    ]
    assert problems(_tree(tmp_path / "at-limit", LIMIT), _doc()) == []


def test_a_listed_long_module_passes_and_stale_entries_fail(tmp_path: Path) -> None:
    root = _tree(tmp_path, LIMIT + 50)
    assert problems(root, _doc("- `ledger/sub/big.py`: one state machine, split would scatter it")) == []
    stale = problems(
        root, _doc("- `ledger/sub/big.py`: ok", "- `ledger/gone.py`: was long", "- `ledger/small.py`: x")
    )
    assert stale == [
        "ledger/gone.py is listed but does not exist",
        "ledger/small.py is listed but has 10 lines: drop the entry",
    ]


def test_a_malformed_list_is_refused() -> None:
    with pytest.raises(ValueError, match="no module-size-exceptions list"):
        exceptions("# nothing here\n")
    with pytest.raises(ValueError, match="not an entry"):
        exceptions(_doc("- ledger/sub/big.py without backticks or reason"))
    with pytest.raises(ValueError, match="not an entry"):
        exceptions(_doc("- `ledger/sub/big.py`:"))
