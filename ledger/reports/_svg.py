"""Inline SVG charts: no script, no external asset, no style attribute (CSP-clean)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ledger.core.markup import Safe, el, join

#: Fixed colours per outcome/verdict, readable in print.
COLOURS = {
    "pass": "#2e7d32",
    "identical": "#2e7d32",
    "near-identical": "#66bb6a",
    "similar": "#f9a825",
    "expected-drift": "#f9a825",
    "different": "#c62828",
    "fail": "#c62828",
    "error": "#6a1b9a",
    "skipped": "#90a4ae",
    "never audited": "#cfd8dc",
    "yes": "#2e7d32",
    "no": "#c62828",
    "deterministic": "#2e7d32",
    "stochastic": "#f9a825",
    "unknown": "#90a4ae",
}
_BAR = "#1565c0"


def bar_chart(title: str, counts: Mapping[str, int], *, limit: int = 12, width: int = 560) -> Safe:
    """Horizontal bars, largest first; the rest folded into "other"."""
    items = list(counts.items())[:limit]
    rest = sum(list(counts.values())[limit:])
    if rest:
        items.append((f"other ({len(counts) - limit})", rest))
    if not items:
        return Safe("")
    row, label_w, top = 22, 220, 26
    height = top + row * len(items) + 6
    peak = max(v for _, v in items) or 1
    span = width - label_w - 70
    parts = [el("title", title), el("text", title, x=0, y=16, class_="chart-title")]
    for i, (label, value) in enumerate(items):
        y = top + i * row
        w = max(1, round(span * value / peak)) if value else 0
        shown = label if len(label) <= 32 else label[:31] + "…"
        parts.append(el("text", shown, x=label_w - 6, y=y + 15, text_anchor="end", class_="chart-label"))
        parts.append(el("rect", x=label_w, y=y + 3, width=w, height=row - 6, fill=COLOURS.get(label, _BAR)))
        parts.append(el("text", f"{value:,}", x=label_w + w + 6, y=y + 15, class_="chart-value"))
    return el(
        "svg",
        *parts,
        xmlns="http://www.w3.org/2000/svg",
        viewBox=f"0 0 {width} {height}",
        width=width,
        height=height,
        role="img",
        aria_label=title,
        class_="chart",
    )


def stacked_bar(title: str, segments: Sequence[tuple[str, int]], *, width: int = 560) -> Safe:
    """One bar split into coloured segments, with a legend underneath."""
    total = sum(v for _, v in segments)
    if not total:
        return Safe("")
    parts = [el("title", title), el("text", title, x=0, y=16, class_="chart-title")]
    x = 0.0
    for label, value in segments:
        if not value:
            continue
        w = width * value / total
        parts.append(
            el(
                "rect",
                el("title", f"{label}: {value:,}"),
                x=round(x, 2),
                y=24,
                width=round(w, 2),
                height=26,
                fill=COLOURS.get(label, _BAR),
            )
        )
        x += w
    legend_y = 70
    lx = 0
    for label, value in segments:
        parts.append(el("rect", x=lx, y=legend_y - 10, width=10, height=10, fill=COLOURS.get(label, _BAR)))
        text = f"{label} {value:,} ({100 * value / total:.1f}%)"
        parts.append(el("text", text, x=lx + 14, y=legend_y, class_="chart-label"))
        lx += 14 + 7 * len(text) + 14
    height = legend_y + 8
    width_all = max(width, lx)
    return el(
        "svg",
        *parts,
        xmlns="http://www.w3.org/2000/svg",
        viewBox=f"0 0 {width_all} {height}",
        width=width_all,
        height=height,
        role="img",
        aria_label=title,
        class_="chart",
    )


def share_gauges(title: str, shares: Sequence[tuple[str, int, int]], *, width: int = 560) -> Safe:
    """One thin bar per (label, part, whole): how much of the whole each share is."""
    if not shares:
        return Safe("")
    row, label_w, top = 24, 220, 26
    height = top + row * len(shares) + 4
    span = width - label_w - 70
    parts = [el("title", title), el("text", title, x=0, y=16, class_="chart-title")]
    for i, (label, part, whole) in enumerate(shares):
        y = top + i * row
        frac = part / whole if whole else 0.0
        parts.append(el("text", label, x=label_w - 6, y=y + 15, text_anchor="end", class_="chart-label"))
        parts.append(el("rect", x=label_w, y=y + 4, width=span, height=row - 8, fill="#eceff1"))
        parts.append(el("rect", x=label_w, y=y + 4, width=round(span * frac, 2), height=row - 8, fill=_BAR))
        parts.append(el("text", f"{100 * frac:.1f}%", x=label_w + span + 6, y=y + 15, class_="chart-value"))
    return el(
        "svg",
        join(parts),
        xmlns="http://www.w3.org/2000/svg",
        viewBox=f"0 0 {width} {height}",
        width=width,
        height=height,
        role="img",
        aria_label=title,
        class_="chart",
    )
