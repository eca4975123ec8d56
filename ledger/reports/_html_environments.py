"""HTML: the runtime environments section (see ``ledger.reports._environments``)."""

from __future__ import annotations

from ledger.core.markup import Safe, el
from ledger.reports._build import ReportSource
from ledger.reports._environments import differences_text
from ledger.reports._html_parts import num
from ledger.reports._model import Report


def environments_section(report: Report, source: ReportSource) -> Safe:
    limit = source.options.html_limit
    parts: list[Safe] = [el("h2", "Runtime environments")]
    if not report.audit.available:
        parts.append(el("p", "No audit yet.", class_="empty"))
        return el("section", parts, id="environments")
    groups, distinct, with_env = source.environment_groups(limit=limit)
    parts.append(el("h3", "Recorded environments of audited records"))
    if not groups:
        parts.append(
            el(
                "p",
                "No audited record reports its runtime (in-process pipelines and A1111/ComfyUI replays do).",
                class_="empty",
                data_metric="environments.records",
                data_value=0,
            )
        )
    else:
        rows = [
            el(
                "tr",
                el("td", g.summary),
                num(g.records, f"environments.group:{n}"),
                el("td", f"#{g.first_record_id}"),
            )
            for n, g in enumerate(groups)
        ]
        head = el("tr", el("th", "environment"), el("th", "records", class_="n"), el("th", "first record"))
        parts.append(
            el(
                "p",
                el("span", f"{with_env:,}", data_metric="environments.records", data_value=with_env),
                f" audited records report their runtime, in {distinct:,} distinct environments.",
            )
        )
        parts.append(el("table", el("thead", head), el("tbody", rows)))
        if distinct > len(groups):
            parts.append(el("p", f"… and {distinct - len(groups):,} more environments.", class_="muted"))
    drifted = source.drifted_count()
    parts.append(el("h3", "Replays that were not identical: environment differences"))
    if not drifted:
        parts.append(
            el(
                "p",
                "Every replayed record was identical.",
                class_="empty",
                data_metric="environments.drifted",
                data_value=0,
            )
        )
        return el("section", parts, id="environments")
    items = list(source.iter_drifted(limit=limit))
    rows = [
        el(
            "tr",
            el(
                "td", f"#{x.record_id}", data_metric=f"environments.drift:{x.record_id}", data_value=x.verdict
            ),
            el("td", x.verdict),
            el("td", x.outcome),
            el("td", differences_text(x.differences, x.environment, x.replay_environment)),
        )
        for x in items
    ]
    head = el(
        "tr",
        el("th", "record"),
        el("th", "verdict"),
        el("th", "outcome"),
        el("th", "environment differences"),
    )
    parts.append(
        el(
            "p",
            el("span", f"{drifted:,}", data_metric="environments.drifted", data_value=drifted),
            " latest replays were near-identical, similar or different.",
        )
    )
    parts.append(el("table", el("thead", head), el("tbody", rows)))
    if drifted > len(items):
        parts.append(
            el("p", f"… and {drifted - len(items):,} more (all of them in the JSON report).", class_="muted")
        )
    return el("section", parts, id="environments")
