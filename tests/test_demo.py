"""`seedledger demo` end to end, as a user runs it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.cli import seedledger


@pytest.mark.slow
def test_demo_tells_the_whole_story(demo_run: dict) -> None:
    summary = demo_run
    out = Path(summary["dir"])
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
    assert "[9/9]" in summary["stderr"]  # progress went to stderr, data to stdout
    assert Path(summary["approved_asset"]).is_file()

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
        over_socket = conn.execute(
            "SELECT count(*) FROM records WHERE source = 'proxy' AND prompt LIKE '%over WebSocket'"
        ).fetchone()[0]
    assert over_socket == 3  # numberResults 2 (sync) + 1 async, through the proxy's WebSocket relay
    assert "3 outputs over the proxy's WebSocket (websockets)" in summary["stderr"]
    # traffic came through both the transport (hook) and the proxy
    assert any(k.endswith(":hook") for k in rows) and any(k.endswith(":proxy") for k in rows)
    assert verdict_of["runware:101@1/DPM++ 2M Karras"] in ("different", "similar")  # model changed
    assert verdict_of["civitai:4384@128713/Euler a"] == "similar"
    assert verdict_of["recraft:1@1/-"] == "skipped"
    report = json.loads(Path(summary["report_json"]).read_text())
    assert report["summary"]["total"] == summary["records"]

    again = seedledger("demo", "--dir", str(out), timeout=60)
    assert again.code == 2 and "--force" in again.err


def test_demo_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    done = seedledger("demo", "--dir", str(tmp_path), "--force", timeout=60)
    assert done.code == 2 and "not a demo directory" in done.err
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    unusable = seedledger("demo", "--dir", str(tmp_path / "precious.txt" / "sub"), timeout=60)
    assert unusable.code == 2 and "Traceback" not in unusable.err
    assert len(unusable.err.strip().splitlines()) == 1
