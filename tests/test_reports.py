"""Compliance reports: the four formats agree with each other and with SQL, leak
nothing, escape outside text, and degrade gracefully without audits or checkpoints."""

from __future__ import annotations

import csv
import html.parser
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner
from sqlalchemy import delete, text, update

from ledger.cli import main
from ledger.core.markup import el, escape
from ledger.integrity import Signer, seal
from ledger.reports import FORMATS, ReportOptions, build_report, json_schema, write_report
from ledger.store import Ledger, RecordFilter
from ledger.store.schema import log_entries, records
from tests.cli import seedledger
from tests.conftest import SENTINEL_KEY
from tests.reports_data import HOSTILE_PROMPT, PAYLOAD_B64, populate

N = 150


# -- reading the four formats back ------------------------------------------------------


class _Metrics(html.parser.HTMLParser):
    """Every data-metric/data-value pair in an HTML report, plus every tag seen."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: dict[str, str] = {}
        self.tags: Counter[str] = Counter()
        self.event_attrs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        data = dict(attrs)
        self.event_attrs += [k for k in data if k.startswith("on")]
        if "data-metric" in data:
            self.metrics[str(data["data-metric"])] = str(data.get("data-value"))


def html_metrics(path: Path) -> _Metrics:
    parser = _Metrics()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def _unmd(cell: str) -> str:
    cell = re.sub(r"\\(.)", r"\1", cell.strip())
    return cell.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def md_table(markdown: str, heading: str) -> dict[str, list[str]]:
    """The first table after ``heading``: first cell → the other cells."""
    lines = markdown[markdown.index(heading + "\n") :].splitlines()[1:]
    rows: dict[str, list[str]] = {}
    started = False
    for line in lines:
        if line.startswith("|"):
            started = True
            cells = [_unmd(c) for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not cells[0].startswith("---"):
                rows[cells[0]] = cells[1:]
        elif started:
            break
    return rows


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def write_all(
    ledger: Ledger, tmp_path: Path, where: RecordFilter | None = None, **options: Any
) -> dict[str, Path]:
    out = {}
    for fmt in FORMATS:
        path = tmp_path / f"report.{fmt}"
        write_report(ledger, where, fmt, path, ReportOptions(**options))
        out[fmt] = path
    return out


def sql(ledger: Ledger, query: str) -> list[tuple[Any, ...]]:
    with ledger.reading() as conn:
        return [tuple(row) for row in conn.execute(text(query))]


LATEST = "SELECT * FROM audit_results WHERE id IN (SELECT max(id) FROM audit_results GROUP BY record_id)"


@pytest.fixture
def populated(ledger: Ledger) -> Ledger:
    populate(ledger, N)
    seal(ledger, Signer.generate("example.org/reports"))
    return ledger


# -- the numbers agree ------------------------------------------------------------------


def test_numbers_agree_across_formats_and_with_sql(populated: Ledger, tmp_path: Path) -> None:
    ledger = populated
    paths = write_all(ledger, tmp_path)
    report = json.loads(paths["json"].read_text(encoding="utf-8"))
    jsonschema.validate(report, json_schema(), cls=jsonschema.Draft202012Validator)
    rows = read_csv(paths["csv"])
    metrics = html_metrics(paths["html"]).metrics
    markdown = paths["md"].read_text(encoding="utf-8")
    s, a = report["summary"], report["audit"]

    # Direct SQL, written independently of the report's queries.
    total = sql(ledger, "SELECT count(*) FROM records")[0][0]
    by_model = dict(sql(ledger, "SELECT model, count(*) FROM records GROUP BY model"))
    by_backend = dict(sql(ledger, "SELECT backend, count(*) FROM records GROUP BY backend"))
    by_source = dict(sql(ledger, "SELECT source, count(*) FROM records GROUP BY source"))
    by_modality = dict(sql(ledger, "SELECT modality, count(*) FROM records GROUP BY modality"))
    explicit = sql(ledger, "SELECT count(*) FROM records WHERE seed IS NOT NULL")[0][0]
    # The catalog's facts for the fixture: DPM++ 2M Karras is deterministic; a Default
    # scheduler resolves to a deterministic one for runware:101@1 (flow-match Euler) and
    # on the reference backend, and is unknown otherwise; openai models take no seed.
    deterministic = sql(
        ledger,
        "SELECT count(*) FROM records WHERE scheduler = 'DPM++ 2M Karras' "
        "OR (scheduler IS NULL AND (model = 'runware:101@1' OR backend = 'reference'))",
    )[0][0]
    capable = sql(ledger, "SELECT count(*) FROM records WHERE model NOT LIKE 'openai:%'")[0][0]
    by_design = sql(
        ledger,
        "SELECT count(*) FROM records WHERE seed IS NOT NULL AND model NOT LIKE 'openai:%' AND "
        "(scheduler = 'DPM++ 2M Karras' OR "
        "(scheduler IS NULL AND (model = 'runware:101@1' OR backend = 'reference')))",
    )[0][0]
    outcomes = dict(sql(ledger, f"SELECT outcome, count(*) FROM ({LATEST}) l GROUP BY outcome"))
    verdicts = dict(sql(ledger, f"SELECT verdict, count(*) FROM ({LATEST}) l GROUP BY verdict"))
    audited = sum(outcomes.values())
    never = sql(ledger, "SELECT count(*) FROM records WHERE id NOT IN (SELECT record_id FROM audit_results)")[
        0
    ][0]
    warnings = dict(sql(ledger, "SELECT code, count(*) FROM record_warnings GROUP BY code"))
    sealed = sql(ledger, "SELECT count(*) FROM log_entries WHERE entry_type = 'record'")[0][0]
    evidence = sum(v for k, v in outcomes.items() if k in ("fail", "expected-drift"))
    assert total == N and 0 < audited < N and never == N - audited and evidence > 0

    # JSON == SQL
    assert s["total"] == total
    assert s["by_model"] == by_model and s["by_backend"] == by_backend
    assert s["by_source"] == by_source and s["by_modality"] == by_modality
    assert s["counts"] == {
        "explicit_seed": explicit,
        "deterministic_scheduler": deterministic,
        "seed_capable_model": capable,
        "reproducible_by_design": by_design,
    }
    assert s["shares"]["reproducible_by_design"] == round(by_design / total, 4)
    assert a["by_outcome"] == outcomes and a["by_verdict"] == verdicts
    assert a["audited"] == audited and a["never_audited"] == never
    evaluated = audited - outcomes.get("skipped", 0)
    assert a["pass_rate"] == round(outcomes.get("pass", 0) / evaluated, 4)
    assert a["expected_drift"] == outcomes.get("expected-drift", 0) and a["failed"] == outcomes.get("fail", 0)
    assert {i["code"]: i["count"] for i in report["risks"]["items"]} == warnings
    for item in report["risks"]["items"]:  # all affected records, not the first N
        assert len(item["records"]) == item["count"]
    assert len(report["evidence"]) == evidence == a["evidence_count"]
    assert report["integrity"]["sealed_records"] == sealed == total
    assert report["integrity"]["verification"]["ok"] is True
    assert report["integrity"]["verification"]["mode"] == "full"  # the default re-hashes every row
    assert report["integrity_status"] == "passed" and report["first_divergence"] is None
    assert len(report["records"]) == total

    # CSV == SQL (one row per record)
    assert len(rows) == total
    assert Counter(r["model"] for r in rows) == by_model
    assert Counter(r["backend"] for r in rows) == by_backend
    assert sum(r["explicit_seed"] == "true" for r in rows) == explicit
    assert sum(r["deterministic_scheduler"] == "true" for r in rows) == deterministic
    assert sum(r["seed_capable"] == "true" for r in rows) == capable
    assert sum(r["reproducible_by_design"] == "true" for r in rows) == by_design
    assert Counter(r["outcome"] for r in rows if r["outcome"]) == outcomes
    assert Counter(r["verdict"] for r in rows if r["verdict"]) == verdicts
    assert sum(not r["outcome"] for r in rows) == never
    assert Counter(c for r in rows for c in r["warnings"].split(";") if c) == warnings
    assert {int(r["seed"]) for r in rows if r["seed"]} >= {2**64 - 1}  # exact, not a float

    # HTML == SQL
    assert int(metrics["summary.total"]) == total
    for key, value in (
        ("explicit_seed", explicit),
        ("deterministic_scheduler", deterministic),
        ("seed_capable_model", capable),
        ("reproducible_by_design", by_design),
    ):
        assert int(metrics[f"summary.{key}"]) == value
    for model, count in by_model.items():
        assert int(metrics[f"summary.by_model:{model}"]) == count
    for outcome, count in outcomes.items():
        assert int(metrics[f"audit.by_outcome:{outcome}"]) == count
    assert int(metrics["audit.never_audited"]) == never
    assert float(metrics["audit.pass_rate"]) == a["pass_rate"]
    for code, count in warnings.items():
        assert int(metrics[f"risks.count:{code}"]) == count
    assert int(metrics["audit.evidence"]) == evidence
    assert int(metrics["integrity.sealed_records"]) == sealed
    assert metrics["integrity.verified"] == "passed" and "integrity.banner" not in metrics
    by_model_verdicts = dict(
        sql(
            ledger,
            f"SELECT r.model || '|' || l.verdict, count(*) FROM ({LATEST}) l "
            "JOIN records r ON r.id = l.record_id GROUP BY r.model, l.verdict",
        )
    )
    for key, count in by_model_verdicts.items():
        model, verdict = key.split("|")
        assert int(metrics[f"audit.by_model:{model}:{verdict}"]) == count
        assert report["audit"]["by_model"][model][verdict] == count

    # Markdown == SQL
    summary = md_table(markdown, "## Summary")
    assert int(summary["outputs recorded"][0]) == total
    assert int(summary["explicit seed"][0]) == explicit
    assert int(summary["deterministic scheduler"][0]) == deterministic
    assert int(summary["seed-capable model"][0]) == capable
    assert int(summary["reproducible by design"][0]) == by_design
    assert {k: int(v[0]) for k, v in md_table(markdown, "### By model").items() if k != "model"} == by_model
    outcome_rows = md_table(markdown, "### Outcomes")
    assert {k: int(v[0]) for k, v in outcome_rows.items() if k != "outcome" and v[0] != "0"} == outcomes
    audit_rows = md_table(markdown, "## Audit outcomes")
    assert int(audit_rows["never audited"][0]) == never
    assert audit_rows["pass rate"][0] == f"{100 * a['pass_rate']:.1f}%"
    risk_rows = md_table(markdown, "## Risk register")
    assert {k: int(v[1]) for k, v in risk_rows.items() if k != "code"} == warnings


def test_filters_narrow_every_number(populated: Ledger, tmp_path: Path) -> None:
    where = RecordFilter(model="runware:*", backend="a1111")
    paths = write_all(populated, tmp_path, where)
    report = json.loads(paths["json"].read_text(encoding="utf-8"))
    expected = sql(
        populated, "SELECT count(*) FROM records WHERE model LIKE 'runware:%' AND backend = 'a1111'"
    )[0][0]
    assert 0 < expected < N
    assert report["summary"]["total"] == expected == len(report["records"])
    assert report["meta"]["filters"] == {"model": "runware:*", "backend": "a1111"}
    assert len(read_csv(paths["csv"])) == expected
    assert int(html_metrics(paths["html"]).metrics["summary.total"]) == expected
    assert report["audit"]["audited"] + report["audit"]["never_audited"] == expected
    warned = sql(
        populated,
        "SELECT count(DISTINCT w.record_id) FROM record_warnings w JOIN records r ON r.id = w.record_id "
        "WHERE r.model LIKE 'runware:%' AND r.backend = 'a1111'",
    )[0][0]
    assert report["risks"]["records_with_warnings"] == warned


# -- nothing leaks; outside text stays text -----------------------------------------------


def test_no_secret_and_no_base64_payload_in_any_report(populated: Ledger, tmp_path: Path) -> None:
    paths = write_all(populated, tmp_path, html_limit=1000, evidence_limit=1000)
    for fmt, path in paths.items():
        body = path.read_text(encoding="utf-8")
        assert SENTINEL_KEY not in body, fmt
        assert PAYLOAD_B64[:24] not in body and PAYLOAD_B64[-40:] not in body, fmt
        assert "imageBase64Data" not in body and "apiKey" not in body, fmt
    # The only base64 in the HTML is the PNG data URIs of thumbnails and heat maps.
    body = paths["html"].read_text(encoding="utf-8")
    uris = re.findall(r'src="(data:[^"]*)"', body)
    assert uris and len(uris) == body.count("data:") - 1  # the one other is the CSP's img-src
    for uri in uris:
        assert uri.startswith("data:image/png;base64,iVBORw0KGgo"), uri[:40]


def test_prompt_with_html_and_script_is_text(populated: Ledger, tmp_path: Path) -> None:
    paths = write_all(populated, tmp_path, html_limit=1000, evidence_limit=1000)
    body = paths["html"].read_text(encoding="utf-8")
    parsed = html_metrics(paths["html"])
    assert parsed.tags["script"] == 0 and parsed.event_attrs == []
    assert "<script" not in body.lower() and 'onerror="' not in body and "onerror=&quot;" in body
    assert escape(HOSTILE_PROMPT) in body  # shown, escaped
    assert "default-src &#x27;none&#x27;" in body  # and the CSP forbids scripts anyway
    markdown = paths["md"].read_text(encoding="utf-8")
    assert "<script" not in markdown and "&lt;script&gt;" in markdown
    rows = read_csv(paths["csv"])
    assert HOSTILE_PROMPT in {r["prompt"] for r in rows}  # data formats keep the text exact
    report = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert HOSTILE_PROMPT in {r["prompt"] for r in report["records"]}


def test_csv_cells_cannot_become_formulas(ledger: Ledger, tmp_path: Path) -> None:
    populate(ledger, 3)
    with ledger.writing() as conn:
        conn.execute(update(records).values(prompt='=HYPERLINK("http://x")'))
    path = tmp_path / "r.csv"
    write_report(ledger, None, "csv", path)
    prompts = {r["prompt"] for r in read_csv(path)}
    assert prompts == {'\'=HYPERLINK("http://x")'}


def test_markup_builder_escapes_everything() -> None:
    assert el("p", "<b>", title='"x"') == '<p title="&quot;x&quot;">&lt;b&gt;</p>'
    with pytest.raises(ValueError):
        el("script", "x")
    with pytest.raises(ValueError):
        el("img", onerror="x")


# -- graceful without audits, checkpoints or records ------------------------------------


def test_empty_ledger_renders_every_format(ledger: Ledger, tmp_path: Path) -> None:
    paths = write_all(ledger, tmp_path)
    report = json.loads(paths["json"].read_text(encoding="utf-8"))
    jsonschema.validate(report, json_schema(), cls=jsonschema.Draft202012Validator)
    assert report["summary"]["total"] == 0 and report["records"] == []
    assert report["summary"]["shares"]["explicit_seed"] is None
    assert report["audit"]["available"] is False and report["integrity"]["checkpoint"] is None
    assert paths["csv"].read_text(encoding="utf-8").count("\n") == 1
    body = paths["html"].read_text(encoding="utf-8")
    assert "No record matches the selection" in body and "No checkpoint yet" in body


def test_records_without_audit_or_checkpoint(ledger: Ledger, tmp_path: Path) -> None:
    populate(ledger, 20, audited_share=0.0)
    paths = write_all(ledger, tmp_path)
    report = json.loads(paths["json"].read_text(encoding="utf-8"))
    jsonschema.validate(report, json_schema(), cls=jsonschema.Draft202012Validator)
    assert report["audit"]["available"] is False
    assert report["audit"]["never_audited"] == 20 and report["audit"]["pass_rate"] is None
    assert report["integrity"]["checkpoint"] is None and report["integrity"]["unsealed_records"] == 20
    metrics = html_metrics(paths["html"]).metrics
    assert "audit.none" in metrics and "integrity.none" in metrics
    markdown = paths["md"].read_text(encoding="utf-8")
    assert "No audit yet" in markdown and "No checkpoint yet" in markdown


# -- integrity ----------------------------------------------------------------------------


def test_previous_checkpoint_consistency(ledger: Ledger, tmp_path: Path) -> None:
    signer = Signer.generate("example.org/reports")
    populate(ledger, 30, seed=1)
    seal(ledger, signer)
    first = tmp_path / "first.json"
    write_report(ledger, None, "json", first)
    populate(ledger, 30, seed=2)
    seal(ledger, signer)

    later = build_report(ledger, None, ReportOptions(previous_checkpoint=first))
    previous = later.integrity.previous
    assert previous is not None and previous.consistent and previous.signature_ok
    assert previous.size < later.integrity.checkpoint.size  # type: ignore[union-attr]

    # A bare signed note works too.
    note = tmp_path / "cp.note"
    note.write_text(json.loads(first.read_text(encoding="utf-8"))["integrity"]["checkpoint"]["note"], "utf-8")
    assert build_report(ledger, None, ReportOptions(previous_checkpoint=note)).integrity.previous.consistent  # type: ignore[union-attr]

    # A checkpoint of another log (another key and history) is not consistent.
    other = tmp_path / "other.note"
    from ledger.integrity.note import Checkpoint, sign_checkpoint

    other.write_text(sign_checkpoint(Checkpoint("example.org/reports", 5, b"\x01" * 32), signer), "utf-8")
    bad = build_report(ledger, None, ReportOptions(previous_checkpoint=other)).integrity.previous
    assert bad is not None and not bad.consistent and bad.signature_ok
    forged = tmp_path / "forged.note"
    forged.write_text(
        sign_checkpoint(
            Checkpoint("example.org/reports", 5, b"\x01" * 32), Signer.generate("example.org/reports")
        ),
        "utf-8",
    )
    bad = build_report(ledger, None, ReportOptions(previous_checkpoint=forged)).integrity.previous
    assert bad is not None and not bad.consistent and bad.signature_ok is False


def test_tampered_log_fails_verification(populated: Ledger, tmp_path: Path) -> None:
    with populated.writing() as conn:
        conn.execute(update(records).where(records.c.id == 5).values(prompt="changed after sealing"))
    # The cheap check (signature, root over the stored leaf hashes) cannot see a row
    # change, and says so instead of "passed"; the default re-hashes every row and names it.
    cheap = build_report(populated, None, ReportOptions(verify="leaf-hashes")).integrity
    assert cheap.verification is not None and cheap.verification.status == "not-rehashed"
    assert not cheap.verification.ok and cheap.status() == "not-rehashed"
    assert "rows not re-hashed" in cheap.verification.scope
    paths = write_all(populated, tmp_path)
    report = json.loads(paths["json"].read_text(encoding="utf-8"))
    jsonschema.validate(report, json_schema(), cls=jsonschema.Draft202012Validator)
    assert report["integrity"]["verification"]["ok"] is False
    assert report["integrity"]["verification"]["mode"] == "full"
    assert "changed-row" in report["integrity"]["verification"]["detail"]
    assert html_metrics(paths["html"]).metrics["integrity.verified"] == "failed"
    assert "**Verification (full: " in paths["md"].read_text(encoding="utf-8")


def test_rewritten_leaf_fails_the_checkpoint_check(populated: Ledger, tmp_path: Path) -> None:
    with populated.writing() as conn:
        conn.execute(update(log_entries).where(log_entries.c.leaf_index == 3).values(leaf_hash=b"\x00" * 32))
    cheap = ReportOptions(verify="leaf-hashes")
    verification = build_report(populated, None, cheap).integrity.verification
    assert verification is not None and verification.mode == "leaf-hashes" and verification.failed
    assert "do not hash to the signed root" in verification.detail
    with populated.writing() as conn:
        conn.execute(delete(log_entries).where(log_entries.c.leaf_index == 7))
    verification = build_report(populated, None, cheap).integrity.verification
    assert verification is not None and not verification.ok and "only leaves 0…6" in verification.detail


# -- writing --------------------------------------------------------------------------------


def test_a_failed_render_leaves_no_partial_file(
    populated: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "out").mkdir()
    path = tmp_path / "out" / "report.json"
    path.write_text("previous report", encoding="utf-8")
    from ledger.reports import _build

    def boom(self: Any) -> Any:
        yield from ()
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(_build.ReportSource, "iter_records", boom)
    with pytest.raises(RuntimeError):
        write_report(populated, None, "json", path)
    assert path.read_text(encoding="utf-8") == "previous report"
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.json"]


def test_cli_report(sqlite_url: str, tmp_path: Path) -> None:
    with Ledger.open(sqlite_url) as ledger:
        populate(ledger, 25)
    out = tmp_path / "r.json"
    run = seedledger(
        "--db",
        sqlite_url,
        "--json",
        "report",
        "--format",
        "json",
        "--out",
        str(out),
        "--model",
        "runware:101@1",
    )
    assert run.code == 0, run.err
    summary = run.json()
    report = json.loads(out.read_text(encoding="utf-8"))
    assert summary["records"] == report["summary"]["total"] == len(report["records"]) > 0
    assert set(report["summary"]["by_model"]) == {"runware:101@1"}

    runner = CliRunner()
    missing = runner.invoke(
        main, ["--db", sqlite_url, "report", "--format", "md", "--out", str(tmp_path / "no" / "r.md")]
    )
    assert missing.exit_code == 2
    assert missing.stderr.startswith("seedledger: error: directory for the report does not exist")
    bad = tmp_path / "bad.note"
    bad.write_text("not a checkpoint", encoding="utf-8")
    wrong = runner.invoke(
        main,
        ["--db", sqlite_url, "report", "--out", str(tmp_path / "r.html"), "--previous-checkpoint", str(bad)],
    )
    assert wrong.exit_code == 2 and "no readable checkpoint" in wrong.stderr
    assert not (tmp_path / "r.html").exists()
