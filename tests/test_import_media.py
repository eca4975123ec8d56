"""`seedledger import` of video, audio and GLB files: ComfyUI metadata (Video Helper
Suite's ``comment`` tag, native ``prompt``/``workflow`` tags, GLB ``asset.extras``) and
seedledger stamps import as records of their modality with the media fingerprint;
files without metadata are skipped with what they carry. Fixtures are made here."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path
from typing import Any

import av
import pytest

from ledger.store import Ledger
from ledger.workflows.imports import import_paths
from ledger.workflows.stamp import Stamp
from tests import reader_fixtures as rf
from tests.cli import seedledger
from tests.media import animated, chord, mp4, pan, sound


def retag(data: bytes, fmt: str, tags: dict[str, str]) -> bytes:
    """``data`` remuxed (no re-encode) with container tags, as FFmpeg's ``-metadata`` writes them."""
    src = av.open(io.BytesIO(data))
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        for key, value in tags.items():
            out.metadata[key] = value
        streams = {s: out.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream]
            out.mux(packet)
    src.close()
    return buf.getvalue()


def graph_saving(node: dict[str, Any], *, decoder: str = "VAEDecode") -> dict[str, Any]:
    graph = rf.two_pass_noop_seed_graph()
    graph["8"]["class_type"] = decoder
    graph["9"] = node
    return graph


def vhs_mp4(graph: dict[str, Any]) -> bytes:
    # What VHS_VideoCombine writes: one `comment` tag, the API graph as JSON text inside.
    comment = json.dumps({"prompt": json.dumps(graph), "workflow": {"nodes": [], "links": []}})
    return retag(mp4(pan(24)), "mp4", {"comment": comment})


VHS = {
    "class_type": "VHS_VideoCombine",
    "inputs": {"images": ["8", 0], "frame_rate": 12, "filename_prefix": "v"},
}


def glb_with_extras(extras: dict[str, Any] | None) -> bytes:
    import trimesh

    data = trimesh.creation.box().export(file_type="glb")
    json_len = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20 : 20 + json_len])
    if extras is not None:
        doc["asset"]["extras"] = extras
    body = json.dumps(doc).encode()
    body += b" " * (-len(body) % 4)
    rest = data[20 + json_len :]
    out = struct.pack("<II", len(body), 0x4E4F534A) + body + rest
    return b"glTF" + struct.pack("<II", 2, 12 + len(out)) + out


def _one(ledger: Ledger, path: Path) -> Any:
    (outcome,) = import_paths(ledger, [path]).outcomes
    return outcome


def test_vhs_video_combine_mp4_imports_as_a_fingerprinted_video(ledger: Ledger, tmp_path: Path) -> None:
    path = tmp_path / "AnimateDiff_00001.mp4"
    path.write_bytes(vhs_mp4(graph_saving(VHS)))
    outcome = _one(ledger, path)
    assert (outcome.status, outcome.kind) == ("imported", "comfyui-mp4"), outcome
    record = ledger.get(outcome.record_ids[0])
    assert (str(record.modality), record.task_type) == ("video", "videoInference")
    assert (record.seed, record.model, record.steps) == (5550001, "base.safetensors", 20)
    assert record.params["import"]["carrier"] == "mp4:comment"
    assert record.params["output_class"] == "VHS_VideoCombine"
    fp = ledger.fingerprint_of(record.id)
    assert fp.modality == "video" and len(fp.detail.sample_times) >= 8
    assert _one(ledger, path).status == "unchanged"  # re-importing adds nothing


def test_native_tags_in_webm_and_flac_and_a_glb_extras_import_as_their_modality(
    ledger: Ledger, tmp_path: Path
) -> None:
    webm = tmp_path / "clip.webm"
    save_webm = {"class_type": "SaveWEBM", "inputs": {"images": ["8", 0], "filename_prefix": "w"}}
    tags = {"prompt": json.dumps(graph_saving(save_webm)), "workflow": json.dumps({"nodes": []})}
    webm.write_bytes(retag(mp4(pan(12), container="webm"), "webm", tags))
    flac = tmp_path / "song.flac"
    save_audio = {"class_type": "SaveAudio", "inputs": {"audio": ["8", 0], "filename_prefix": "a"}}
    flac_tags = {"prompt": json.dumps(graph_saving(save_audio, decoder="VAEDecodeAudio"))}
    flac.write_bytes(retag(sound(chord(4.0), "flac"), "flac", flac_tags))
    glb = tmp_path / "mesh.glb"
    mesh_graph = graph_saving(
        {"class_type": "SaveGLB", "inputs": {"mesh": ["12", 0], "filename_prefix": "m"}},
        decoder="VAEDecodeHunyuan3D",
    )
    mesh_graph["12"] = {"class_type": "VoxelToMesh", "inputs": {"voxel": ["8", 0], "threshold": 0.6}}
    glb.write_bytes(glb_with_extras({"prompt": json.dumps(mesh_graph)}))
    for path, kind, modality, carrier in (
        (webm, "comfyui-webm", "video", "webm:prompt+workflow"),
        (flac, "comfyui-flac", "audio", "flac:prompt"),
        (glb, "comfyui-glb", "3d", "glb:prompt"),
    ):
        outcome = _one(ledger, path)
        assert (outcome.status, outcome.kind) == ("imported", kind), outcome
        record = ledger.get(outcome.record_ids[0])
        assert str(record.modality) == modality and record.seed == 5550001
        assert record.params["import"]["carrier"] == carrier
        fp = ledger.fingerprint_of(record.id)
        assert fp.modality == modality and fp.detail is not None


def test_a_stamped_mp3_imports_the_stamps_record(ledger: Ledger, tmp_path: Path) -> None:
    stamp = Stamp(
        record_id=77,
        idempotency_key="runware:task-1:0",
        stamped_at="2026-01-02T03:04:05Z",
        checkpoint=None,
        record={"backend": "runware", "model": "runware:101@1", "seed": 42, "modality": "audio"},
    )
    path = tmp_path / "a.mp3"
    path.write_bytes(retag(sound(chord(4.0), "mp3"), "mp3", {"seedledger": stamp.to_json()}))
    outcome = _one(ledger, path)
    assert (outcome.status, outcome.kind) == ("imported", "seedledger-stamp"), outcome
    record = ledger.get(outcome.record_ids[0])
    assert (str(record.modality), record.seed, record.idempotency_key) == ("audio", 42, "runware:task-1:0")
    assert ledger.fingerprint_of(record.id).modality == "audio"


def test_media_without_metadata_are_skipped_with_what_they_carry(ledger: Ledger, tmp_path: Path) -> None:
    files = {
        "plain.wav": sound(chord(1.0)),
        "plain.mp4": mp4(pan(12)),
        "plain.gif": animated(pan(6)),
        "still.gif": animated(pan(1)),
        "plain.glb": glb_with_extras(None),
        "other.mp4": retag(mp4(pan(12)), "mp4", {"comment": "made on my phone"}),
        # VHS metadata, but the file cut in half (the moov box with the tags is lost)
        "cut.mp4": vhs_mp4(graph_saving(VHS))[: len(vhs_mp4(graph_saving(VHS))) // 2],
        "head.mp4": mp4(pan(12))[:64],  # only the ftyp box and a little: FFmpeg cannot open it
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    summary = import_paths(ledger, [tmp_path])  # the folder walk picks media suffixes up
    reasons = {Path(o.path).name: o.reason for o in summary.outcomes}
    assert set(reasons) == set(files)
    assert all(o.status == "skipped" for o in summary.outcomes), summary.outcomes
    assert reasons["plain.wav"] == "WAV has no generation metadata seedledger reads (container tags: none)"
    assert reasons["plain.mp4"] == "MP4 has no generation metadata seedledger reads (container tags: none)"
    assert reasons["other.mp4"].endswith("(container tags: comment, encoder)")
    assert reasons["plain.gif"] == "GIF has no generation metadata seedledger reads (container tags: none)"
    assert reasons["still.gif"] == reasons["plain.gif"]
    assert reasons["plain.glb"].startswith("GLB has no generation metadata seedledger reads (glTF asset")
    unopenable = "MP4 cannot be read (truncated or corrupt): cannot read the media container: "
    assert reasons["head.mp4"] == unopenable + "Invalid data found when processing input"
    # Where a cut falls decides whether FFmpeg opens it with codec-less streams or not at all.
    assert reasons["cut.mp4"].startswith(unopenable) or reasons["cut.mp4"] == (
        "MP4 holds no readable video or audio stream (truncated or corrupt)"
    ), reasons["cut.mp4"]
    assert ledger.count() == 0


def test_cli_import_of_a_video_then_find_by_a_still(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "v.mp4"
    frames = pan(24)
    path.write_bytes(vhs_mp4(graph_saving(VHS)))
    done = seedledger("--db", sqlite_url, "--json", "import", str(path))
    assert done.code == 0, done.err
    still = tmp_path / "still.png"
    from PIL import Image

    Image.fromarray(frames[12]).save(still)
    found = seedledger("--db", sqlite_url, "--json", "find", str(still))
    assert found.code == 0, found.err
    (match,) = found.json_lines()
    assert match["record_id"] == done.json()["record_ids"][0]
    assert match["frame_time_s"] is not None  # matched a sampled frame of the imported video


@pytest.mark.parametrize("fmt", ["GIF", "GIF-still", "WEBP"])
def test_animated_images_with_metadata_are_fingerprinted_as_video(
    ledger: Ledger, tmp_path: Path, fmt: str
) -> None:
    if fmt == "WEBP":
        graph = rf.two_pass_noop_seed_graph()
        graph["9"] = {
            "class_type": "SaveAnimatedWEBP",
            "inputs": {"filename_prefix": "v", "images": ["8", 0]},
        }
        path = rf.animated_webp(tmp_path / "v.webp", graph, {"nodes": [], "links": []})
    else:
        stamp = Stamp(
            record_id=5,
            idempotency_key="k-gif",
            stamped_at="2026-01-02T03:04:05Z",
            checkpoint=None,
            record={"backend": "runware", "model": "m", "seed": 9, "modality": "video"},
        )
        out = io.BytesIO()
        from PIL import Image

        images = [Image.fromarray(f) for f in pan(1 if fmt == "GIF-still" else 6)]
        images[0].save(
            out, format="GIF", save_all=True, append_images=images[1:], duration=80,
            comment=json.dumps({"seedledger": json.loads(stamp.to_json())}).encode(),
        )  # fmt: skip
        path = tmp_path / "v.gif"
        path.write_bytes(out.getvalue())
    outcome = _one(ledger, path)
    assert outcome.status == "imported", outcome
    record = ledger.get(outcome.record_ids[0])
    expected = "image" if fmt == "GIF-still" else "video"  # a one-frame GIF stays a still
    assert str(record.modality) == expected
    assert ledger.fingerprint_of(record.id).modality == expected
