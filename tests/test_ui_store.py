"""The store queries the UI browses with (both engines) and the output archive."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from ledger.errors import InvalidInputError, LedgerError
from ledger.integrity import ENTRY_TYPES, Signer, seal
from ledger.store import Ledger, RecordFilter, browse
from ledger.store.archive import Archive
from tests.factories import new_record


def test_keyset_pages_follow_the_filter_newest_first(ledger: Ledger) -> None:
    ids = ledger.add(
        [
            new_record(seed=s, model="m:1@1" if s % 3 else "m:2@1", tags=("t",) if s % 2 else ())
            for s in range(30)
        ]
    )
    where = RecordFilter(model="m:1@1")
    expected = [i for i, s in zip(ids, range(30), strict=True) if s % 3][::-1]
    seen: list[int] = []
    before = None
    while True:
        page = browse.record_page(ledger, where, before=before, limit=7)
        seen.extend(r.id for r in page.records)
        assert len(page.records) <= 7
        if page.next_before is None:
            break
        before = page.next_before
    assert seen == expected
    tagged = browse.record_page(ledger, RecordFilter(tags=("t",), seed_min=10), limit=100)
    assert [r.seed for r in tagged.records] == [s for s in range(29, 9, -1) if s % 2]
    assert browse.record_page(ledger, RecordFilter(seed=2**64 - 1)).records == ()


def test_siblings_log_positions_and_counts(ledger: Ledger) -> None:
    (root,) = ledger.add([new_record(seed=1)])
    kids = ledger.add([new_record(seed=s, parent_id=root) for s in (2, 3, 4)])
    assert [r.id for r in browse.siblings(ledger, ledger.get(kids[0]))] == kids[1:]
    assert browse.siblings(ledger, ledger.get(root)) == []  # its own task, no parent
    (batch_mate,) = ledger.add([new_record(seed=5, task_uuid=ledger.get(root).task_uuid, output_index=1)])
    assert [r.id for r in browse.siblings(ledger, ledger.get(root))] == [batch_mate]
    assert browse.leaf_index_of(ledger, "record", root) is None
    tables = {name: et.table for name, et in ENTRY_TYPES.items()}
    before = {c.entry_type: c for c in browse.log_counts(ledger, tables)}
    assert before["record"].stored == 5 and before["record"].unsealed == 5
    seal(ledger, Signer.generate("example.org/ui"))
    after = {c.entry_type: c for c in browse.log_counts(ledger, tables)}
    assert after["record"].sealed == 5 and after["record"].unsealed == 0
    assert browse.leaf_index_of(ledger, "record", kids[2]) == 3
    assert set(browse.records_by_id(ledger, [kids[1], root, 999_999])) == {kids[1], root}


def test_experiment_list_counts_members_newest_first(ledger: Ledger) -> None:
    first = ledger.create_experiment("seed-sweep", {}, name="one")
    second = ledger.create_experiment("cfg-sweep", {})
    ledger.add([new_record(seed=s, experiment_id=first) for s in range(3)] + [new_record(seed=9)])
    listed = browse.experiment_list(ledger)
    assert [(x.id, x.kind, x.name, x.records) for x in listed] == [
        (second, "cfg-sweep", None, 0),
        (first, "seed-sweep", "one", 3),
    ]


def test_archive_stores_each_output_once_atomically(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive")
    data = os.urandom(5000)
    sha = archive.put(data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert archive.path_of(sha) == tmp_path / "archive" / sha[:2] / sha[2:4] / sha
    assert archive.put(data) == sha and archive.total_bytes() == 5000  # deduplicated
    assert archive.get(sha) == data and archive.has(sha)
    assert archive.get("0" * 64) is None
    # no temporary file is left beside the stored one
    assert [p.name for p in archive.path_of(sha).parent.iterdir()] == [sha]


def test_archive_caps_and_refuses_damaged_files(tmp_path: Path) -> None:
    capped = Archive(tmp_path / "a", max_object_bytes=100, max_total_bytes=150)
    with pytest.raises(InvalidInputError, match="exceeds the archive's cap"):
        capped.put(b"x" * 101)
    capped.put(b"y" * 100)
    with pytest.raises(InvalidInputError, match="is full"):
        capped.put(b"z" * 60)
    sha = capped.put(b"w" * 40)
    capped.path_of(sha).write_bytes(b"v" * 40)  # swapped on disk
    with pytest.raises(LedgerError, match="does not match its SHA-256"):
        capped.get(sha)
    with pytest.raises(InvalidInputError, match="not a SHA-256"):
        capped.path_of("../../etc/passwd")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInputError, match="not a directory"):
        Archive.open(tmp_path / "file")


def test_sweep_grid_lays_out_the_varied_parameters(sqlite_url: str) -> None:
    from ledger.ui.routes.experiments import grid

    with Ledger.open(sqlite_url) as ledger:
        ids = ledger.add([new_record(seed=s, cfg_scale=c) for s in (7, 5) for c in (3.0, 4.5, 6.0)])
        members = [ledger.get(i) for i in ids]
    two = grid(members)
    assert two["varied"] == ["seed", "CFG"] and two["rows_label"] == "seed" and two["cols"] == [3.0, 4.5, 6.0]
    assert [row["value"] for row in two["rows"]] == ["5", "7"]  # numeric order of the seeds
    assert [[c[0]["id"] for c in row["cells"]] for row in two["rows"]] == [ids[3:], ids[:3]]
    assert two["rows"][0]["cells"][1][0]["caption"] == "seed 5, CFG 4.5"
    one = grid(members[:3])  # one varied parameter reads left to right
    assert one["rows_label"] is None and one["cols_label"] == "CFG" and len(one["rows"]) == 1
    assert grid(members[:1])["varied"] == []


def test_archive_add_then_the_ui_serves_the_original(sqlite_url: str, tmp_path: Path) -> None:
    import io

    import httpx
    import numpy as np
    from PIL import Image

    from tests.cli import seedledger
    from tests.ui_server import ui_server

    def png(seed: int) -> Path:
        out = io.BytesIO()
        Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(
            out, "PNG"
        )
        path = tmp_path / f"out-{seed}.png"
        path.write_bytes(out.getvalue())
        return path

    with Ledger.open(sqlite_url) as ledger:
        (rid,) = ledger.add([new_record(seed=9)])
    output, stranger = png(1), png(2)
    assert seedledger("--db", sqlite_url, "fingerprint", str(rid), str(output)).code == 0
    store = tmp_path / "archive"
    done = seedledger(
        "--db", sqlite_url, "--json", "archive", "add", "--archive", str(store), str(output), str(stranger)
    )
    assert done.code == 0, done.err
    rows = {Path(r["file"]).name: r for r in done.json_lines()}
    assert rows["out-1.png"]["archived"] is True and rows["out-1.png"]["records"] == [rid]
    assert rows["out-2.png"] == {**rows["out-2.png"], "archived": False, "records": []}
    assert "skipped 1" in done.err
    assert Archive(store).get(rows["out-1.png"]["sha256"]) == output.read_bytes()
    assert not Archive(store).has(rows["out-2.png"]["sha256"])
    with ui_server(sqlite_url, "--archive", str(store)) as base:
        page = httpx.get(f"{base}/records/{rid}")
        assert 'class="original"' in page.text and "Original output from the archive" in page.text
        original = httpx.get(f"{base}/media/original/{rid}")
        assert original.content == output.read_bytes() and original.headers["content-type"] == "image/png"
        assert "sandbox" in original.headers["content-security-policy"]
    with ui_server(sqlite_url) as base:  # without the archive: the labelled thumbnail
        assert "Stored 48-pixel thumbnail, not the original" in httpx.get(f"{base}/records/{rid}").text
        assert httpx.get(f"{base}/media/original/{rid}").status_code == 404


def test_a_sweep_keeps_its_outputs_in_the_archive(sqlite_url: str, tmp_path: Path) -> None:
    from ledger.backends.reference.server import ReferenceServer
    from tests.cli import seedledger

    store = tmp_path / "archive"
    with ReferenceServer.running() as server:
        done = seedledger(
            "--db", sqlite_url, "--json", "sweep", "--backend", "reference", "--backend-url", server.url,
            "--model", "runware:101@1", "--prompt", "a lighthouse", "--width", "128", "--height", "128",
            "--seeds", "1..3", "--out", str(tmp_path / "sheet"), "--archive", str(store),
        )  # fmt: skip
    assert done.code == 0, done.err
    ids = done.json()["records"]
    with Ledger.open(sqlite_url) as ledger:
        hashes = {ledger.fingerprint_of(i).file_sha256 for i in ids}
    archive = Archive(store)
    assert len(hashes) == 3 and all(archive.get(h) is not None for h in hashes)
    assert archive.total_bytes() == sum(len(archive.get(h) or b"") for h in hashes)
