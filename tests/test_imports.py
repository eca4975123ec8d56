"""`seedledger import`: real-format files land field by field, once, on both engines."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import PngImagePlugin

from ledger.core.records import SeedOrigin, Source
from ledger.errors import InvalidInputError
from ledger.store import Ledger, RecordFilter
from ledger.workflows import _media, import_paths, parse_file
from tests.cli import seedledger
from tests.reader_fixtures import flux_custom_graph, png_with_text
from tests.workflow_fixtures import (
    A1111_INFOTEXT,
    COMFY_WORKFLOW,
    JPEG_INFOTEXT,
    a1111_png,
    comfy_graph,
    comfy_png,
    exif_image,
    image,
    runware_jsonl,
)


def _only(summary, status: str = "imported"):  # type: ignore[no-untyped-def]
    (outcome,) = summary.outcomes
    assert outcome.status == status, outcome
    return outcome


def test_a1111_png_every_field_and_idempotent(ledger: Ledger, tmp_path: Path) -> None:
    path = a1111_png(tmp_path / "00042-4012345678.png")
    outcome = _only(import_paths(ledger, [path]))
    assert outcome.kind == "a1111-png"
    assert outcome.added == 1
    record = ledger.get(outcome.record_ids[0])
    assert record.backend == "a1111"
    assert record.source is Source.IMPORT
    assert record.model == "sd_xl_base_1.0"
    assert record.seed == 4012345678
    assert record.seed_origin is SeedOrigin.RESPONSE
    assert record.scheduler == "DPM++ 2M Karras"
    assert record.scheduler_requested == "DPM++ 2M"
    assert record.prompt == "a lighthouse at dusk, (oil painting:1.1)\ndramatic sky"
    assert record.negative_prompt == "blurry, text, watermark"
    assert (record.width, record.height, record.steps, record.cfg_scale) == (96, 64, 30, 6.5)
    assert record.output_format == "PNG"
    p = record.params["parameters"]
    assert p["Schedule type"] == "Karras"
    assert p["Lora hashes"] == "coast: 0a1b2c3d4e, paint: 5f6a7b8c9d"
    assert p["Hires prompt"] == 'a lighthouse, "golden hour"'
    assert (p["Model hash"], p["VAE hash"], p["Clip skip"], p["RNG"], p["ENSD"], p["Version"]) == (
        "31e35c80fc",
        "235745af8d",
        "2",
        "CPU",
        "31337",
        "v1.10.1",
    )
    assert record.params["infotext"] == A1111_INFOTEXT
    assert record.params["import"]["file"] == "00042-4012345678.png"
    assert record.idempotency_key == f"import:{record.params['import']['sha256']}:0"
    # Fingerprinted as it was imported: the stored fingerprint is of this file.
    fp = ledger.fingerprint_of(record.id)
    assert fp.file_sha256 == record.params["import"]["sha256"]
    assert (fp.width, fp.height) == (96, 64)

    again = _only(import_paths(ledger, [path]), "unchanged")
    assert again.record_ids == outcome.record_ids
    assert again.added == 0
    assert ledger.count() == 1


@pytest.mark.parametrize(("fmt", "charset"), [("JPEG", "unicode"), ("JPEG", "ascii"), ("WEBP", "unicode")])
def test_exif_user_comment(ledger: Ledger, tmp_path: Path, fmt: str, charset: str) -> None:
    path = exif_image(tmp_path / f"fox.{fmt.lower()}", fmt=fmt, charset=charset)
    outcome = _only(import_paths(ledger, [path]))
    assert outcome.kind == f"a1111-{fmt.lower()}"
    record = ledger.get(outcome.record_ids[0])
    assert record.seed == 123456789
    assert record.prompt == "a fox in snow"
    assert record.negative_prompt == "lowres"
    assert record.scheduler == "Euler a"
    assert (record.width, record.height, record.steps, record.cfg_scale) == (80, 48, 25, 7.0)
    assert record.model == "v1-5-pruned-emaonly"
    assert record.output_format == ("JPG" if fmt == "JPEG" else "WEBP")
    assert record.params["infotext"] == JPEG_INFOTEXT
    assert ledger.fingerprint_of(record.id).width == 80
    _only(import_paths(ledger, [path]), "unchanged")
    assert ledger.count() == 1


def test_comfyui_png_two_ksamplers(ledger: Ledger, tmp_path: Path) -> None:
    path = comfy_png(tmp_path / "castle_00001_.png")
    outcome = _only(import_paths(ledger, [path]))
    assert outcome.kind == "comfyui-png"
    record = ledger.get(outcome.record_ids[0])
    assert record.backend == "comfyui"
    assert record.seed == 2**64 - 1  # the refine sampler feeding SaveImage
    assert record.seed_origin is SeedOrigin.REQUEST
    assert record.model == "dreamshaper_8.safetensors"
    assert record.scheduler == "dpmpp_2m karras"
    assert record.prompt == 'a castle on a cliff, "storm", 35mm'
    assert record.negative_prompt == "blurry, jpeg artifacts"
    assert (record.steps, record.cfg_scale, record.width, record.height) == (14, 5.5, 768, 1152)
    assert record.params["seeds"] == {"12": 2**64 - 1, "3": 156680208700286}
    assert record.params["samplers"][1]["sampler_name"] == "euler"
    assert record.params["loras"][0]["lora_name"] == "film_grain.safetensors"
    assert record.params["graph"] == comfy_graph()
    assert record.params["workflow"] == COMFY_WORKFLOW
    assert record.params["output_matched_by"] == "only"
    assert ledger.fingerprint_of(record.id).height == 96
    _only(import_paths(ledger, [path]), "unchanged")
    assert ledger.count() == 1


def test_comfyui_api_graph_json_one_record_per_save_node(ledger: Ledger, tmp_path: Path) -> None:
    graph = comfy_graph()
    graph["13"] = {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}}
    graph["14"] = {"class_type": "SaveImage", "inputs": {"filename_prefix": "base", "images": ["13", 0]}}
    # A preview beside real savers is not an output of its own.
    graph["15"] = {"class_type": "PreviewImage", "inputs": {"images": ["13", 0]}}
    path = tmp_path / "queue.json"
    path.write_text(json.dumps({"prompt": graph, "client_id": "abc"}))
    outcome = _only(import_paths(ledger, [path]))
    assert outcome.kind == "comfyui-json"
    first, second = (ledger.get(i) for i in outcome.record_ids)
    assert (first.seed, second.seed) == (2**64 - 1, 156680208700286)
    assert (first.params["output_node"], second.params["output_node"]) == ("9", "14")
    _only(import_paths(ledger, [path]), "unchanged")
    assert ledger.count() == 2


def test_runware_json_lines(ledger: Ledger, tmp_path: Path) -> None:
    path = runware_jsonl(tmp_path / "runware.jsonl")
    outcome = _only(import_paths(ledger, [path]))
    assert outcome.kind == "runware-json"
    assert outcome.added == 3
    records = [ledger.get(i) for i in outcome.record_ids]
    assert [r.seed for r in records] == [11, 2**63 - 1, 987654321]
    assert all(r.source is Source.IMPORT and r.backend == "runware" for r in records)
    assert [r.cfg_scale for r in records] == [7.0, 7.0, 4.5]
    assert records[0].output_uuid == "0b9a7c1e-img-0"
    assert records[0].params["positivePrompt"] == "a koi pond, top view"
    assert "apiKey" not in records[0].params
    assert "sk-should-never-be-stored" not in json.dumps([dict(r.params) for r in records])
    assert records[0].created_at.isoformat().startswith("2026-11-20T10:00:00")
    _only(import_paths(ledger, [path]), "unchanged")
    assert ledger.count() == 3
    # A log that repeats an exchange stores it once (here: in a fresh ledger, then here).
    twice = tmp_path / "twice.jsonl"
    first_line = path.read_text().splitlines()[0]
    twice.write_text(first_line + "\n" + first_line + "\n")
    with Ledger.open(f"sqlite:///{tmp_path / 'fresh.db'}") as fresh:
        fresh_outcome = _only(import_paths(fresh, [twice]))
        assert fresh_outcome.added == 2 and fresh.count() == 2
        assert fresh_outcome.record_ids[:2] == fresh_outcome.record_ids[2:]
    repeated = _only(import_paths(ledger, [twice]), "unchanged")
    assert repeated.record_ids == outcome.record_ids[:2] * 2
    assert ledger.count() == 3


def _png_with_chunks(chunks: list[tuple[bytes, bytes]]) -> bytes:
    out = b"\x89PNG\r\n\x1a\n"
    for ctype, body in chunks:
        out += struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))
    return out


def test_folder_import_skips_bad_files_with_reasons_and_writes_nothing_for_them(
    ledger: Ledger, tmp_path: Path
) -> None:
    folder = tmp_path / "outputs"
    (folder / "nested" / "deeper").mkdir(parents=True)
    a1111_png(folder / "good.png")
    comfy_png(folder / "nested" / "castle_00001_.png")
    runware_jsonl(folder / "nested" / "deeper" / "log.jsonl")
    image().save(folder / "plain.png")  # no metadata
    good = (folder / "good.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    # Metadata fine, pixels undecodable: fingerprinting fails, so nothing is written.
    ihdr = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    (folder / "undecodable.png").write_bytes(
        _png_with_chunks(
            [
                (b"IHDR", ihdr),
                (b"tEXt", b"parameters\x00x\nSteps: 20, Seed: 5, CFG scale: 7"),
                (b"IDAT", b"not zlib at all"),
                (b"IEND", b""),
            ]
        )
    )
    # One good Runware line, one bad one: the whole file is skipped.
    lines = (folder / "nested" / "deeper" / "log.jsonl").read_text().splitlines()
    (folder / "half.jsonl").write_text(lines[0] + '\n{"request": 1}\n')
    bad_seed_graph = comfy_graph(seed_base=2**64)
    (folder / "bad_graph.json").write_text(json.dumps(bad_seed_graph))
    (folder / "notes.txt").write_text("ignored: not a scanned suffix")
    (folder / ".hidden.png").write_bytes(good)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "x\nSteps: 20, Seed: -1, CFG scale: 7")
    image().save(folder / "negative_seed.png", pnginfo=info)

    summary = import_paths(ledger, [folder, tmp_path / "missing.png"])
    by_name = {Path(o.path).name: o for o in summary.outcomes}
    assert set(by_name) == {
        "good.png",
        "castle_00001_.png",
        "log.jsonl",
        "plain.png",
        "truncated.png",
        "undecodable.png",
        "half.jsonl",
        "bad_graph.json",
        "negative_seed.png",
        "missing.png",
    }
    assert {n for n, o in by_name.items() if o.status == "imported"} == {
        "good.png",
        "castle_00001_.png",
        "log.jsonl",
    }
    reasons = {n: o.reason for n, o in by_name.items() if o.status == "skipped"}
    assert "no generation metadata" in reasons["plain.png"]
    assert "truncated PNG" in reasons["truncated.png"]
    assert reasons["undecodable.png"].startswith("cannot fingerprint")
    assert "line 2" in reasons["half.jsonl"]
    assert "node 3" in reasons["bad_graph.json"] and "2^64" in reasons["bad_graph.json"]
    assert reasons["negative_seed.png"].startswith("infotext Seed: seed must be a decimal integer")
    assert reasons["missing.png"] == "no such file or folder"
    assert ledger.count() == 1 + 1 + 3
    assert summary.records_added == 5
    # Nothing of a skipped file was written (not even the good line of half.jsonl,
    # which is also in log.jsonl: its records came from log.jsonl only).
    assert ledger.count(RecordFilter(backend="a1111")) == 1

    again = import_paths(ledger, [folder])
    assert again.records_added == 0
    assert again.count("unchanged") == 3
    assert ledger.count() == 5


def test_nul_characters_and_nan_are_refused_or_kept_verbatim(ledger: Ledger, tmp_path: Path) -> None:
    graph = comfy_graph()
    graph["6"]["inputs"]["text"] = "a castle\x00"
    comfy_png(tmp_path / "nul.png", graph)
    nan_workflow = tmp_path / "nan.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(comfy_graph()))
    info.add_text("workflow", '{"nodes": [], "links": [], "extra": NaN}')
    image().save(nan_workflow, pnginfo=info)
    a1111_png(tmp_path / "huge.png", "x\nSteps: 99999999999, Seed: 1, CFG scale: 7")
    summary = import_paths(ledger, [tmp_path])
    by_name = {Path(o.path).name: o for o in summary.outcomes}
    assert by_name["huge.png"].status == "skipped"
    assert by_name["huge.png"].reason == "steps 99999999999 is out of range"
    assert by_name["nul.png"].status == "skipped"
    assert "NUL" in (by_name["nul.png"].reason or "")
    assert by_name["nan.png"].status == "imported"
    record = ledger.get(by_name["nan.png"].record_ids[0])
    assert record.params["workflow"] == '{"nodes": [], "links": [], "extra": NaN}'


def test_parse_file_refuses_binary_garbage() -> None:
    with pytest.raises(Exception, match="not a PNG/JPEG/WEBP image and not UTF-8"):
        parse_file("x.bin", b"\xff\xfe\x00garbage\x80")


def test_stamped_image_links_back_and_imports_elsewhere(ledger: Ledger, tmp_path: Path) -> None:
    from ledger.workflows import stamp_file

    original = a1111_png(tmp_path / "orig.png")
    (record_id,) = _only(import_paths(ledger, [original])).record_ids
    stamped = tmp_path / "stamped.png"
    stamp_file(ledger, record_id, original, stamped)
    linked = _only(import_paths(ledger, [stamped]), "linked")
    assert linked.record_ids == (record_id,)
    assert ledger.count() == 1

    # A JPEG stamped from a Runware record (no A1111 metadata of its own) imports
    # into another ledger from the stamp's embedded summary, once.
    runware = _only(import_paths(ledger, [runware_jsonl(tmp_path / "rw.jsonl")]))
    source = ledger.get(runware.record_ids[1])
    jpeg = tmp_path / "delivery.jpg"
    image(32, 32).save(jpeg, quality=85)
    stamp_file(ledger, source.id, jpeg)
    assert _only(import_paths(ledger, [jpeg]), "linked").record_ids == (source.id,)
    with Ledger.open(f"sqlite:///{tmp_path / 'other.db'}") as other:
        elsewhere = _only(import_paths(other, [jpeg]))
        assert elsewhere.kind == "seedledger-stamp"
        copy = other.get(elsewhere.record_ids[0])
        assert (copy.seed, copy.model, copy.scheduler_requested) == (
            2**63 - 1,
            "runware:101@1",
            "DPM++ 2M Karras",
        )
        assert (copy.width, copy.steps, copy.cfg_scale) == (1024, 28, 7.0)
        assert copy.idempotency_key == source.idempotency_key
        assert copy.params["stamp"]["record_id"] == source.id
        _only(import_paths(other, [jpeg]), "unchanged")
        assert other.count() == 1


def test_import_cli_json_outcomes_and_summary(sqlite_url: str, tmp_path: Path) -> None:
    a1111_png(tmp_path / "good.png")
    (tmp_path / "bad.json").write_text("{nope")
    png_with_text(tmp_path / "flux.png", {"prompt": json.dumps(flux_custom_graph())})
    lone = {"9": {"class_type": "SaveImage", "inputs": {"images": ["99", 0]}}}
    png_with_text(tmp_path / "dangling.png", {"prompt": json.dumps(lone)})
    run = seedledger("--db", sqlite_url, "--json", "import", str(tmp_path))
    assert run.code == 0, run.err
    rows = {Path(r["path"]).name: r for r in run.json_lines()}
    assert rows["good.png"]["status"] == "imported"
    assert rows["good.png"]["kind"] == "a1111-png"
    assert rows["good.png"]["added"] == 1
    # What was read and what was not, per file.
    assert rows["good.png"]["read"] == [
        "seed",
        "model",
        "sampler",
        "steps",
        "cfg_scale",
        "width",
        "height",
        "prompt",
    ]
    assert rows["good.png"]["not_read"] == [] and rows["good.png"]["notes"] == []
    assert rows["flux.png"]["read"] == ["seed", "model", "sampler", "steps", "width", "height", "prompt"]
    assert rows["flux.png"]["not_read"] == ["cfg_scale"]
    assert rows["dangling.png"]["status"] == "skipped"
    assert rows["dangling.png"]["reason"].startswith("ComfyUI graph: no sampler pass feeds save node 9")
    assert "links to node 99, which is not in the graph" in rows["dangling.png"]["reason"]
    assert rows["bad.json"]["status"] == "skipped"
    assert rows["bad.json"]["reason"].startswith("invalid JSON")
    assert (
        "4 file(s): 2 imported (2 new record(s)), 0 unchanged, 0 linked to stamped records, 2 skipped"
        in run.err
    )
    strict = seedledger("--db", sqlite_url, "import", "--strict", str(tmp_path))
    assert strict.code == 2
    assert "unchanged" in strict.out and "invalid JSON" in strict.out


def test_import_cli_needs_a_path(sqlite_url: str) -> None:
    run = seedledger("--db", sqlite_url, "import")
    assert run.code == 2
    assert "Missing argument" in run.err


def _tiff(order: str, comment: bytes, *, in_ifd0: bool = False) -> bytes:
    """A minimal EXIF TIFF: IFD0 -> Exif IFD -> UserComment (or UserComment in IFD0)."""
    head = (b"II" if order == "<" else b"MM") + struct.pack(order + "HI", 42, 8)
    if in_ifd0:
        ifd0 = struct.pack(order + "H", 1) + struct.pack(order + "HHII", 0x9286, 7, len(comment), 26)
        return head + ifd0 + struct.pack(order + "I", 0) + comment
    ifd0 = (
        struct.pack(order + "H", 1)
        + struct.pack(order + "HHII", 0x8769, 4, 1, 26)
        + struct.pack(order + "I", 0)
    )
    sub = struct.pack(order + "H", 1) + struct.pack(order + "HHII", 0x9286, 7, len(comment), 44)
    return head + ifd0 + sub + struct.pack(order + "I", 0) + comment


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("in_ifd0", [False, True])
def test_exif_user_comment_reader(order: str, in_ifd0: bool) -> None:
    comment = b"UNICODE\x00" + "a fox\nSteps: 2, Seed: 3, CFG scale: 4".encode("utf-16-be")
    tiff = _tiff(order, comment, in_ifd0=in_ifd0)
    assert _media.exif_user_comment(tiff) == comment
    assert _media.exif_user_comment(b"Exif\x00\x00" + tiff) == comment
    assert _media.decode_user_comment(comment) == "a fox\nSteps: 2, Seed: 3, CFG scale: 4"
    le = b"UNICODE\x00" + "a fox".encode("utf-16-le")
    assert _media.decode_user_comment(le) == "a fox"


@pytest.mark.parametrize(
    "tiff",
    [
        b"II*\x00",  # short
        b"XX*\x00\x08\x00\x00\x00",  # no byte order
        b"II+\x00\x08\x00\x00\x00",  # bad magic
        b"II*\x00\xff\x00\x00\x00",  # IFD past the end
        _tiff("<", b"UNICODE\x00" + b"x" * 40)[:-10],  # value past the end
    ],
)
def test_corrupt_exif_is_refused(tiff: bytes) -> None:
    with pytest.raises(InvalidInputError, match="EXIF"):
        _media.exif_user_comment(tiff)
