"""`seedledger demo` end to end, as a user runs it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.cli import seedledger


@pytest.mark.slow
def test_demo_tells_the_whole_story(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = seedledger("--json", "demo", "--dir", str(out), timeout=300)
    assert done.code == 0, done.err
    summary = json.loads(done.out)
    assert summary["verified"] is True
    outcomes = summary["outcomes"]
    # identical replays, expected drift, a seedless skip, and the detected model change
    assert outcomes.get("pass", 0) >= 1
    assert outcomes.get("expected-drift", 0) >= 1
    assert outcomes.get("skipped", 0) >= 1
    assert outcomes.get("fail", 0) >= 1
    for key in ("report_html", "report_json", "signing_key", "saved_checkpoint"):
        assert Path(summary[key]).is_file(), key
    assert all(Path(p).is_file() for p in summary["contact_sheets"])
    assert "[9/9]" in done.err  # progress went to stderr, data to stdout

    with sqlite3.connect(summary["database"]) as conn:
        rows = dict(
            conn.execute(
                "SELECT r.model || ':' || r.source, count(*) FROM records r GROUP BY r.model, r.source"
            ).fetchall()
        )
        verdict_of = dict(
            conn.execute(
                "SELECT r.model || '/' || coalesce(r.scheduler, '-'), a.verdict FROM audit_results a "
                "JOIN records r ON r.id = a.record_id"
            ).fetchall()
        )
    # traffic came through both the transport (hook) and the proxy
    assert any(k.endswith(":hook") for k in rows) and any(k.endswith(":proxy") for k in rows)
    assert verdict_of["runware:101@1/DPM++ 2M Karras"] in ("different", "similar")  # model changed
    assert verdict_of["civitai:4384@128713/Euler a"] == "similar"
    assert verdict_of["recraft:1@1/-"] == "skipped"
    report = json.loads(Path(summary["report_json"]).read_text())
    assert report["summary"]["total"] == summary["records"]

    again = seedledger("demo", "--dir", str(out), timeout=60)
    assert again.code == 2 and "--force" in again.err
