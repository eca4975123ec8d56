"""Fuzzing `seedledger import` with mutated real files.

Seeds are files in the formats other tools write (A1111 PNG ``parameters`` chunk, EXIF
UserComment in JPEG and WEBP, ComfyUI ``prompt``/``workflow`` chunks, seedledger stamps
in PNG iTXt and JPEG XMP, Runware JSON Lines). Hypothesis mutates their bytes (flips,
truncation, splices, chunks with valid CRCs) and their metadata text (arbitrary infotext,
JSON graphs, stamp fields, JSON Lines). Every file must parse or be refused with a
LedgerError carrying a one-line message; importing it must give an outcome (never a
traceback) and a refused file must leave the database exactly as it was.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import PngImagePlugin

from ledger.cli import main
from ledger.errors import LedgerError
from ledger.store import Ledger
from ledger.workflows import _media, import_paths, parse_file, stamp_file
from tests import reader_fixtures as rf
from tests.workflow_fixtures import a1111_png, comfy_graph, comfy_png, exif_image, image, runware_jsonl

_TEXT = st.text(st.characters(codec="utf-8"), max_size=400)
_SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=15,
)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """One real file of each kind, as bytes."""
    root = tmp_path_factory.mktemp("fuzz-seeds")
    files = {
        "a1111.png": a1111_png(root / "a1111.png"),
        "a1111.jpg": exif_image(root / "a1111.jpg"),
        "a1111.webp": exif_image(root / "a1111.webp", fmt="WEBP"),
        "comfy.png": comfy_png(root / "comfy.png"),
        "runware.jsonl": runware_jsonl(root / "runware.jsonl"),
        "graph.json": root / "graph.json",
    }
    files["graph.json"].write_text(json.dumps(comfy_graph()))
    with Ledger.open(f"sqlite:///{root / 'stamp.db'}") as ledger:
        (rid,) = import_paths(ledger, [files["a1111.png"]], workers=0).outcomes[0].record_ids
        plain_png, plain_jpg = root / "plain.png", root / "plain.jpg"
        image().save(plain_png)
        image(32, 32).save(plain_jpg, quality=85)
        stamp_file(ledger, rid, plain_png)
        stamp_file(ledger, rid, plain_jpg)
    files["stamp.png"], files["stamp.jpg"] = plain_png, plain_jpg
    # Every other reader's format (tests/reader_fixtures.py).
    swarm = {"sui_image_params": {"seed": 3, "model": "m", "steps": 20, "width": 64, "height": 64}}
    files.update(
        {
            "flux.png": rf.png_with_text(root / "flux.png", {"prompt": json.dumps(rf.flux_custom_graph())}),
            "ui.png": rf.png_with_text(root / "ui.png", {"workflow": json.dumps(rf.ui_workflow())}),
            "video.webp": rf.animated_webp(
                root / "v.webp", rf.two_pass_noop_seed_graph(), {"nodes": [], "links": []}
            ),
            "stealth.png": rf.stealth_png(root / "stealth.png"),
            "swarm.jpg": rf.jpeg_with_comment(root / "swarm.jpg", json.dumps(swarm)),
            "civitai.jpg": rf.jpeg_with_comment(root / "civitai.jpg", json.dumps(comfy_graph())),
            "exif.png": rf.png_with_exif_comment(root / "exif.png", "a\nSteps: 5, Sampler: Euler, Seed: 1"),
            "dream.png": rf.png_with_text(root / "dream.png", {"Dream": '"a" -s 5 -S 9 -W 64 -H 64'}),
            "novelai.png": rf.png_with_text(
                root / "novelai.png", {"Software": "NovelAI", "Comment": json.dumps({"seed": 1, "steps": 5})}
            ),
            "drawthings.png": rf.xmp_png(root / "dt.png", rf.drawthings_xmp({"seed": 1, "steps": 5})),
        }
    )
    return {name: path.read_bytes() for name, path in files.items()}


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


@st.composite
def mutated_bytes(draw: st.DrawFn, data: bytes) -> bytes:
    """Byte-level damage: flips, truncation, splices, an extra well-formed chunk."""
    kind = draw(st.sampled_from(["flip", "truncate", "splice", "chunk"]))
    if kind == "truncate":
        return data[: draw(st.integers(0, len(data)))]
    if kind == "splice":
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(max_size=64)) + data[at:]
    if kind == "chunk" and data.startswith(b"\x89PNG"):
        ctype = draw(st.sampled_from([b"tEXt", b"iTXt", b"zTXt", b"IHDR", b"IDAT", b"eXIf", b"abCd"]))
        body = draw(st.binary(max_size=200))
        at = 8 + draw(st.sampled_from([0, 25]))  # before or after IHDR
        return data[:at] + _chunk(ctype, body) + data[at:]
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 8))):
        i = draw(st.integers(0, len(out) - 1))
        out[i] ^= draw(st.integers(1, 255))
    return bytes(out)


def _png_with_text(entries: dict[str, str]) -> bytes:
    import io

    info = PngImagePlugin.PngInfo()
    for key, value in entries.items():
        info.add_itxt(key, value)
    out = io.BytesIO()
    image(16, 16).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def _stamp_variant(seeds: dict[str, bytes], draw: st.DrawFn) -> bytes:
    stamp = json.loads(_media.png_text(seeds["stamp.png"])["seedledger"])
    field = draw(st.sampled_from(sorted(stamp)))
    target = stamp
    if field == "record" and draw(st.booleans()):
        target = stamp["record"]
        field = draw(st.sampled_from(sorted(target)))
    if draw(st.booleans()):
        target[field] = draw(_JSON)
    else:
        del target[field]
    return _media.png_replace_text(seeds["stamp.png"], {"seedledger": json.dumps(stamp)})


@st.composite
def hostile_files(draw: st.DrawFn, seeds: dict[str, bytes]) -> tuple[str, bytes]:
    """(name, bytes): a seed file with damaged bytes or hostile metadata text."""
    how = draw(st.sampled_from(["bytes", "infotext", "exif", "comfy", "stamp", "jsonl"]))
    if how == "bytes":
        name = draw(st.sampled_from(sorted(seeds)))
        return name, draw(mutated_bytes(seeds[name]))
    if how == "infotext":
        base = "a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 16x16"
        text = draw(_TEXT | st.builds(lambda a, b: base[:a] + b + base[a:], st.integers(0, len(base)), _TEXT))
        return "a.png", _png_with_text({"parameters": text})
    if how == "exif":
        import io

        from tests.workflow_fixtures import user_comment

        raw = draw(st.binary(max_size=200) | _TEXT.map(user_comment))
        im = image(16, 16)
        exif = im.getexif()
        exif.get_ifd(0x8769)[0x9286] = raw
        out = io.BytesIO()
        im.save(out, format=draw(st.sampled_from(["JPEG", "WEBP"])), exif=exif.tobytes())
        return "a.jpg", out.getvalue()
    if how == "comfy":
        graph: Any = comfy_graph()
        node = draw(st.sampled_from(sorted(graph)))
        if draw(st.booleans()):
            key = draw(st.sampled_from(sorted(graph[node]["inputs"]) or ["x"]))
            graph[node]["inputs"][key] = draw(_JSON)
        else:
            graph[node] = draw(_JSON)
        entries = {"prompt": json.dumps(graph)}
        if draw(st.booleans()):
            entries["workflow"] = draw(_TEXT | _JSON.map(json.dumps))
        return "castle_00001_.png", _png_with_text(entries)
    if how == "stamp":
        return "stamped.png", _stamp_variant(seeds, draw)
    lines = seeds["runware.jsonl"].decode().splitlines()
    doc = json.loads(lines[0])
    target = draw(st.sampled_from(["request", "response", "data", "task"]))
    value = draw(_JSON)
    if target == "task":
        key = draw(st.sampled_from(sorted(doc["request"][0])))
        doc["request"][0][key] = value
    elif target == "data":
        doc["response"]["data"][0][draw(st.sampled_from(sorted(doc["response"]["data"][0])))] = value
    else:
        doc[target] = value
    lines[0] = json.dumps(doc)
    return "log.jsonl", ("\n".join(lines) + "\n").encode()


def _check_parse(name: str, data: bytes) -> None:
    try:
        parsed = parse_file(name, data)
    except LedgerError as exc:
        assert exc.message and "\n" not in exc.message.strip()
    else:
        assert parsed.records


def test_seed_files_all_import(seeds: dict[str, bytes]) -> None:
    """The unmutated seeds parse (so the mutations start from valid files)."""
    for name, data in seeds.items():
        assert parse_file(name, data).records, name


def test_parse_file_on_hostile_bytes_and_metadata(seeds: dict[str, bytes]) -> None:
    @settings(max_examples=400)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        _check_parse(*data.draw(hostile_files(seeds)))

    run()


@pytest.fixture(scope="module")
def import_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("fuzz-import")
    url = f"sqlite:///{root / 'l.db'}"
    Ledger.open(url).close()
    yield url, root


def _snapshot(url: str) -> tuple[int, int]:
    with Ledger.open(url) as ledger, ledger.reading() as conn:
        records = conn.exec_driver_sql("SELECT count(*) FROM records").scalar_one()
        fingerprints = conn.exec_driver_sql("SELECT count(*) FROM fingerprints").scalar_one()
    return int(records), int(fingerprints)


def test_import_cli_on_hostile_files_never_tracebacks_or_half_writes(
    seeds: dict[str, bytes], import_db: tuple[str, Path]
) -> None:
    url, root = import_db

    @settings(max_examples=60)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        name, blob = data.draw(hostile_files(seeds))
        folder = root / "in"
        folder.mkdir(exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        (folder / name).write_bytes(blob)
        before = _snapshot(url)
        result = CliRunner().invoke(
            main, ["--db", url, "--json", "import", str(folder)], catch_exceptions=True
        )
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        assert result.exit_code == 0, result.output
        (row,) = [json.loads(line) for line in result.stdout.splitlines()]
        after = _snapshot(url)
        if row["status"] == "skipped":
            assert row["reason"] and "\n" not in row["reason"]
            assert after == before
        elif row["status"] == "imported":
            assert after[0] == before[0] + row["added"] > before[0]
        else:
            assert after[0] == before[0]

    run()
