"""CSV cells that a spreadsheet would evaluate are neutralised (OWASP CSV injection)."""

from __future__ import annotations

import pytest

from ledger.reports._csv import _cell


@pytest.mark.parametrize(
    "text",
    [
        "=1+1",
        "+1",
        "-1+cmd",
        "@SUM(A1)",
        "\tx",
        "\rx",
        "\n=HYPERLINK(1)",
        "＝HYPERLINK(1)",
        "＋1",
        "－1",
        "＠SUM(A1)",
        "  =1+1",
    ],
)
def test_formula_prefixes_are_quoted(text: str) -> None:
    assert _cell(text) == "'" + text


@pytest.mark.parametrize("text", ["a lighthouse", "1girl, =", "", " plain"])
def test_plain_text_is_kept(text: str) -> None:
    assert _cell(text) == text
