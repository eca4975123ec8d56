"""The Markdown report: GitHub-flavoured tables that paste into a ticket.

Outside text is escaped so it stays text: HTML angle brackets become entities, table
pipes and Markdown punctuation are backslash-escaped, newlines become spaces, and
control characters (terminal escapes) become U+FFFD.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from ledger.core.text import strip_controls
from ledger.reports._build import ReportSource
from ledger.reports._environments import differences_text
from ledger.reports._model import OUTCOMES, VERDICTS, Report

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md(value: Any, *, limit: int | None = None) -> str:
    if value is None:
        return "—"
    text = " ".join(strip_controls(str(value)).split())
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def _when(value: datetime | None) -> str:
    return "—" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def table(head: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[bool] | None = None) -> str:
    numeric = numeric or [False] * len(head)
    lines = [
        "| " + " | ".join(md(h) for h in head) + " |",
        "|" + "|".join("---:" if n else "---" for n in numeric) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(c if isinstance(c, _Raw) else md(c) for c in row) + " |")
    return "\n".join(lines) + "\n\n"


class _Raw(str):
    """A cell already formatted (numbers)."""


def n(value: int) -> _Raw:
    return _Raw(str(value))


def counts(title: str, data: Mapping[str, int], total: int) -> str:
    rows = [(k, n(v), _Raw(_pct(v / total if total else None))) for k, v in data.items()]
    return table([title, "records", "share"], rows, [False, True, True])


def render_markdown(report: Report, source: ReportSource, out: TextIO) -> None:
    w = out.write
    m, s, a, r, i = report.meta, report.summary, report.audit, report.risks, report.integrity
    filters = ", ".join(f"{k}={v}" for k, v in m.filters.items()) or "all records"
    w("# seedledger compliance report\n\n")
    failure, status = i.failure(), i.status()
    if failure is not None:
        w(f"> **FAILED: this ledger does not verify.** First divergence: {md(failure)}.\n")
        w("> The report is kept as evidence; its figures come from the rows as they are now.\n\n")
    elif status == "not-rehashed":
        w("> **Integrity: leaf hashes vs signed root; rows not re-hashed.** A row changed after sealing ")
        w("is not found; run the report without `--verify leaf-hashes` to re-hash every row.\n\n")
    elif status == "not-verified" and i.checkpoint is not None:
        w("> **Integrity: not verified for this report** (`--verify none`).\n\n")
    w(
        f"Generated {_when(m.generated_at)} · selection: {md(filters)} · records created "
        f"{_when(m.first_created_at)} to {_when(m.last_created_at)} · engine {m.engine}\n\n"
    )

    w("## Summary\n\n")
    shares = s.shares()
    w(
        table(
            ["measure", "records", "share"],
            [
                ("outputs recorded", n(s.total), _Raw("100%" if s.total else "—")),
                ("explicit seed", n(s.explicit_seed), _Raw(_pct(shares["explicit_seed"]))),
                (
                    "deterministic scheduler",
                    n(s.deterministic_scheduler),
                    _Raw(_pct(shares["deterministic_scheduler"])),
                ),
                ("seed-capable model", n(s.seed_capable_model), _Raw(_pct(shares["seed_capable_model"]))),
                (
                    "reproducible by design",
                    n(s.reproducible_by_design),
                    _Raw(_pct(shares["reproducible_by_design"])),
                ),
            ],
            [False, True, True],
        )
    )
    for title, data in (
        ("modality", s.by_modality),
        ("model", s.by_model),
        ("scheduler", s.by_scheduler),
        ("backend", s.by_backend),
        ("source", s.by_source),
        ("status", s.by_status),
    ):
        w(f"### By {title}\n\n")
        w(counts(title, data, s.total))

    w("## Audit outcomes\n\n")
    if not a.available:
        w(f"No audit yet: none of the {s.total} selected records has an audit result.\n\n")
        w(table(["measure", "records"], [("never audited", n(a.never_audited))], [False, True]))
    else:
        w(
            table(
                ["measure", "records"],
                [
                    ("audited", n(a.audited)),
                    ("never audited", n(a.never_audited)),
                    ("passed", n(a.passed)),
                    ("expected drift", n(a.expected_drift)),
                    ("failed", n(a.failed)),
                    ("errors", n(a.errors)),
                    ("skipped", n(a.skipped)),
                    ("pass rate", _Raw(_pct(a.pass_rate))),
                ],
                [False, True],
            )
        )
        w(f"The latest verdict of each selected record, across {a.runs} audit run(s):\n\n")
        w(
            table(
                ["run", "started", "finished", "status", "backend", "results in selection"],
                [
                    (
                        x.id,
                        _when(x.created_at),
                        _when(x.finished_at),
                        x.status,
                        x.backend or "each record's own",
                        n(x.results),
                    )
                    for x in a.run_list
                ],
                [False, False, False, False, False, True],
            )
        )
        w("### Earlier failures (not erased by a later result)\n\n")
        if not a.earlier_failures:
            w("No selected record failed in an earlier run while its latest result passes.\n\n")
        else:
            shown = list(source.iter_earlier_failures(limit=source.options.html_limit))
            w("".join(f"- record {x.record_id}: {md(x.sentence(_when))}\n" for x in shown) + "\n")
            if a.earlier_failures > len(shown):
                w(f"… and {a.earlier_failures - len(shown)} more (all of them in the JSON report).\n\n")
        for title, by_group in (("model", a.by_model), ("scheduler", a.by_scheduler)):
            cols = [v for v in VERDICTS if any(v in row for row in by_group.values())]
            w(f"### Latest verdict by {title}\n\n")
            w(
                table(
                    [title, *cols],
                    [(k, *(n(row.get(c, 0)) for c in cols)) for k, row in by_group.items()],
                    [False, *([True] * len(cols))],
                )
            )
        w("### Outcomes\n\n")
        w(table(["outcome", "records"], [(o, n(a.by_outcome.get(o, 0))) for o in OUTCOMES], [False, True]))

    w("## Risk register\n\n")
    if not r.items:
        w("No warnings recorded for the selected records.\n\n")
    else:
        w(f"{r.records_with_warnings} selected records carry at least one warning.\n\n")
        w(
            table(
                ["code", "severity", "records", "meaning"],
                [(x.code, x.severity, n(x.count), x.meaning) for x in r.items],
                [False, False, True, False],
            )
        )
        limit = source.options.html_limit
        for item in r.items:
            affected = list(source.iter_affected(item.code, limit=limit))
            w(f"### {md(item.code)}\n\n")
            w(
                table(
                    ["record", "model", "scheduler", "seed", "prompt"],
                    [
                        (
                            n(x.id),
                            x.model,
                            x.scheduler,
                            _Raw("—" if x.seed is None else str(x.seed)),
                            _Raw(md(x.prompt, limit=80)),
                        )
                        for x in affected
                    ],
                    [True, False, False, True, False],
                )
            )
            if item.count > len(affected):
                w(f"… and {item.count - len(affected)} more (all of them in the JSON and CSV reports).\n\n")

    w("## Evidence for failures and drift\n\n")
    if not a.available or not a.evidence:
        w("No failure and no drift.\n\n" if a.available else "No audit yet.\n\n")
    else:
        keys = (
            "phash_distance",
            "dhash_distance",
            "thumb_psnr_db",
            "thumb_mean_abs_diff",
            "pixel_psnr_db",  # full resolution, when the original was archived
            "pixel_ssim",
        )
        rows = []
        for x in source.iter_evidence(limit=source.options.evidence_limit, thumbnails=False):
            rows.append(
                (
                    n(x.record_id),
                    x.outcome,
                    x.verdict,
                    x.model,
                    x.scheduler,
                    *(_Raw(_distance(x.distances, k)) for k in keys),
                )
            )
        w(f"{a.evidence} records failed or drifted (thumbnails and heat maps are in the HTML report).\n\n")
        w(
            table(
                ["record", "outcome", "verdict", "model", "scheduler", *keys],
                rows,
                [True, False, False, False, False, True, True, True, True, True, True],
            )
        )
        if a.evidence > len(rows):
            w(f"… and {a.evidence - len(rows)} more (all of them in the JSON report).\n\n")

    _environments(report, source, w)

    w("## Integrity\n\n")
    cp = i.checkpoint
    if cp is None:
        w("No checkpoint yet: the log has not been sealed and signed.\n\n")
    else:
        w(
            table(
                ["field", "value"],
                [
                    ("origin", cp.origin),
                    ("tree size", n(cp.size)),
                    ("root (hex)", _Raw(f"`{cp.root_hex}`")),
                    ("signed at", _when(cp.created_at)),
                    ("key name", cp.key_name),
                    ("key id", _Raw(f"`{cp.key_id}`")),
                    ("public key", _Raw(f"`{cp.verifier}`")),
                ],
            )
        )
        v = i.verification
        if v is not None:
            verdict = {"passed": "passed", "failed": "FAILED", "not-rehashed": "rows not re-hashed"}[v.status]
            w(f"**Verification ({v.mode}: {md(v.scope)}):** {verdict} at {_when(v.ran_at)}: ")
            w(f"{md(v.detail)}.\n\n")
            if v.divergence is not None and v.divergence.columns:
                w(f"Columns established as changed: {md(', '.join(v.divergence.columns))}.\n\n")
            if v.key is not None:
                w(f"**Signing key:** {md(v.key.statement())}.\n\n")
        p = i.previous
        if p is not None:
            w(
                f"**Previous checkpoint:** {'consistent' if p.consistent else 'NOT consistent'} "
                f"(size {p.size}): {md(p.detail)}.\n\n"
            )
        w("```\n" + cp.note.replace("`", "'") + "```\n\n")
    w(f"Sealed selected records: {i.sealed_records}; not sealed yet: {i.unsealed_records}.\n\n")

    mm = report.methodology
    w("## Methodology\n\n")
    w(f"Fingerprint version `{mm.fingerprint_version}`.\n\n")
    w(table(["threshold", "value"], [(k, _Raw(f"{v:g}")) for k, v in mm.thresholds.items()], [False, True]))
    w(table(["verdict", "meaning"], mm.verdicts.items()))
    w(table(["policy", "rule"], mm.policy.items()))
    w(table(["warning", "meaning"], mm.warnings.items()))
    w("Known limits:\n\n" + "".join(f"- {md(x)}\n" for x in mm.known_limits) + "\n")


def _environments(report: Report, source: ReportSource, w: Any) -> None:
    w("## Runtime environments\n\n")
    if not report.audit.available:
        w("No audit yet.\n\n")
        return
    limit = source.options.html_limit
    groups, distinct, with_env = source.environment_groups(limit=limit)
    w("### Recorded environments of audited records\n\n")
    if not groups:
        w("No audited record reports its runtime (in-process pipelines and A1111/ComfyUI replays do).\n\n")
    else:
        w(f"{with_env} audited records report their runtime, in {distinct} distinct environments.\n\n")
        w(
            table(
                ["environment", "records", "first record"],
                [(g.summary, n(g.records), _Raw(f"#{g.first_record_id}")) for g in groups],
                [False, True, False],
            )
        )
        if distinct > len(groups):
            w(f"… and {distinct - len(groups)} more environments.\n\n")
    w("### Replays that were not identical: environment differences\n\n")
    drifted = source.drifted_count()
    if not drifted:
        w("Every replayed record was identical.\n\n")
        return
    items = list(source.iter_drifted(limit=limit))
    w(f"{drifted} latest replays were near-identical, similar or different.\n\n")
    w(
        table(
            ["record", "verdict", "outcome", "environment differences"],
            [
                (
                    n(x.record_id),
                    x.verdict,
                    x.outcome,
                    differences_text(x.differences, x.environment, x.replay_environment),
                )
                for x in items
            ],
            [True, False, False, False],
        )
    )
    if drifted > len(items):
        w(f"… and {drifted - len(items)} more (all of them in the JSON report).\n\n")


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
