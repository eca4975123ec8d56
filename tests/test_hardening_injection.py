"""Injection: hostile text stays data, in SQL, in HTML and on a terminal.

- Filters reach SQL only as bound parameters: a prompt filter such as
  ``'; DROP TABLE records; --`` finds the record that contains it and nothing else, and
  ``%``, ``_`` and ``\\`` are literal, on both engines (checked against a Python oracle).
- Prompts with ``<script>``, ``<img onerror>``, formula prefixes and terminal escape
  sequences (CSI, OSC 8 hyperlinks, C1 controls) are escaped in HTML/Markdown/CSV
  reports and contact sheets, and `list`, `show` and `diff` print no control characters.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.cli import main
from ledger.core.markup import csp
from ledger.store import Ledger
from ledger.workflows.contact import CSS, ContactCell, write_contact_sheet
from tests.factories import new_record

SQL = "x'; DROP TABLE records; --"
SCRIPT = "<script>alert('xss')</script>"
IMG = '<img src=x onerror="alert(1)">'
CSI = "\x1b[2J\x1b[31mred"
OSC8 = "\x1b]8;;https://evil.example/\x1b\\click me\x1b]8;;\x1b\\"
BELL_TITLE = "\x1b]0;pwned\x07"
C1 = "\x9b31mc1-red"
FORMULA = '=HYPERLINK("https://evil.example","x")'
HOSTILE = [SQL, SCRIPT, IMG, CSI, OSC8, BELL_TITLE, C1, FORMULA]
PLAIN = ["100% cotton", "a_b c", "abc", "back\\slash", "ab%c", "under_score", "plain prompt", "*star*"]
# Characters a terminal acts on: C0 controls (but tab/newline), DEL, C1 controls.
TERMINAL_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


class Hostile:
    def __init__(self, ledger: Ledger, url: str, ids: dict[str, int]) -> None:
        self.ledger, self.url, self.ids = ledger, url, ids

    def count(self) -> int:
        return self.ledger.count()


@pytest.fixture
def hostile(ledger: Ledger, db_url: str) -> Hostile:
    texts = HOSTILE + PLAIN
    ids = ledger.add(
        [
            new_record(
                seed=i + 1,
                prompt=text,
                negative_prompt=text,
                model=f"runware:{i}@1" if i else f"m{SQL}",
                scheduler=text if i % 2 else "Euler",
                params={"positivePrompt": text, "note": text},
                tags=(f"t{i}",),
            )
            for i, text in enumerate(texts)
        ]
    )
    return Hostile(ledger, db_url, dict(zip(texts, ids, strict=True)))


def _listed(url: str, *filters: str) -> set[int]:
    result = _cli("--db", url, "--json", "list", *filters)
    assert result.exit_code == 0, result.output
    return {json.loads(line)["id"] for line in result.stdout.splitlines() if line.strip()}


NEEDLES = [SQL, "'", '"', ";", "--", "%", "_", "\\", "%%", "a_b", "ab%c", "*", "100%", "\\slash"]
NEEDLES += ["DROP TABLE", "<"]


def test_prompt_filter_is_a_bound_literal(hostile: Hostile) -> None:
    for needle in NEEDLES:
        expected = {rid for text, rid in hostile.ids.items() if needle.lower() in text.lower()}
        assert _listed(hostile.url, "--prompt", needle) == expected, needle
    assert hostile.count() == len(hostile.ids)  # the table is still there, whole


def test_other_filters_are_bound_too(hostile: Hostile) -> None:
    ledger, ids = hostile, hostile.ids
    assert _listed(ledger.url, "--model", f"m{SQL}") == {ids[SQL]}
    assert _listed(ledger.url, "--model", "m*DROP*") == {ids[SQL]}
    assert _listed(ledger.url, "--model", "runware:1_@1") == set()  # "_" is literal
    assert _listed(ledger.url, "--model", "%") == set()
    assert _listed(ledger.url, "--scheduler", SCRIPT) == {ids[SCRIPT]}
    for value in (SQL, "%", "_"):
        assert _listed(ledger.url, "--tag", value) == set()
        assert _listed(ledger.url, "--experiment", value) == set()
        assert _listed(ledger.url, "--backend", value) == set()
    assert ledger.count() == len(ids)


_ASCII_NEEDLE = st.text(st.sampled_from("ab%_\\'\";-* xDROP"), min_size=1, max_size=6)


def test_prompt_filter_agrees_with_python_on_sqlite(sqlite_url: str) -> None:
    """Property: for ASCII needles full of wildcards and quotes, the SQL result is
    exactly Python's substring test (SQLite's lower() folds ASCII only)."""
    with Ledger.open(sqlite_url) as ledger:
        texts = [*PLAIN, SQL, "A%B", "a\\_b", "''", "--x"]
        ids = dict(zip(texts, ledger.add([new_record(prompt=t) for t in texts]), strict=True))

    @settings(max_examples=60)
    @given(_ASCII_NEEDLE)
    def run(needle: str) -> None:
        expected = {rid for text, rid in ids.items() if needle.lower() in text.lower()}
        assert _listed(sqlite_url, "--prompt", needle) == expected

    run()


def test_terminal_output_has_no_control_sequences(hostile: Hostile) -> None:
    ledger, ids = hostile, hostile.ids
    outputs = [_cli("--db", ledger.url, "list"), _cli("--db", ledger.url, "list", "--prompt", "\x1b")]
    for text in HOSTILE:
        outputs.append(_cli("--db", ledger.url, "show", str(ids[text])))
        outputs.append(_cli("--db", ledger.url, "diff", str(ids[text]), str(ids["abc"])))
        outputs.append(_cli("--db", ledger.url, "--json", "show", str(ids[text])))
    outputs.append(_cli("--db", ledger.url, "--json", "list"))
    for result in outputs:
        assert result.exit_code == 0, result.output
        assert not TERMINAL_CONTROL.search(result.stdout.replace("\n", "").replace("\t", "")), repr(
            result.stdout[:500]
        )
        assert not TERMINAL_CONTROL.search(result.stderr.replace("\n", ""))
    # The text is still all there, made visible rather than dropped.
    shown = _cli("--db", ledger.url, "show", str(ids[CSI])).stdout
    assert "[2J" in shown and "red" in shown
    as_json = json.loads(_cli("--db", ledger.url, "--json", "show", str(ids[C1])).stdout)
    assert as_json["prompt"] == C1  # JSON keeps the exact value (escaped, not printed raw)


def test_reports_escape_hostile_text(hostile: Hostile, tmp_path: Path) -> None:
    ledger = hostile
    pages = {}
    for fmt in ("html", "md", "csv", "json"):
        out = tmp_path / f"r.{fmt}"
        result = _cli("--db", ledger.url, "report", "--format", fmt, "--out", str(out), "--verify", "none")
        assert result.exit_code == 0, result.output
        pages[fmt] = out.read_text(encoding="utf-8")
    for fmt in ("html", "md"):
        page = pages[fmt]
        for raw in ("<script>alert", "<img src=x", 'onerror="alert'):
            assert raw not in page, (fmt, raw)
        # `cat report.md` in a terminal runs no escape sequence.
        assert not TERMINAL_CONTROL.search(page), fmt
    # JSON is data: it parses, and covers every hostile record.
    assert json.loads(pages["json"])["summary"]["total"] == len(ledger.ids)
    for line in pages["csv"].splitlines()[1:]:
        for cell in line.split(","):
            assert not cell.startswith(("=", "+", "@")), cell


def test_contact_sheet_escapes_labels_and_title(tmp_path: Path) -> None:
    cells = [ContactCell(label=text, record_id=i, data=None) for i, text in enumerate(HOSTILE)]
    _, page_path = write_contact_sheet(cells, tmp_path, title=SCRIPT + IMG)
    page = page_path.read_text(encoding="utf-8")
    assert "<script" not in page and "<img src=x" not in page
    assert "&lt;script&gt;" in page
    assert page.count("<img ") == len(HOSTILE)  # only the thumbnails
    # the reports' escaping builder: control characters go too (a `cat` of the page runs nothing)
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", page)
    # and the reports' policy: no script, nothing from outside, only the page's own style sheet
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)
    assert policy is not None and html.unescape(policy.group(1)) == csp(CSS)
    assert "script-src" not in policy.group(1) and "default-src &#x27;none&#x27;" in policy.group(1)
