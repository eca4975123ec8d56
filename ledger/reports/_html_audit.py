"""The HTML report's audit sections: outcomes (with the runs aggregated and the earlier
failures a later result did not erase) and the evidence for failures and drift."""

from __future__ import annotations

from typing import Any

from ledger.core.markup import Safe, close_tag, el, join, open_tag, when
from ledger.reports import _images, _media, _svg
from ledger.reports._build import ReportSource
from ledger.reports._html_parts import card, matrix_table, num, pct
from ledger.reports._model import OUTCOMES, VERDICTS, EvidenceItem, Report

_when = when


def _runs_table(report: Report) -> Safe:
    head = el(
        "tr",
        [el("th", h) for h in ("run", "started", "finished", "status", "backend")],
        el("th", "results in selection", class_="n"),
    )
    rows = [
        el(
            "tr",
            el("td", el("code", run.id)),
            el("td", _when(run.created_at)),
            el("td", _when(run.finished_at)),
            el("td", run.status),
            el("td", run.backend or "each record’s own"),
            num(run.results, f"audit.run_results:{run.id}"),
        )
        for run in report.audit.run_list
    ]
    return el("div", el("h3", "Audit runs aggregated"), el("table", el("thead", head), el("tbody", rows)))


def _earlier_failures(report: Report, source: ReportSource) -> Safe:
    a = report.audit
    title = el("h3", "Earlier failures (not erased by a later result)")
    if not a.earlier_failures:
        text = "No selected record failed in an earlier run while its latest result passes."
        return el(
            "div", title, el("p", text, class_="muted", data_metric="audit.earlier_failures", data_value=0)
        )
    limit = source.options.html_limit
    items = [
        el("li", el("strong", f"record {x.record_id}"), f": {x.sentence(_when)}")
        for x in source.iter_earlier_failures(limit=limit)
    ]
    more = a.earlier_failures - len(items)
    return el(
        "div",
        title,
        el(
            "p",
            el(
                "span",
                f"{a.earlier_failures:,}",
                data_metric="audit.earlier_failures",
                data_value=a.earlier_failures,
            ),
            " selected record(s) failed in an earlier run; their latest result is not a failure:",
            class_="warn",
        ),
        el("ul", items),
        el("p", f"… and {more:,} more (all of them in the JSON report).", class_="muted")
        if more > 0
        else None,
    )


def audit_section(report: Report, source: ReportSource) -> Safe:
    a = report.audit
    if not a.available:
        return el(
            "section",
            el("h2", "Audit outcomes"),
            el(
                "p",
                f"No audit yet: none of the {report.summary.total:,} selected records has an audit result. "
                "Run `seedledger audit` to replay them.",
                class_="empty",
                data_metric="audit.none",
            ),
            el(
                "p",
                "Never audited: ",
                el(
                    "span",
                    f"{a.never_audited:,}",
                    data_metric="audit.never_audited",
                    data_value=a.never_audited,
                ),
            ),
            id="audit",
        )
    cards = el(
        "div",
        card("pass rate", pct(a.pass_rate), "audit.pass_rate", a.pass_rate, "ok"),
        card("passed", f"{a.passed:,}", "audit.passed", a.passed, "ok"),
        card("expected drift", f"{a.expected_drift:,}", "audit.expected_drift", a.expected_drift, "warn"),
        card("failed", f"{a.failed:,}", "audit.failed", a.failed, "bad"),
        card("errors", f"{a.errors:,}", "audit.errors", a.errors),
        card("skipped", f"{a.skipped:,}", "audit.skipped", a.skipped),
        card("audited", f"{a.audited:,}", "audit.audited", a.audited),
        card("never audited", f"{a.never_audited:,}", "audit.never_audited", a.never_audited),
        class_="cards",
    )
    segments = [(o, a.by_outcome.get(o, 0)) for o in OUTCOMES] + [("never audited", a.never_audited)]
    return el(
        "section",
        el("h2", "Audit outcomes"),
        el(
            "p",
            f"The latest verdict of each selected record, across the {a.runs:,} audit run(s) listed "
            "below (a record counts with its latest result, whichever run it came from). "
            "Pass rate = passed ÷ (audited − skipped); expected drift (similar on a stochastic "
            "scheduler) is set apart from failures.",
            class_="muted",
        ),
        cards,
        _runs_table(report),
        _earlier_failures(report, source),
        _svg.stacked_bar(f"Latest outcome per record, across {a.runs:,} audit run(s)", segments),
        el(
            "div",
            _svg.bar_chart(
                "Latest verdict", {v: a.by_verdict.get(v, 0) for v in VERDICTS if v in a.by_verdict}
            ),
            el(
                "table",
                el("tr", el("th", "outcome"), el("th", "records", class_="n")),
                [
                    el("tr", el("td", o), num(a.by_outcome.get(o, 0), f"audit.by_outcome:{o}"))
                    for o in OUTCOMES
                ],
            ),
            class_="grid2",
        ),
        el("h3", "Latest verdict by model"),
        matrix_table("model", a.by_model, "audit.by_model"),
        el("h3", "Latest verdict by scheduler"),
        matrix_table("scheduler", a.by_scheduler, "audit.by_scheduler"),
        id="audit",
    )


def _img(png: bytes | None, alt: str) -> Safe:
    if png is None:
        return el("div", f"no {alt}", class_="empty")
    return el("img", src=_images.data_uri(png), alt=alt, width=144, height=144)


def _evidence_item(x: EvidenceItem) -> Safe:
    original = _images.thumbnail_png(x.original_thumbnail)
    replay = _images.thumbnail_png(x.replay_thumbnail)
    heat = _images.heat_map(x.original_thumbnail, x.replay_thumbnail)
    shows = _media.thumbnail_caption(x.modality)
    named = "" if x.modality == "image" else f" {shows}"
    figures = [
        el("figure", _img(original, f"original {shows}"), el("figcaption", f"original{named}")),
        el("figure", _img(replay, f"replay {shows}"), el("figcaption", f"replay{named}")),
        el(
            "figure",
            _img(heat[0] if heat else None, "difference heat map"),
            el(
                "figcaption",
                f"difference ×{_images.HEAT_GAIN} (mean {heat[1]}, max {heat[2]})" if heat else "difference",
            ),
        ),
    ]
    dist_rows = [
        el("tr", el("th", k), el("td", _distance(x.distances, k), class_="n"))
        for k, v in x.distances.items()
        if not isinstance(v, dict | list)
    ]
    cls = "bad" if x.outcome == "fail" else "warn"
    return el(
        "article",
        el("h3", f"Record {x.record_id}: ", el("span", x.outcome, class_=cls), f" ({x.verdict})"),
        el(
            "p",
            f"model {x.model} · scheduler {x.scheduler} · seed {'—' if x.seed is None else x.seed} · run "
            f"{x.run_id}" + (f" · error {x.error_code}" if x.error_code else ""),
            class_="muted",
        ),
        el("p", x.prompt or "", class_="prompt"),
        el("div", el("div", figures, class_="triptych"), el("table", dist_rows), class_="grid2"),
        _strip_figure(x) if x.modality == "video" else None,
        class_="evidence",
        data_modality=x.modality,
    )


def _strip_figure(x: EvidenceItem) -> Safe:
    """The original's and the replay's sampled frames, one row each."""
    rows = []
    for who, made in (
        ("original", _media.strip_png(x.original_detail)),
        ("replay", _media.strip_png_b64(x.replay_strip)),
    ):
        if made is None:
            rows.append(el("p", f"no frame strip stored for the {who} video", class_="empty"))
            continue
        png, tiles = made
        rows.append(
            el(
                "figure",
                el(
                    "img",
                    src=_images.data_uri(png),
                    alt=f"{who} video frame strip",
                    width=tiles * 96,
                    height=96,
                    class_="strip",
                ),
                el("figcaption", f"{who}: {tiles} sampled frames, evenly spaced from start to end"),
                class_="strip",
            )
        )
    return join(rows)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


def _distance(distances: Any, key: str) -> str:
    """One raw distance; a full-resolution PSNR of None is equal pixels (infinite)."""
    value = distances.get(key)
    if key == "pixel_psnr_db" and value is None and distances.get("full_resolution"):
        return "∞"
    return _fmt(value)


def evidence_section(report: Report, source: ReportSource, w: Any) -> None:
    a = report.audit
    w(open_tag("section", id="evidence"))
    w(el("h2", "Evidence for failures and drift"))
    if not a.available:
        w(el("p", "No audit yet, so no evidence.", class_="empty"))
    elif not a.evidence:
        w(el("p", "No failure and no drift in the latest audit results.", class_="empty"))
    else:
        limit = source.options.evidence_limit
        w(
            el(
                "p",
                el("span", f"{a.evidence:,}", data_metric="audit.evidence", data_value=a.evidence),
                " records failed or drifted. Original and replay thumbnails side by side (for video the "
                "middle sampled frame and both frame strips, for audio the waveform, for 3D the "
                "projected silhouette), with a heat map of their per-pixel difference.",
            )
        )
        shown = 0
        for item in source.iter_evidence(limit=limit):
            w(_evidence_item(item))
            shown += 1
        if a.evidence > shown:
            w(
                el(
                    "p",
                    f"… and {a.evidence - shown:,} more; the JSON report lists the distances of all of them.",
                    class_="muted",
                )
            )
    w(close_tag("section"))
