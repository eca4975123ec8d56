"""`seedledger fingerprint`, `compare` and `find`: end to end as the real console
script, and the error cases in process with click's CliRunner (faster)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from ledger.cli import main
from tests.cli import seedledger
from tests.factories import exchange
from tests.test_fingerprint import encode, scene


def _setup(url: str, tmp_path: Path) -> tuple[Path, Path, Path]:
    docs = "\n".join(json.dumps(exchange(seed)) for seed in (1, 2))
    assert seedledger("--db", url, "record", "-", input=docs).out.split() == ["1", "2"]
    img = scene(160, 120, seed=5)
    original, jpeg, other = tmp_path / "a.png", tmp_path / "b.jpg", tmp_path / "c.png"
    original.write_bytes(encode(img))
    jpeg.write_bytes(encode(img, "JPEG", quality=85))
    other.write_bytes(encode(np.ascontiguousarray(scene(160, 120, seed=50))))
    return original, jpeg, other


def test_fingerprint_compare_find_end_to_end(sqlite_url: str, tmp_path: Path) -> None:
    original, jpeg, other = _setup(sqlite_url, tmp_path)
    db = ("--db", sqlite_url)

    attached = seedledger(*db, "--json", "fingerprint", "1", str(original))
    assert attached.code == 0, attached.err
    data = attached.json()
    assert data["record_id"] == 1 and data["attached"] is True
    assert data["width"] == 160 and data["height"] == 120 and len(data["phash"]) == 16
    again = seedledger(*db, "fingerprint", "1", str(original))
    assert again.code == 0 and "same fingerprint already attached" in again.err

    files = seedledger("--json", "compare", str(original), str(jpeg)).json()  # no database needed
    assert files["verdict"] == "near-identical" and files["pixel_equal"] is False
    assert {"phash_distance", "dhash_distance", "thumb_psnr_db", "thumb_mean_abs_diff"} <= set(files)
    by_id = seedledger(*db, "--json", "compare", "1", str(original)).json()
    assert by_id["verdict"] == "identical" and by_id["thumb_psnr_db"] is None
    table = seedledger(*db, "compare", "1", str(other))
    assert table.code == 0 and table.out.splitlines()[0].split() == ["verdict", "different"]

    found = seedledger(*db, "--json", "find", str(jpeg))
    assert found.code == 0, found.err
    [match] = found.json_lines()
    assert match["record_id"] == 1 and match["verdict"] == "near-identical"
    assert seedledger(*db, "--json", "find", str(other)).json_lines() == []
    listed = seedledger(*db, "find", str(original))
    assert listed.out.splitlines()[0].split()[:2] == ["RECORD_ID", "VERDICT"]
    assert listed.out.splitlines()[1].split()[:2] == ["1", "identical"]


def test_errors_are_one_line_with_exit_codes(sqlite_url: str, tmp_path: Path) -> None:
    original, _, other = _setup(sqlite_url, tmp_path)
    db = ("--db", sqlite_url)
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    cases = [
        (("fingerprint", "99", str(original)), 3, "no record with id 99"),
        (("fingerprint", "1", str(text)), 5, "not a supported image"),
        (("fingerprint", "1", str(tmp_path / "missing.png")), 2, "does not exist"),  # usage, not 5
        (("compare", "nothing-here", str(original)), 2, "neither an image file nor a record id"),
        (("compare", "2", str(original)), 3, "record 2 has no fingerprint"),
        (("find", str(original), "--radius", "17"), 2, "17"),
        (("fingerprint", "1", str(original), "--max-pixels", "100"), 5, "above the limit of 100"),
    ]
    runner = CliRunner()
    for args, code, message in cases:
        run = runner.invoke(main, [*db, *args])
        assert run.exit_code == code, (args, run.stderr)
        assert message in run.stderr and "Traceback" not in run.stderr
        assert run.stdout == ""
    assert runner.invoke(main, [*db, "fingerprint", "1", str(original)]).exit_code == 0
    clash = runner.invoke(main, [*db, "fingerprint", "1", str(other)])
    assert clash.exit_code == 2 and "already has a fingerprint of other pixels" in clash.stderr
    replaced = runner.invoke(main, [*db, "--json", "fingerprint", "1", str(other), "--replace"])
    assert replaced.exit_code == 0 and json.loads(replaced.stdout)["attached"] is True
