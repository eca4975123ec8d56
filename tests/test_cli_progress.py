"""The CLI's one progress display (ledger/cli/progress.py) and the commands that use it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ledger.cli import progress as progress_module
from ledger.cli.audit import _progress_bar
from ledger.cli.progress import ProgressLine
from tests.cli import invoke
from tests.workflow_fixtures import a1111_png


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_line_is_redrawn_in_place_and_ended_once() -> None:
    out = _Terminal()
    with ProgressLine("sweep", stream=out) as line:
        line.show("1/2 cells")
        line.show("2/2 cells")
    assert out.getvalue() == "\rsweep 1/2 cells\x1b[K\rsweep 2/2 cells\x1b[K\n"
    quiet = _Terminal()
    with ProgressLine("sweep", stream=quiet):
        pass  # nothing drawn: no stray newline
    assert quiet.getvalue() == ""


def test_off_a_terminal_nothing_is_drawn_unless_lines_are_asked_for() -> None:
    plain = io.StringIO()
    with ProgressLine("audit", stream=plain) as line:
        line.bar(1, 2)
        line.show("x")
    assert plain.getvalue() == ""
    logged = io.StringIO()
    with ProgressLine("verified", lines=True, stream=logged) as line:
        line.show("100000 leaves")
        line.show("200000 leaves")
    assert logged.getvalue() == "verified 100000 leaves\nverified 200000 leaves\n"
    off = _Terminal()
    with ProgressLine("import", enabled=False, lines=True, stream=off) as line:
        line.show("x")
    assert off.getvalue() == ""


def test_the_bar_fills_with_the_share_done_and_waits_for_a_total() -> None:
    out = _Terminal()
    line = ProgressLine("audit", stream=out)
    line.bar(5, 0)
    assert out.getvalue() == ""
    line.bar(7, 28, "pass 7")
    line.bar(30, 28)  # more than the total never overflows the bar
    assert out.getvalue() == (
        "\raudit [#######" + "." * 21 + "] 7/28  pass 7\x1b[K\raudit [" + "#" * 28 + "] 30/28\x1b[K"
    )


def test_the_audit_bar_names_the_counts_by_outcome() -> None:
    out = _Terminal()
    line = ProgressLine("audit", stream=out)
    _progress_bar(line)(14, 28, {"pass": 10, "expected-drift": 3, "error": 1})
    line.close()
    assert out.getvalue() == f"\raudit [{'#' * 14}{'.' * 14}] 14/28  error 1 drift 3 pass 10\x1b[K\n"


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    a1111_png(folder / "a.png")
    (folder / "b.json").write_text("{nope")
    return folder


def test_import_draws_its_progress_on_a_terminal_only(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path)
    piped = invoke("--db", sqlite_url, "import", str(folder))
    assert piped.code == 0, piped.err
    assert "\r" not in piped.err  # a pipe or a log gets the summary, not redraws
    monkeypatch.setattr(progress_module, "_is_terminal", lambda stream: True)
    shown = invoke("--db", sqlite_url, "import", str(folder))
    assert shown.code == 0, shown.err
    redraws = [part for part in shown.err.split("\r") if part.startswith("import ")]
    assert len(redraws) == 2 and any("a.png" in r for r in redraws) and any("b.json" in r for r in redraws)
    # The line is ended once, before the summary, which stays on a line of its own.
    assert shown.err.startswith("\rimport unchanged ") and shown.err.count("\n") == 2
    assert "b.json\n2 file(s): 0 imported" in shown.err
    as_json = invoke("--db", sqlite_url, "--json", "import", str(folder))
    assert as_json.code == 0 and "\r" not in as_json.err
