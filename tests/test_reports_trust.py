"""Reports attest only what was checked (issue 15): the default re-hashes every sealed
row; a divergence is written as evidence, opens every format with FAILED and exits 7;
the cheap mode never says passed; the checking key's provenance is stated; the audit
runs aggregated are listed and an earlier failure is never erased by a later pass."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sqlalchemy import insert, update

from ledger.integrity import Signer, seal
from ledger.integrity.note import Checkpoint, sign_checkpoint
from ledger.reports import FORMATS, ReportOptions, build_report, json_schema, write_report
from ledger.store import Ledger
from ledger.store.schema import audit_results, audit_runs, records
from tests.cli import invoke, seedledger
from tests.factories import new_record, runware_task
from tests.test_reports import html_metrics, read_csv

ORIGIN = "example.org/trust-reports"


def _ledger(url: str, n: int = 6) -> tuple[list[int], Signer]:
    signer = Signer.generate(ORIGIN)
    with Ledger.open(url) as ledger:
        ids = []
        for i in range(n):
            task = runware_task(seed=70 + i, positivePrompt=f"harbour at night {i}")
            ids += ledger.add([new_record(seed=70 + i, prompt=task["positivePrompt"], params=task)])
        seal(ledger, signer)
    return ids, signer


def _report(
    url: str, tmp_path: Path, fmt: str, *args: str, env: dict[str, str] | None = None, process: bool = False
) -> Any:
    """`seedledger report` in this process, or as a real subprocess with ``process``."""
    out = tmp_path / f"report.{fmt}"
    call = seedledger if process else invoke
    run = call("--db", url, "--json", "report", "--format", fmt, "--out", str(out), *args, env=env)
    return run, out


def test_a_row_changed_after_sealing_fails_every_format_and_exits_7(sqlite_url: str, tmp_path: Path) -> None:
    ids, _ = _ledger(sqlite_url)
    for fmt in FORMATS:  # untouched: passes, exit 0, no banner
        run, out = _report(sqlite_url, tmp_path, fmt)
        assert run.code == 0, run.err
        assert run.json()["integrity_status"] == "passed" and run.json()["first_divergence"] is None
    assert "integrity.banner" not in html_metrics(tmp_path / "report.html").metrics
    with Ledger.open(sqlite_url) as ledger, ledger.writing() as conn:
        conn.execute(update(records).where(records.c.id == ids[3]).values(prompt="harbour at noon"))
    where = f"leaf 3 (record {ids[3]}): changed-row"
    for fmt in FORMATS:
        run, out = _report(sqlite_url, tmp_path, fmt, process=fmt == "json")
        assert run.code == 7, (fmt, run.err)
        assert out.exists()  # the evidence is kept
        assert run.err.count("seedledger: error:") == 1 and where in run.err and "Traceback" not in run.err
        text = out.read_text(encoding="utf-8")
        if fmt == "html":
            metrics = html_metrics(out).metrics
            assert metrics["integrity.banner"] == "failed" and metrics["integrity.verified"] == "failed"
            body = text[text.index("<body>") :]
            assert body.index('class="banner"') < body.index("<nav")  # at the top, before the contents
            assert where in body[: body.index("<nav")] and "column prompt" in body[: body.index("<nav")]
        elif fmt == "md":
            head = text.splitlines()[:4]
            assert head[0] == "# seedledger compliance report"
            assert (
                head[2].startswith("> **FAILED: this ledger does not verify.**")
                and "column prompt" in head[2]
            )
        elif fmt == "json":
            report = json.loads(text)
            jsonschema.validate(report, json_schema(), cls=jsonschema.Draft202012Validator)
            assert list(report)[:4] == ["schema", "schema_version", "integrity_status", "first_divergence"]
            assert report["integrity_status"] == "failed" and where in report["first_divergence"]
            divergence = report["integrity"]["verification"]["divergence"]
            assert divergence["columns"] == ["prompt"] and divergence["entry_id"] == ids[3]
        else:
            rows = read_csv(out)
            assert next(iter(rows[0])) == "log_verification"
            assert all(
                r["log_verification"].startswith("FAILED: ") and where in r["log_verification"] for r in rows
            )


def test_the_cheap_mode_is_labelled_and_never_passed(sqlite_url: str, tmp_path: Path) -> None:
    ids, _ = _ledger(sqlite_url)
    with Ledger.open(sqlite_url) as ledger, ledger.writing() as conn:
        conn.execute(update(records).where(records.c.id == ids[1]).values(model="someone:else@1"))
    run, out = _report(sqlite_url, tmp_path, "json", "--verify", "leaf-hashes")
    assert run.code == 0, run.err  # nothing it checks diverged; it does not check rows
    assert "rows not re-hashed" in run.err
    report = json.loads(out.read_text(encoding="utf-8"))
    jsonschema.validate(report, json_schema(), cls=jsonschema.Draft202012Validator)
    v = report["integrity"]["verification"]
    assert (v["mode"], v["status"], v["ok"]) == ("leaf-hashes", "not-rehashed", None)
    assert v["scope"] == "leaf hashes vs signed root; rows not re-hashed"
    assert report["integrity_status"] == "not-rehashed"
    for fmt in ("html", "md"):
        run, out = _report(sqlite_url, tmp_path, fmt, "--verify", "leaf-hashes")
        text = out.read_text(encoding="utf-8")
        start, end = (
            ('id="integrity"', 'id="methodology"') if fmt == "html" else ("## Integrity", "## Methodology")
        )
        section = text[text.index(start) : text.index(end)]
        assert "leaf hashes vs signed root; rows not re-hashed" in section
        assert "passed" not in section.lower()
        assert "leaf hashes vs signed root; rows not re-hashed" in text[: text.index("Summary")]  # banner
    assert html_metrics(out.with_suffix(".html")).metrics["integrity.banner"] == "not-rehashed"


def test_the_report_says_which_key_checked_the_signatures(sqlite_url: str, tmp_path: Path) -> None:
    _, signer = _ledger(sqlite_url)
    self_attested = build_report_json(sqlite_url, tmp_path)
    key = self_attested["integrity"]["verification"]["key"]
    assert key["trusted"] is False
    assert "signed by the key this ledger names" in key["statement"] and "pass `--key`" in key["statement"]
    run, out = _report(sqlite_url, tmp_path, "md", "--key", str(signer.verifier))
    assert run.code == 0, run.err
    text = out.read_text(encoding="utf-8")
    assert f"trusted key {ORIGIN}+{signer.verifier.key_id_hex}" in text
    run, out = _report(sqlite_url, tmp_path, "json", env={"SEEDLEDGER_VERIFIER_KEY": str(signer.verifier)})
    key = json.loads(out.read_text(encoding="utf-8"))["integrity"]["verification"]["key"]
    assert key["trusted"] is True and key["key_id"] == signer.verifier.key_id_hex
    # A key that did not sign the log: the report fails (exit 7), it does not fall back.
    other = Signer.generate(ORIGIN).verifier
    run, out = _report(sqlite_url, tmp_path, "json", "--key", str(other))
    assert run.code == 7 and "bad-signature" in run.err


def build_report_json(url: str, tmp_path: Path) -> Any:
    run, out = _report(url, tmp_path, "json")
    assert run.code == 0, run.err
    return json.loads(out.read_text(encoding="utf-8"))


# -- audit history ---------------------------------------------------------------------------


def _run(conn: Any, backend: str, at: datetime, results: dict[int, tuple[str, str]]) -> str:
    run_id = str(uuid.uuid4())
    conn.execute(
        insert(audit_runs).values(
            id=run_id,
            created_at=at,
            finished_at=at + timedelta(minutes=5),
            status="finished",
            backend=backend,
            backend_url=None,
            selection={},
            policy={},
            options={},
            selected_count=len(results),
            summary={},
        )
    )
    for record_id, (verdict, outcome) in results.items():
        conn.execute(
            insert(audit_results).values(
                run_id=run_id,
                record_id=record_id,
                verdict=verdict,
                outcome=outcome,
                warnings=[],
                created_at=at + timedelta(minutes=1),
            )
        )
    return run_id


def test_reports_list_the_runs_and_keep_an_earlier_failure(ledger: Ledger, tmp_path: Path) -> None:
    ids = ledger.add([new_record(seed=i, prompt=f"p{i}") for i in range(4)])
    first = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    second = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    with ledger.writing() as conn:
        run_a = _run(
            conn,
            "reference",
            first,
            {ids[0]: ("different", "fail"), ids[1]: ("different", "fail"), ids[2]: ("identical", "pass")},
        )
        run_b = _run(conn, "runware", second, {ids[1]: ("identical", "pass")})  # a sampled re-audit
    report = build_report(ledger)
    a = report.audit
    assert [(r.id, r.backend, r.results) for r in a.run_list] == [
        (run_a, "reference", 3),
        (run_b, "runware", 1),
    ]
    assert a.earlier_failures == 1 and a.failed == 1 and a.passed == 2
    paths = {}
    for fmt in FORMATS:
        paths[fmt] = tmp_path / f"h.{fmt}"
        write_report(ledger, None, fmt, paths[fmt], ReportOptions())
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    jsonschema.validate(data, json_schema(), cls=jsonschema.Draft202012Validator)
    assert [r["id"] for r in data["audit"]["runs_aggregated"]] == [run_a, run_b]
    assert data["audit"]["runs_aggregated"][0]["created_at"] == "2026-03-01T09:00:00Z"
    assert data["audit_history"] == [
        {
            "record_id": ids[1],
            "failed_run_id": run_a,
            "failed_at": "2026-03-01T09:01:00Z",
            "latest_run_id": run_b,
            "latest_at": "2026-03-02T09:01:00Z",
            "latest_outcome": "pass",
            "latest_verdict": "identical",
        }
    ]
    by_id = {r["id"]: r for r in data["records"]}
    assert by_id[ids[1]]["earlier_failure"] == {"run_id": run_a, "at": "2026-03-01T09:01:00Z"}
    assert by_id[ids[0]]["earlier_failure"] is None  # its latest result is the failure itself
    sentence = f"failed in run {run_a} on 2026-03-01 09:01:00 UTC, pass (identical) in run {run_b}"
    html = paths["html"].read_text(encoding="utf-8")
    assert sentence in html and run_a in html and "runware" in html
    assert html_metrics(paths["html"]).metrics["audit.earlier_failures"] == "1"
    markdown = paths["md"].read_text(encoding="utf-8")
    assert sentence.replace("-", "\\-") in markdown or sentence in markdown
    assert run_b in markdown.split("### Earlier failures")[0]  # the runs table
    rows = {int(r["record_id"]): r for r in read_csv(paths["csv"])}
    assert rows[ids[1]]["earlier_failure"] == f"failed in run {run_a} at 2026-03-01T09:01:00Z"
    assert rows[ids[0]]["earlier_failure"] == ""


@pytest.mark.parametrize("nest", ["[" * 100_000 + "]" * 100_000, '{"integrity":' * 100_000 + "1"])
def test_a_deeply_nested_previous_report_is_one_line_bad_input(
    sqlite_url: str, tmp_path: Path, nest: str
) -> None:
    _ledger(sqlite_url, 2)
    previous = tmp_path / "previous.json"
    previous.write_text(nest, encoding="utf-8")
    run, out = _report(sqlite_url, tmp_path, "json", "--previous-checkpoint", str(previous))
    assert run.code == 2 and "Traceback" not in run.err and len(run.err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_previous_checkpoint_the_log_does_not_extend_fails_the_report(
    sqlite_url: str, tmp_path: Path
) -> None:
    _, signer = _ledger(sqlite_url, 3)
    other = tmp_path / "other.note"  # same origin and key, another history
    other.write_text(sign_checkpoint(Checkpoint(ORIGIN, 2, b"\x01" * 32), signer), encoding="utf-8")
    run, out = _report(sqlite_url, tmp_path, "md", "--previous-checkpoint", str(other))
    assert run.code == 7 and "does not extend the previous checkpoint" in run.err
    assert out.read_text(encoding="utf-8").splitlines()[2].startswith("> **FAILED")
