"""The HTML report: one self-contained file, no script, inline SVG, print CSS.

A Content-Security-Policy forbids every script and every outside resource, so even a
mistake in escaping could not run code; all outside text goes through
:mod:`ledger.reports._markup`, which escapes it. Numbers carry ``data-metric``
attributes so tests (and auditors' tools) can read them back.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from ledger.reports import _images, _svg
from ledger.reports._build import ReportSource
from ledger.reports._markup import Safe, close_tag, el, open_tag
from ledger.reports._model import OUTCOMES, VERDICTS, EvidenceItem, Report

CSS = """
:root { --ink: #1c2430; --muted: #5f6b7a; --line: #d5dbe1; --accent: #1565c0; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
       color: var(--ink); margin: 0 auto; max-width: 1100px; padding: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; border-bottom: 2px solid var(--accent); padding-bottom: 4px; margin-top: 32px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.muted, .meta { color: var(--muted); }
nav ol { columns: 2; padding-left: 20px; }
a { color: var(--accent); }
table { border-collapse: collapse; margin: 6px 0 14px; width: 100%; }
th, td { border: 1px solid var(--line); padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f2f5f8; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 10px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; min-width: 150px; }
.card .v { font-size: 22px; font-weight: 600; }
.card .k { color: var(--muted); font-size: 12px; }
.ok { color: #2e7d32; } .bad { color: #c62828; } .warn { color: #a86b00; }
.prompt { white-space: pre-wrap; word-break: break-word; max-width: 420px; }
code, pre { font-family: "DejaVu Sans Mono", monospace; font-size: 12px; }
pre { background: #f6f8fa; border: 1px solid var(--line); padding: 8px; white-space: pre-wrap;
      word-break: break-all; }
.evidence { border: 1px solid var(--line); border-radius: 6px; padding: 10px; margin: 10px 0;
            break-inside: avoid; page-break-inside: avoid; }
.triptych { display: flex; gap: 14px; }
.triptych figure { margin: 0; text-align: center; }
.triptych img { width: 144px; height: 144px; image-rendering: pixelated; border: 1px solid var(--line); }
.triptych figcaption { font-size: 12px; color: var(--muted); }
.chart { max-width: 100%; height: auto; display: block; margin: 8px 0; }
.chart-title { font: 600 13px sans-serif; fill: #1c2430; }
.chart-label, .chart-value { font: 12px sans-serif; fill: #1c2430; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; align-items: start; }
.empty { border: 1px dashed var(--line); padding: 12px; color: var(--muted); border-radius: 6px; }
@page { size: A4; margin: 14mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 10.5pt; }
  nav { display: none; }
  h2 { break-after: avoid; page-break-after: avoid; }
  table, .card, figure, .chart { break-inside: avoid; page-break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
  .grid2 { display: block; }
}
"""

_STYLE_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
CSP = (
    "default-src 'none'; img-src data:; "
    f"style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; form-action 'none'"
)

SECTIONS = (
    ("summary", "Summary"),
    ("audit", "Audit outcomes"),
    ("risks", "Risk register"),
    ("evidence", "Evidence for failures and drift"),
    ("integrity", "Integrity"),
    ("methodology", "Methodology"),
)


def _when(value: datetime | None) -> str:
    return "—" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pct(value: float | None) -> str:
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
            el("td", _pct(value / total if total else None), class_="n"),
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


def render_html(report: Report, source: ReportSource, out: TextIO) -> None:
    w = out.write
    title = "seedledger compliance report"
    w("<!DOCTYPE html>\n")
    w(open_tag("html", lang="en"))
    w(
        el(
            "head",
            el("meta", charset="utf-8"),
            el("meta", http_equiv="Content-Security-Policy", content=CSP),
            el("meta", name="viewport", content="width=device-width, initial-scale=1"),
            el("meta", name="generator", content=f"seedledger {report.meta.seedledger_version}"),
            el("title", f"{title} — {_when(report.meta.generated_at)}"),
            el("style", Safe(CSS)),
        )
    )
    w(open_tag("body"))
    w(_header(report, title))
    w(el("nav", el("h3", "Contents"), el("ol", [el("li", el("a", t, href=f"#{i}")) for i, t in SECTIONS])))
    w(_summary(report))
    w(_audit(report))
    _risks(report, source, w)
    _evidence(report, source, w)
    w(_integrity(report))
    w(_methodology(report))
    w(
        el(
            "footer",
            el(
                "p",
                f"Generated by seedledger {report.meta.seedledger_version}. "
                "JSON and CSV reports of the same selection list every record.",
                class_="muted",
            ),
        )
    )
    w(close_tag("body"))
    w(close_tag("html"))
    w("\n")


def _header(report: Report, title: str) -> Safe:
    m = report.meta
    filters = ", ".join(f"{k}={v}" for k, v in m.filters.items()) or "all records"
    return el(
        "header",
        el("h1", title),
        el(
            "p",
            f"Generated {_when(m.generated_at)} · selection: {filters} · records created "
            f"{_when(m.first_created_at)} to {_when(m.last_created_at)} · database engine {m.engine}",
            class_="meta",
        ),
    )


def _summary(report: Report) -> Safe:
    s = report.summary
    shares = s.shares()
    cards = el(
        "div",
        card("outputs recorded", f"{s.total:,}", "summary.total", s.total),
        card("explicit seed", _pct(shares["explicit_seed"]), "summary.explicit_seed", s.explicit_seed),
        card(
            "deterministic scheduler",
            _pct(shares["deterministic_scheduler"]),
            "summary.deterministic_scheduler",
            s.deterministic_scheduler,
        ),
        card(
            "seed-capable model",
            _pct(shares["seed_capable_model"]),
            "summary.seed_capable_model",
            s.seed_capable_model,
        ),
        card(
            "reproducible by design",
            _pct(shares["reproducible_by_design"]),
            "summary.reproducible_by_design",
            s.reproducible_by_design,
            "ok",
        ),
        class_="cards",
    )
    if not s.total:
        return el(
            "section",
            el("h2", "Summary"),
            el("p", "No record matches the selection.", class_="empty"),
            id="summary",
        )
    gauges = _svg.share_gauges(
        "Share of outputs",
        [
            ("explicit seed", s.explicit_seed, s.total),
            ("deterministic scheduler", s.deterministic_scheduler, s.total),
            ("seed-capable model", s.seed_capable_model, s.total),
            ("reproducible by design", s.reproducible_by_design, s.total),
        ],
    )
    counts_detail = el(
        "table",
        el("tr", el("th", "measure"), el("th", "records", class_="n"), el("th", "share", class_="n")),
        [
            el("tr", el("td", label), num(value, f"summary.{key}"), el("td", _pct(shares[key]), class_="n"))
            for key, label, value in (
                ("explicit_seed", "explicit seed", s.explicit_seed),
                ("deterministic_scheduler", "deterministic scheduler", s.deterministic_scheduler),
                ("seed_capable_model", "seed-capable model", s.seed_capable_model),
                ("reproducible_by_design", "reproducible by design", s.reproducible_by_design),
            )
        ],
    )
    return el(
        "section",
        el("h2", "Summary"),
        cards,
        el(
            "p",
            "Reproducible by design: an explicit seed, a deterministic scheduler and a seed-capable model, "
            "all three.",
            class_="muted",
        ),
        el("div", gauges, counts_detail, class_="grid2"),
        el(
            "div",
            _svg.bar_chart("Outputs by model", s.by_model),
            _svg.bar_chart("Outputs by scheduler", s.by_scheduler),
            class_="grid2",
        ),
        el(
            "div",
            _svg.bar_chart("Scheduler kind", s.by_scheduler_kind),
            _svg.bar_chart("Model takes a seed", s.by_seed_support),
            class_="grid2",
        ),
        el("h3", "By modality, backend, source and status"),
        el(
            "div",
            counts_table("modality", s.by_modality, "summary.by_modality", s.total),
            counts_table("backend", s.by_backend, "summary.by_backend", s.total),
            class_="grid2",
        ),
        el(
            "div",
            counts_table("source", s.by_source, "summary.by_source", s.total),
            counts_table("status", s.by_status, "summary.by_status", s.total),
            class_="grid2",
        ),
        el("h3", "By model"),
        counts_table("model", s.by_model, "summary.by_model", s.total),
        el("h3", "By scheduler"),
        counts_table("scheduler", s.by_scheduler, "summary.by_scheduler", s.total),
        id="summary",
    )


def _audit(report: Report) -> Safe:
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
        card("pass rate", _pct(a.pass_rate), "audit.pass_rate", a.pass_rate, "ok"),
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
    run = a.latest_run
    run_p = None
    if run is not None:
        run_p = el(
            "p",
            f"{a.runs:,} audit run(s) cover this selection; the latest, {run.id}, started "
            f"{_when(run.created_at)}, "
            + (f"finished {_when(run.finished_at)}" if run.finished_at else f"{run.status}, not finished")
            + ", backend "
            f"{run.backend or 'each record’s own'}.",
            class_="muted",
        )
    return el(
        "section",
        el("h2", "Audit outcomes"),
        el(
            "p",
            "The latest verdict of each selected record. Pass rate = passed ÷ (audited − skipped); "
            "expected drift (similar on a stochastic scheduler) is set apart from failures.",
            class_="muted",
        ),
        cards,
        run_p,
        _svg.stacked_bar("Outcome of the latest audit, all selected records", segments),
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


def _risks(report: Report, source: ReportSource, w: Any) -> None:
    r = report.risks
    w(open_tag("section", id="risks"))
    w(el("h2", "Risk register"))
    if not r.items:
        w(
            el(
                "p",
                "No warnings recorded for the selected records (run `seedledger check` or an audit to "
                "compute them).",
                class_="empty",
            )
        )
        w(close_tag("section"))
        return
    w(
        el(
            "p",
            el(
                "span",
                f"{r.records_with_warnings:,}",
                data_metric="risks.records_with_warnings",
                data_value=r.records_with_warnings,
            ),
            " selected records carry at least one warning.",
        )
    )
    w(_svg.bar_chart("Records per warning", {i.code: i.count for i in r.items}))
    head = el(
        "tr", el("th", "code"), el("th", "severity"), el("th", "records", class_="n"), el("th", "meaning")
    )
    body = [
        el(
            "tr",
            el("td", el("a", el("code", i.code), href=f"#risk-{i.code}")),
            el("td", i.severity),
            num(i.count, f"risks.count:{i.code}"),
            el("td", i.meaning),
        )
        for i in r.items
    ]
    w(el("table", el("thead", head), el("tbody", body)))
    limit = source.options.html_limit
    for item in r.items:
        w(el("h3", "Affected by ", el("code", item.code), id=f"risk-{item.code}"))
        rows = [
            el(
                "tr",
                el("td", str(x.id), class_="n"),
                el("td", x.model),
                el("td", x.scheduler),
                el("td", "—" if x.seed is None else str(x.seed), class_="n"),
                el("td", x.prompt or "", class_="prompt"),
                el("td", x.detail or ""),
            )
            for x in source.iter_affected(item.code, limit=limit)
        ]
        head = el(
            "tr",
            el("th", "record", class_="n"),
            el("th", "model"),
            el("th", "scheduler"),
            el("th", "seed", class_="n"),
            el("th", "prompt"),
            el("th", "detail"),
        )
        w(el("table", el("thead", head), el("tbody", rows)))
        if item.count > len(rows):
            w(
                el(
                    "p",
                    f"… and {item.count - len(rows):,} more; the JSON and CSV reports list all of them.",
                    class_="muted",
                )
            )
    w(close_tag("section"))


def _img(png: bytes | None, alt: str) -> Safe:
    if png is None:
        return el("div", f"no {alt}", class_="empty")
    return el("img", src=_images.data_uri(png), alt=alt, width=144, height=144)


def _evidence_item(x: EvidenceItem) -> Safe:
    original = _images.thumbnail_png(x.original_thumbnail)
    replay = _images.thumbnail_png(x.replay_thumbnail)
    heat = _images.heat_map(x.original_thumbnail, x.replay_thumbnail)
    figures = [
        el("figure", _img(original, "original thumbnail"), el("figcaption", "original")),
        el("figure", _img(replay, "replay thumbnail"), el("figcaption", "replay")),
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
        el("tr", el("th", k), el("td", _fmt(v), class_="n"))
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
        class_="evidence",
    )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


def _evidence(report: Report, source: ReportSource, w: Any) -> None:
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
                " records failed or drifted. Original and replay thumbnails side by side, with a heat map of "
                "their per-pixel difference.",
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


def _integrity(report: Report) -> Safe:
    i = report.integrity
    cp = i.checkpoint
    sealed = el(
        "p",
        el(
            "span",
            f"{i.sealed_records:,}",
            data_metric="integrity.sealed_records",
            data_value=i.sealed_records,
        ),
        " selected records are sealed in the log; ",
        el(
            "span",
            f"{i.unsealed_records:,}",
            data_metric="integrity.unsealed_records",
            data_value=i.unsealed_records,
        ),
        " are not sealed yet.",
    )
    if cp is None:
        return el(
            "section",
            el("h2", "Integrity"),
            el(
                "p",
                "No checkpoint yet: the log has not been sealed and signed (run `seedledger seal`).",
                class_="empty",
                data_metric="integrity.none",
            ),
            sealed,
            id="integrity",
        )
    rows = [
        ("origin", cp.origin),
        ("tree size", f"{cp.size:,}"),
        ("root (hex)", el("code", cp.root_hex)),
        ("signed at", _when(cp.created_at)),
        ("key name", cp.key_name),
        ("key id", el("code", cp.key_id)),
        ("public key", el("code", cp.verifier)),
        ("checkpoints", f"{i.checkpoints:,}"),
        ("log size now", f"{i.log_size:,}"),
    ]
    parts: list[Any] = [
        el("h2", "Integrity"),
        el("table", [el("tr", el("th", k), el("td", v)) for k, v in rows]),
        sealed,
    ]
    v = i.verification
    if v is None:
        parts.append(el("p", "Verification was not run for this report.", class_="muted"))
    else:
        parts.append(
            el(
                "p",
                el("strong", f"Verification ({v.mode}): "),
                el(
                    "span",
                    "passed" if v.ok else "FAILED",
                    class_="ok" if v.ok else "bad",
                    data_metric="integrity.verified",
                    data_value=str(v.ok).lower(),
                ),
                f" at {_when(v.ran_at)}: {v.detail}.",
            )
        )
    p = i.previous
    if p is not None:
        sig = {True: "signature valid", False: "signature INVALID", None: "signature not checked"}[
            p.signature_ok
        ]
        parts.append(
            el(
                "p",
                el("strong", "Previous checkpoint: "),
                el(
                    "span",
                    "consistent" if p.consistent else "NOT consistent",
                    class_="ok" if p.consistent else "bad",
                    data_metric="integrity.previous_consistent",
                    data_value=str(p.consistent).lower(),
                ),
                f" — size {p.size:,}, root {p.root_hex[:16]}…, {sig}; {p.detail}.",
            )
        )
    parts += [el("h3", "Signed checkpoint (C2SP signed note)"), el("pre", cp.note)]
    return el("section", *parts, id="integrity")


def _methodology(report: Report) -> Safe:
    m = report.methodology

    def kv(data: Mapping[str, Any]) -> Safe:
        return el("table", [el("tr", el("th", k), el("td", v)) for k, v in data.items()])

    return el(
        "section",
        el("h2", "Methodology"),
        el(
            "p",
            "Fingerprint version ",
            el("code", m.fingerprint_version),
            ". Identical is decided by the SHA-256 of the decoded pixels, never by a perceptual hash.",
        ),
        el("h3", "Verdicts"),
        kv(m.verdicts),
        el("h3", "Verdict thresholds"),
        kv(m.thresholds),
        el("h3", "Policy"),
        kv(m.policy),
        el("h3", "Definitions"),
        kv(m.definitions),
        el("h3", "Warnings"),
        kv(m.warnings),
        el("h3", "Known limits"),
        el("ul", [el("li", x) for x in m.known_limits]),
        id="methodology",
    )
