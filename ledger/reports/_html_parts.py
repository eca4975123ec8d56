"""Small HTML building blocks the report sections share: numbers that carry their
``data-metric``, cards, count and verdict tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ledger.core.markup import Safe, el
from ledger.reports._model import VERDICTS


def pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def num(value: int, metric: str, tag: str = "td") -> Safe:
    return el(tag, f"{value:,}", class_="n", data_metric=metric, data_value=value)


def card(label: str, value: str, metric: str | None = None, raw: Any = None, cls: str | None = None) -> Safe:
    return el(
        "div",
        el("div", value, class_=("v " + cls) if cls else "v", data_metric=metric, data_value=raw),
        el("div", label, class_="k"),
        class_="card",
    )


def counts_table(title: str, counts: Mapping[str, int], metric: str, total: int) -> Safe:
    rows = [
        el(
            "tr",
            el("td", key),
            num(value, f"{metric}:{key}"),
            el("td", pct(value / total if total else None), class_="n"),
        )
        for key, value in counts.items()
    ]
    head = el("tr", el("th", title), el("th", "records", class_="n"), el("th", "share", class_="n"))
    return el("table", el("thead", head), el("tbody", rows))


def matrix_table(title: str, data: Mapping[str, Mapping[str, int]], metric: str) -> Safe:
    columns = [v for v in VERDICTS if any(v in row for row in data.values())]
    head = el(
        "tr", el("th", title), [el("th", c, class_="n") for c in columns], el("th", "total", class_="n")
    )
    body = []
    for key, row in data.items():
        cells = [num(row.get(c, 0), f"{metric}:{key}:{c}") for c in columns]
        body.append(el("tr", el("td", key), cells, el("td", f"{sum(row.values()):,}", class_="n")))
    return el("table", el("thead", head), el("tbody", body))
