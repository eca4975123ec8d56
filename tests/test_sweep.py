"""Sweeps against the reference server, end to end through the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from ledger.backends.reference.server import ReferenceServer
from ledger.errors import InvalidInputError, UsageError
from ledger.store import Ledger, RecordFilter
from ledger.workflows.sweep import parse_number_range, parse_seed_range, parse_vary, plan_sweep
from tests.cli import seedledger

BASE = [
    "--model",
    "runware:101@1",
    "--prompt",
    "a lighthouse at dusk",
    "--width",
    "128",
    "--height",
    "128",
    "--scheduler",
    "DPM++ 2M Karras",
]


@pytest.fixture(scope="module")
def server() -> Iterator[ReferenceServer]:
    with ReferenceServer.running() as running:
        yield running


def _sweep(db: str, server: ReferenceServer, out: Path, *args: str) -> dict:
    done = seedledger(
        "--db",
        db,
        "--json",
        "sweep",
        "--backend",
        "reference",
        "--backend-url",
        server.url,
        *BASE,
        "--out",
        str(out),
        *args,
    )
    assert done.code == 0, done.err
    return done.json()


def test_seed_sweep_batch_and_cfg_sweep_make_43_records_in_3_experiments(
    sqlite_url: str, server: ReferenceServer, tmp_path: Path
) -> None:
    seeds = _sweep(sqlite_url, server, tmp_path / "seeds", "--seeds", "42..61")
    batch = _sweep(sqlite_url, server, tmp_path / "batch", "--seed", "42", "--count", "8")
    cfg = _sweep(sqlite_url, server, tmp_path / "cfg", "--seed", "42", "--cfg", "1..15:1")
    assert (seeds["kind"], batch["kind"], cfg["kind"]) == ("seed-sweep", "batch", "cfg-sweep")
    assert [len(s["records"]) for s in (seeds, batch, cfg)] == [20, 8, 15]
    with Ledger.open(sqlite_url) as ledger:
        assert ledger.count() == 43
        by_experiment = {
            s["experiment_id"]: ledger.query(RecordFilter(experiment=s["experiment_id"]), order_by="seed")
            for s in (seeds, batch, cfg)
        }
        assert [r.seed for r in by_experiment[seeds["experiment_id"]]] == list(range(42, 62))
        assert [r.seed for r in by_experiment[batch["experiment_id"]]] == list(range(42, 50))
        cfg_records = sorted(by_experiment[cfg["experiment_id"]], key=lambda r: r.cfg_scale or 0)
        assert [r.cfg_scale for r in cfg_records] == [float(c) for c in range(1, 16)]
        assert {r.seed for r in cfg_records} == {42}
        assert all(r.source == "sweep" and r.status == "ok" for recs in by_experiment.values() for r in recs)
        # Every output was fingerprinted as it was stored.
        assert all(ledger.fingerprint_of(r.id) is not None for r in cfg_records)
    for summary, cells in ((seeds, 20), (batch, 8), (cfg, 15)):
        png, page = Path(summary["contact_sheet_png"]), Path(summary["contact_sheet_html"])
        with Image.open(png) as sheet:
            assert sheet.width >= 256 and sheet.height >= 256
        text = page.read_text()
        assert text.count("<figure>") == cells
        assert f"seed {42}" in text


def test_grid_varies_every_combination(sqlite_url: str, server: ReferenceServer, tmp_path: Path) -> None:
    grid = _sweep(
        sqlite_url,
        server,
        tmp_path,
        "--seed",
        "7",
        "--vary",
        "steps=10,20,30",
        "--vary",
        "scheduler=DPM++ 2M Karras,Euler a",
    )
    assert grid["kind"] == "grid" and len(grid["records"]) == 6
    with Ledger.open(sqlite_url) as ledger:
        combos = {
            (r.steps, r.scheduler) for r in ledger.query(RecordFilter(experiment=grid["experiment_id"]))
        }
    assert combos == {(s, k) for s in (10, 20, 30) for k in ("DPM++ 2M Karras", "Euler a")}


def test_failed_cells_are_recorded_not_fatal(sqlite_url: str, tmp_path: Path) -> None:
    with ReferenceServer.running(error_rate=1.0) as failing:
        done = seedledger(
            "--db",
            sqlite_url,
            "--json",
            "sweep",
            "--backend",
            "reference",
            "--backend-url",
            failing.url,
            *BASE,
            "--seeds",
            "1..3",
            "--out",
            str(tmp_path),
        )
    assert done.code == 0, done.err
    summary = done.json()
    assert summary["failures"] == 3
    with Ledger.open(sqlite_url) as ledger:
        assert ledger.count(RecordFilter(status="failed")) == 3


def test_dry_run_prints_the_plan_and_generates_nothing(sqlite_url: str) -> None:
    done = seedledger(
        "--db", sqlite_url, "--json", "sweep", *BASE, "--seed", "5", "--cfg", "1..3:0.5", "--dry-run"
    )
    assert done.code == 0, done.err
    plan = done.json()
    assert [c["CFGScale"] for c in plan["cells"]] == [1.0, 1.5, 2.0, 2.5, 3.0]
    assert seedledger("--db", sqlite_url, "--json", "list").out == ""


def test_plan_parsing() -> None:
    assert parse_seed_range("42..45") == [42, 43, 44, 45]
    assert parse_seed_range("1,5,18446744073709551615") == [1, 5, 2**64 - 1]
    assert parse_number_range("1..2:0.25") == [1.0, 1.25, 1.5, 1.75, 2.0]
    assert parse_number_range("3,5.5") == [3.0, 5.5]
    assert parse_vary("scheduler=DPM++ 2M Karras,Euler a") == ("scheduler", ["DPM++ 2M Karras", "Euler a"])
    assert parse_vary("cfg=3,4.5") == ("CFGScale", [3, 4.5])
    for bad in ("9..1", "1..x", "-1..3"):
        with pytest.raises(UsageError):
            parse_seed_range(bad)
    with pytest.raises(InvalidInputError):
        parse_number_range("5..1")
    with pytest.raises(InvalidInputError):
        parse_vary("seed=1,2")
    assert plan_sweep({"model": "m"}, seed=9).kind == "seed-sweep"
    assert plan_sweep({"model": "m", "seed": 9}).cells[0].seed == 9
    with pytest.raises(UsageError):
        plan_sweep({"model": "m"}, seeds=[1], count=3, seed=1)
    with pytest.raises(UsageError, match="range"):
        plan_sweep({"model": "m"}, seeds=[2**63], backend="runware")


def test_bad_sweep_options_exit_2(sqlite_url: str) -> None:
    for args in (["--seeds", "9..1"], ["--cfg", "abc"], ["--vary", "steps"], ["--count", "3"]):
        done = seedledger("--db", sqlite_url, "sweep", *BASE, *args, "--dry-run")
        assert done.code == 2, (args, done.err)
        assert "Traceback" not in done.err


def test_sweep_json_output_is_stable(sqlite_url: str, server: ReferenceServer, tmp_path: Path) -> None:
    summary = _sweep(sqlite_url, server, tmp_path, "--random", "3")
    assert set(summary) >= {"experiment_id", "kind", "records", "failures", "contact_sheet_html"}
    json.dumps(summary)


def test_video_sweep_records_outputs_with_video_fingerprints(
    sqlite_url: str, server: ReferenceServer, tmp_path: Path
) -> None:
    """A videoInference sweep through the CLI: every output is a video record carrying
    its video fingerprint (sampled frames), and the contact sheet shows each one."""
    done = seedledger(
        "--db", sqlite_url, "--json", "sweep", "--backend", "reference", "--backend-url", server.url,
        "--task", "videoInference", "--model", "runware:101@1", "--prompt", "waves on rocks",
        "--width", "64", "--height", "64", "--duration", "1", "--scheduler", "Euler",
        "--seeds", "7,8", "--out", str(tmp_path / "sheet"),
    )  # fmt: skip
    assert done.code == 0, done.err
    ids = done.json()["records"]
    assert len(ids) == 2
    prints = []
    for rid in ids:
        fp = seedledger("--db", sqlite_url, "--json", "show", str(rid))
        assert fp.code == 0, fp.err
        shown = fp.json()
        assert shown["modality"] == "video"
        assert shown["fingerprint"]["modality"] == "video", shown["fingerprint"]
        assert shown["fingerprint"]["video"]["samples"] >= 8
        prints.append(shown["fingerprint"]["pixel_sha256"])
    assert prints[0] != prints[1]  # another seed, another clip
    sheet = (tmp_path / "sheet" / "contact-sheet.html").read_text()
    assert "not an image" not in sheet
    bad = seedledger(
        "--db", str(tmp_path / "x.db"), "sweep", "--backend", "reference", "--task", "audioInference",
        "--model", "m", "--seeds", "1", "--output-format", "PNG",
    )  # fmt: skip
    assert bad.code == 2 and "--output-format is for image tasks" in bad.err
    assert not (tmp_path / "x.db").exists()
