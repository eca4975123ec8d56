"""diff, lineage, pick and stamp: on real ledgers (both engines) and through the CLI."""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
from pathlib import Path
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner
from PIL import Image, PngImagePlugin

from ledger.cli import main
from ledger.core.documents import parse_documents
from ledger.errors import InvalidInputError, LedgerError, UsageError
from ledger.integrity import Signer, seal
from ledger.store import Ledger
from ledger.workflows import (
    TRAINED_ALGORITHMIC_MEDIA,
    _media,
    compare,
    import_paths,
    lineage,
    load_pick,
    pick,
    read_stamp,
    stamp_file,
)
from ledger.workflows.stamp import IPTC_EXT_NS, SEEDLEDGER_NS, STAMP_KEYWORD
from tests.cli import Run, seedledger
from tests.factories import exchange, runware_result, runware_task
from tests.workflow_fixtures import a1111_png, comfy_png, exif_image, image


def cli(*args: str) -> Run:
    """The CLI in-process (the subprocess path is covered by the stamp/import test)."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return Run(result.exit_code, result.stdout, result.stderr)


def _runware(ledger: Ledger, seed: int = 42, parent_id: int | None = None, **task: object) -> int:
    (record,) = parse_documents(json.dumps(exchange(seed, **task)))
    return ledger.add([dataclasses.replace(record, parent_id=parent_id)])[0]


# -- diff ---------------------------------------------------------------------------


def test_diff_names_only_cfg_for_a_cfg_step(ledger: Ledger) -> None:
    a = ledger.get(_runware(ledger, CFGScale=7.0))
    b = ledger.get(_runware(ledger, CFGScale=8.0))
    result = compare(a, b)
    assert [c.name for c in result.changes] == ["cfg_scale"]
    (change,) = result.changes
    assert (change.label, change.a, change.b) == ("CFG scale", 7.0, 8.0)
    assert change.fields == ("cfg_scale", "params.CFGScale")
    assert result.controlled and result.warning is None
    # The task UUIDs and output UUIDs differ, but they are bookkeeping.
    bookkeeping = {c.name for c in result.bookkeeping}
    assert {"task_uuid", "output_uuid", "params.taskUUID", "idempotency_key"} <= bookkeeping


def test_diff_flags_uncontrolled_comparisons(ledger: Ledger) -> None:
    a = ledger.get(_runware(ledger, seed=1, steps=20))
    b = ledger.get(_runware(ledger, seed=2, steps=30, positivePrompt="another prompt"))
    result = compare(a, b)
    assert [c.name for c in result.changes] == ["seed", "prompt", "steps"]
    assert not result.controlled
    assert result.warning == (
        "not a controlled comparison: 3 generation parameters changed (seed, prompt, steps)"
    )
    same = compare(a, a)
    assert same.changes == () and same.bookkeeping == ()


def test_diff_a1111_imports_folds_infotext_mirrors(ledger: Ledger, tmp_path: Path) -> None:
    base = "a cat\nSteps: 20, Sampler: Euler, CFG scale: {cfg}, Seed: 7, Size: 64x64, Model: m"
    a1111_png(tmp_path / "a.png", base.format(cfg=7))
    a1111_png(tmp_path / "b.png", base.format(cfg=7.5))
    summary = import_paths(ledger, [tmp_path])
    a, b = (ledger.get(o.record_ids[0]) for o in summary.outcomes)
    result = compare(a, b)
    assert [c.name for c in result.changes] == ["cfg_scale"]
    assert result.changes[0].fields == ("cfg_scale", "params.parameters.CFG scale")
    assert "params.infotext" in {c.name for c in result.bookkeeping}


def test_diff_cli_text_and_json(sqlite_url: str) -> None:
    with Ledger.open(sqlite_url) as ledger:
        a = _runware(ledger, CFGScale=7.0)
        b = _runware(ledger, CFGScale=9.5)
        c = _runware(ledger, seed=5, CFGScale=9.5, steps=40)
    run = cli("--db", sqlite_url, "diff", str(a), str(b))
    assert run.code == 0, run.err
    assert run.out == "CFG scale: 7.0 → 9.5  (also params.CFGScale)\n"
    assert "not a controlled" not in run.err
    run = cli("--db", sqlite_url, "diff", str(a), str(c))
    assert run.out.splitlines() == [
        "seed: 42 → 5  (also params.seed)",
        "steps: 25 → 40  (also params.steps)",
        "CFG scale: 7.0 → 9.5  (also params.CFGScale)",
    ]
    assert "warning: not a controlled comparison: 3 generation parameters changed" in run.err
    data = cli("--db", sqlite_url, "--json", "diff", str(a), str(c)).json()
    assert data["controlled"] is False
    assert [ch["name"] for ch in data["changes"]] == ["seed", "steps", "cfg_scale"]
    missing = cli("--db", sqlite_url, "diff", str(a), "999")
    assert missing.code == 3
    assert missing.err == "seedledger: error: no record with id 999\n"


def test_diff_counts_a_seed_once_and_shows_absent_values(sqlite_url: str) -> None:
    seeded = exchange(1234)
    unseeded_task = runware_task(positivePrompt="another prompt")
    del unseeded_task["negativePrompt"]
    # No seed in the request: the response says which one was used.
    unseeded = {"request": [unseeded_task], "response": {"data": [runware_result(unseeded_task, 5678)]}}
    lines = json.dumps(seeded) + "\n" + json.dumps(unseeded) + "\n"
    assert seedledger("--db", sqlite_url, "record", "-", input=lines).code == 0
    run = seedledger("--db", sqlite_url, "diff", "1", "2")
    assert run.code == 0, run.err
    assert "<object" not in run.out
    assert run.out.splitlines() == [
        "seed: 1234 → 5678  (also params.seed)",
        "prompt: a lighthouse at dusk → another prompt  (also params.positivePrompt)",
        "negative prompt: blurry → absent  (also params.negativePrompt)",
    ]
    assert "3 generation parameters changed (seed, prompt, negative prompt)" in run.err
    data = seedledger("--db", sqlite_url, "--json", "diff", "1", "2").json()
    negative = data["changes"][2]
    assert (negative["a"], negative["b"], negative["b_missing"]) == ("blurry", None, True)


def test_diff_between_a1111_and_comfyui_imports_compares_meaning(sqlite_url: str, tmp_path: Path) -> None:
    a1111_png(
        tmp_path / "a.png",
        "a castle\nSteps: 14, Sampler: Euler, CFG scale: 5.5, Seed: 7, Size: 512x768, Model: dreamshaper_8",
    )
    comfy_png(tmp_path / "c.png")
    assert seedledger("--db", sqlite_url, "import", str(tmp_path)).code == 0
    run = seedledger("--db", sqlite_url, "diff", "1", "2")
    assert run.code == 0, run.err
    names = [line.split(":", 1)[0] for line in run.out.splitlines()]
    assert all(not name.startswith(("params", "graph", "parameters")) for name in names), run.out
    assert len(names) == len(set(names))  # each parameter once
    assert {"backend", "model", "seed", "scheduler", "prompt"} <= set(names)
    assert "steps" not in names and "CFG scale" not in names  # equal in meaning
    assert "different formats (a1111-infotext vs comfyui-api): compared by the record columns" in run.err


def test_diff_of_neighbouring_cfg_sweep_cells_names_only_cfg(sqlite_url: str, tmp_path: Path) -> None:
    from ledger.backends.reference.server import ReferenceServer

    with ReferenceServer.running() as server:
        run = cli(
            "--db", sqlite_url, "--json", "sweep", "--backend", "reference", "--backend-url", server.url,
            "--model", "runware:101@1", "--prompt", "a lighthouse", "--width", "64", "--height", "64",
            "--scheduler", "DPM++ 2M Karras", "--seed", "42", "--cfg", "6..8:1", "--out", str(tmp_path / "s"),
        )  # fmt: skip
    assert run.code == 0, run.err
    with Ledger.open(sqlite_url) as ledger:
        cells = sorted(ledger.query(), key=lambda r: r.cfg_scale or 0)
    assert [r.cfg_scale for r in cells] == [6.0, 7.0, 8.0]
    for a, b in itertools.pairwise(cells):
        run = cli("--db", sqlite_url, "diff", str(a.id), str(b.id))
        assert run.out == f"CFG scale: {a.cfg_scale} → {b.cfg_scale}  (also params.CFGScale)\n"
        assert "not a controlled" not in run.err


# -- lineage ------------------------------------------------------------------------


def test_lineage_tree_with_changes(ledger: Ledger) -> None:
    root = _runware(ledger, seed=10)
    child = _runware(ledger, seed=10, parent_id=root, CFGScale=5.0)
    grandchild = _runware(ledger, seed=10, parent_id=child, CFGScale=5.0, steps=50)
    sibling = _runware(ledger, seed=11, parent_id=root)
    tree = lineage(ledger, child)
    assert tree.focus == child and tree.depth == 1
    assert tree.root.record.id == root and tree.root.changes == ()
    (focus,) = tree.root.children  # only the path to the focus, not its siblings
    assert focus.record.id == child
    assert [c.name for c in focus.changes] == ["cfg_scale"]
    (leaf,) = focus.children
    assert leaf.record.id == grandchild
    assert [c.name for c in leaf.changes] == ["steps"]

    whole = lineage(ledger, root)
    assert [n.record.id for n in whole.root.children] == [child, sibling]
    assert [c.name for c in whole.root.children[1].changes] == ["seed"]
    assert whole.as_dict()["tree"]["children"][0]["children"][0]["id"] == grandchild


def test_lineage_cli(sqlite_url: str) -> None:
    with Ledger.open(sqlite_url) as ledger:
        root = _runware(ledger, seed=10)
        child = _runware(ledger, seed=10, parent_id=root, CFGScale=5.0)
        _runware(ledger, seed=12, parent_id=child, CFGScale=5.0)
    run = cli("--db", sqlite_url, "lineage", str(child))
    assert run.code == 0, run.err
    assert run.out.splitlines() == [
        f" #{root} seed=10 model=runware:101@1",
        f"└─ *#{child} seed=10 model=runware:101@1  [CFG scale: 7.5 → 5.0]",
        f"   └─  #{child + 1} seed=12 model=runware:101@1  [seed: 10 → 12]",
    ]
    data = cli("--db", sqlite_url, "--json", "lineage", str(root)).json()
    assert data["tree"]["children"][0]["changes"][0]["name"] == "cfg_scale"


# -- pick ---------------------------------------------------------------------------


def test_pick_round_trip_keeps_a_full_range_seed(ledger: Ledger, tmp_path: Path) -> None:
    summary = import_paths(ledger, [comfy_png(tmp_path / "castle_00001_.png")])
    record_id = summary.outcomes[0].record_ids[0]
    chosen, path = pick(ledger, record_id, tmp_path / "pick.json")
    assert path == tmp_path / "pick.json"
    document = json.loads(path.read_text())
    assert document["schema"] == "seedledger.pick/1"
    assert document["seed_text"] == str(2**64 - 1)
    loaded = load_pick(path)
    assert loaded == dataclasses.replace(chosen, record=loaded.record)
    assert loaded.seed == 2**64 - 1
    assert loaded.record["model"] == "dreamshaper_8.safetensors"
    assert loaded.params["seeds"]["3"] == 156680208700286


def test_pick_runware_base_params_and_refusals(ledger: Ledger, tmp_path: Path) -> None:
    record_id = _runware(ledger, seed=777)
    chosen, _ = pick(ledger, record_id, tmp_path / "p.json")
    base = chosen.base_params()
    assert base["seed"] == 777 and base["CFGScale"] == 7.5
    no_seed = dataclasses.replace(
        parse_documents(json.dumps(exchange(1)))[0], seed=None, idempotency_key="no-seed"
    )
    (seedless,) = ledger.add([no_seed])
    with pytest.raises(UsageError, match="no captured seed"):
        pick(ledger, seedless, tmp_path / "q.json")
    assert not (tmp_path / "q.json").exists()
    (tmp_path / "bad.json").write_text('{"schema": "other"}')
    with pytest.raises(InvalidInputError, match=r"not a seedledger\.pick/1 file"):
        load_pick(tmp_path / "bad.json")
    with pytest.raises(UsageError, match="run `seedledger pick ID` first"):
        load_pick(tmp_path / "absent.json")


def test_pick_cli_default_file(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Ledger.open(sqlite_url) as ledger:
        record_id = _runware(ledger, seed=2**63 - 1)
    monkeypatch.chdir(tmp_path)
    run = cli("--db", sqlite_url, "--json", "pick", str(record_id))
    assert run.code == 0, run.err
    assert run.json()["seed"] == 2**63 - 1
    assert load_pick(tmp_path / ".seedledger-pick.json").seed == 2**63 - 1


# -- stamp --------------------------------------------------------------------------


def _without(data: bytes, keywords: set[str]) -> bytes:
    out = data[:8]
    for chunk in _media.png_chunks(data):
        decoded = _media.decode_text_chunk(chunk)
        if decoded is None or decoded[0] not in keywords:
            out += data[chunk.start : chunk.end]
    return out


def _pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB").tobytes()


def test_stamp_png_keeps_every_other_byte(ledger: Ledger, tmp_path: Path) -> None:
    original = a1111_png(tmp_path / "orig.png")
    before = original.read_bytes()
    (record_id,) = import_paths(ledger, [original]).outcomes[0].record_ids
    out = tmp_path / "stamped.png"
    result = stamp_file(ledger, record_id, original, out)
    assert result.format == "png" and result.checkpoint is None
    assert original.read_bytes() == before  # --out leaves the input alone
    stamped = out.read_bytes()
    assert _without(stamped, {STAMP_KEYWORD, _media.XMP_KEYWORD}) == before
    text = _media.png_text(stamped)
    assert text["parameters"].startswith("a lighthouse at dusk")
    xmp = text[_media.XMP_KEYWORD]
    assert f'Iptc4xmpExt:DigitalSourceType="{TRAINED_ALGORITHMIC_MEDIA}"' in xmp
    assert f'seedledger:RecordId="{record_id}"' in xmp
    # Well-formed RDF/XML, with the IPTC property in its namespace.
    root = ElementTree.fromstring(xmp)
    (description,) = root.iter("{http://www.w3.org/1999/02/22-rdf-syntax-ns#}Description")
    assert description.get(f"{{{IPTC_EXT_NS}}}DigitalSourceType") == TRAINED_ALGORITHMIC_MEDIA
    assert json.loads(description.get(f"{{{SEEDLEDGER_NS}}}Stamp") or "")["record_id"] == record_id
    stamp = read_stamp(stamped)
    assert stamp is not None and stamp.record_id == record_id
    assert stamp.record["seed"] == 4012345678
    with Image.open(out) as im:  # Pillow reads it as a normal PNG with XMP
        assert TRAINED_ALGORITHMIC_MEDIA.encode() in im.info["xmp"]
        assert json.loads(im.info[STAMP_KEYWORD])["record_id"] == record_id
    # Stamping again replaces, never duplicates.
    stamp_file(ledger, record_id, out)
    keys = [d[0] for c in _media.png_chunks(out.read_bytes()) if (d := _media.decode_text_chunk(c))]
    assert keys.count(STAMP_KEYWORD) == 1 and keys.count(_media.XMP_KEYWORD) == 1


def test_stamp_merges_into_existing_xmp(ledger: Ledger, tmp_path: Path) -> None:
    foreign = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" dc:format="image/png"/>'
        "</rdf:RDF></x:xmpmeta>"
    )
    info = PngImagePlugin.PngInfo()
    info.add_itxt(_media.XMP_KEYWORD, foreign)
    path = tmp_path / "x.png"
    image().save(path, pnginfo=info)
    record_id = _runware(ledger)
    stamp_file(ledger, record_id, path)
    stamp_file(ledger, record_id, path)
    xmp = _media.png_text(path.read_bytes())[_media.XMP_KEYWORD]
    assert 'dc:format="image/png"' in xmp
    assert xmp.count("seedledger:RecordId") == 1
    assert xmp.count("<rdf:Description") == 2
    descriptions = list(
        ElementTree.fromstring(xmp).iter("{http://www.w3.org/1999/02/22-rdf-syntax-ns#}Description")
    )
    assert len(descriptions) == 2


def test_stamp_jpeg_via_xmp_app1_with_checkpoint(ledger: Ledger, tmp_path: Path) -> None:
    path = exif_image(tmp_path / "fox.jpg")
    before = path.read_bytes()
    (record_id,) = import_paths(ledger, [path]).outcomes[0].record_ids
    seal(ledger, Signer.generate("test.example/log"))
    result = stamp_file(ledger, record_id, path)  # in place
    assert result.checkpoint is not None
    assert result.checkpoint["size"] >= 1
    assert result.checkpoint["leaf_index"] == 0
    assert result.checkpoint["note"].startswith("test.example/log\n")
    after = path.read_bytes()
    assert _pixels(after) == _pixels(before)
    with Image.open(path) as im:
        xmp = im.info["xmp"]
        xmp = xmp.decode() if isinstance(xmp, bytes) else xmp
        assert TRAINED_ALGORITHMIC_MEDIA in xmp
        comment = im.getexif().get_ifd(0x8769)[0x9286]
        assert comment.startswith(b"UNICODE\x00")
    stamp = read_stamp(after)
    assert stamp is not None and stamp.record_id == record_id
    assert stamp.checkpoint is not None and stamp.checkpoint["size"] == result.checkpoint["size"]
    # The stamped JPEG links back to its record: importing it adds nothing.
    linked = import_paths(ledger, [path]).outcomes[0]
    assert (linked.status, linked.record_ids) == ("linked", (record_id,))


def test_stamp_failures_leave_the_input_intact(ledger: Ledger, tmp_path: Path) -> None:
    record_id = _runware(ledger)
    good = a1111_png(tmp_path / "good.png")
    before = good.read_bytes()
    with pytest.raises(LedgerError, match="cannot write"):
        stamp_file(ledger, record_id, good, tmp_path / "no" / "such" / "dir.png")
    assert good.read_bytes() == before
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(before[:-20] + bytes(20))
    with pytest.raises(InvalidInputError):
        stamp_file(ledger, record_id, corrupt)
    assert corrupt.read_bytes() == before[:-20] + bytes(20)
    webp = exif_image(tmp_path / "x.webp", fmt="WEBP")
    with pytest.raises(UsageError, match="WEBP"):
        stamp_file(ledger, record_id, webp)
    text = tmp_path / "t.txt"
    text.write_text("hello")
    with pytest.raises(InvalidInputError, match="not a PNG or JPEG"):
        stamp_file(ledger, record_id, text)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_stamp_cli_and_import_reads_it_back(sqlite_url: str, tmp_path: Path) -> None:
    path = comfy_png(tmp_path / "castle_00001_.png")
    run = seedledger("--db", sqlite_url, "--json", "import", str(path))
    record_id = run.json_lines()[0]["record_ids"][0]
    run = seedledger(
        "--db", sqlite_url, "--json", "stamp", str(record_id), str(path), "--out", str(tmp_path / "s.png")
    )
    assert run.code == 0, run.err
    assert run.json() == {
        "record_id": record_id,
        "path": str(tmp_path / "s.png"),
        "format": "png",
        "checkpoint_size": None,
        "leaf_index": None,
    }
    assert "no checkpoint yet" in run.err
    back = seedledger("--db", sqlite_url, "--json", "import", str(tmp_path / "s.png")).json_lines()
    assert back[0]["status"] == "linked" and back[0]["record_ids"] == [record_id]
    missing = seedledger("--db", sqlite_url, "stamp", "999", str(path))
    assert missing.code == 3
