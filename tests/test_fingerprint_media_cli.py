"""`compare`, `fingerprint` and `find` on video, audio and 3D files through the real
console script; the store's per-modality payloads on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
from pathlib import Path

import av
import pytest
import trimesh
from click.testing import CliRunner
from PIL import Image

from ledger.cli import main
from ledger.fingerprint import Verdict, fingerprint
from ledger.store import Ledger
from tests import media
from tests.cli import seedledger
from tests.factories import exchange, new_record


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media")
    clip, tone, torus = media.pan(), media.chord(), trimesh.creation.torus(1.0, 0.3)
    data = {
        "clip.mp4": media.mp4(clip),
        "clip.webm": media.mp4(clip, container="webm"),
        "tone.wav": media.sound(tone),
        "tone.mp3": media.sound(tone, "mp3"),
        "torus.glb": media.mesh_bytes(torus, "glb"),
        "torus.ply": media.mesh_bytes(torus, "ply"),
    }
    with av.open(io.BytesIO(data["clip.mp4"])) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    still = io.BytesIO()
    Image.fromarray(frames[30]).save(still, format="PNG")  # t = 1.25 s, a sampled time
    data["still.png"] = still.getvalue()
    for name, blob in data.items():
        (root / name).write_bytes(blob)
    return {name: root / name for name in data}


def _cli(*args: str) -> dict:
    """In process (each console-script start costs seconds on a busy box)."""
    run = CliRunner().invoke(main, ["--json", *args])
    assert run.exit_code == 0, (args, run.stderr)
    return json.loads(run.stdout)


def _cli_lines(*args: str) -> list[dict]:
    run = CliRunner().invoke(main, ["--json", *args])
    assert run.exit_code == 0, (args, run.stderr)
    return [json.loads(line) for line in run.stdout.splitlines()]


def test_compare_every_modality_and_refuse_across(files: dict[str, Path]) -> None:
    for a, b, verdict, distance in [
        ("clip.mp4", "clip.webm", "near-identical", "frame_phash"),
        ("tone.wav", "tone.mp3", "near-identical", "bit_error_rate"),
        ("torus.glb", "torus.ply", "identical", "d2_distance"),
    ]:
        data = _cli("compare", str(files[a]), str(files[b]))
        assert data["verdict"] == verdict and distance in data and data["same_version"] is True
    mixed = seedledger("compare", str(files["clip.mp4"]), str(files["tone.wav"]))  # the real script
    assert mixed.code == 5 and mixed.out == ""
    assert mixed.err.strip().splitlines() == [
        "seedledger: error: cannot compare video with audio: the modalities differ"
    ]


def test_fingerprint_and_find_every_modality(sqlite_url: str, files: dict[str, Path]) -> None:
    db = ("--db", sqlite_url)
    docs = "\n".join(json.dumps(exchange(seed)) for seed in (1, 2, 3))
    assert seedledger(*db, "record", "-", input=docs).out.split() == ["1", "2", "3"]
    attached = seedledger(*db, "--json", "fingerprint", "1", str(files["clip.mp4"]))
    assert attached.code == 0 and attached.json()["modality"] == "video", attached.err
    for rid, name in ((2, "tone.wav"), (3, "torus.glb")):
        assert _cli(*db, "fingerprint", str(rid), str(files[name]))["attached"] is True
    for name, rid, verdict in [
        ("clip.webm", 1, "near-identical"),
        ("tone.mp3", 2, "near-identical"),
        ("torus.ply", 3, "identical"),
    ]:
        [match] = _cli_lines(*db, "find", str(files[name]))
        assert (match["record_id"], match["verdict"]) == (rid, verdict)
    [frame] = _cli_lines(*db, "find", str(files["still.png"]))
    assert frame["record_id"] == 1 and frame["verdict"] == "identical" and frame["frame_time_s"] == 1.25
    table = seedledger(*db, "find", str(files["still.png"]))
    assert table.out.splitlines()[1].split() == ["1", "identical", "0", "0", "inf", "0", "1.25"]
    assert _cli(*db, "compare", "2", str(files["tone.wav"]))["verdict"] == "identical"


def test_store_round_trips_media_fingerprints(ledger: Ledger, files: dict[str, Path]) -> None:
    fps = [fingerprint(files[name].read_bytes()) for name in ("clip.mp4", "tone.wav", "torus.glb")]
    ids = ledger.add([new_record(seed) for seed in (1, 2, 3)], fingerprints=fps)
    for rid, fp in zip(ids, fps, strict=True):
        assert ledger.fingerprint_of(rid) == fp
    still = fingerprint(files["still.png"].read_bytes())
    [match] = ledger.find_image(still, 8)
    assert match.record_id == ids[0] and match.verdict is Verdict.IDENTICAL and match.frame_time_s == 1.25
    # Replacing a video's fingerprint replaces its frames too: one match, never two.
    ledger.attach_fingerprint(ids[0], fingerprint(files["clip.webm"].read_bytes()), replace=True)
    [again] = ledger.find_image(still, 8)
    assert again.record_id == ids[0] and again.verdict is not Verdict.IDENTICAL


def test_a_still_of_a_large_clip_finds_its_reduced_sampled_frame(ledger: Ledger) -> None:
    # Short side 256: sampled frames' phash come from a libswscale-reduced grey frame,
    # not the still's full-size LANCZOS, and they carry no pixel hash; the still (and a
    # JPEG of it) must still be found, at the sample's time.
    from ledger.fingerprint.video import REDUCED_SIDE

    side = 2 * REDUCED_SIDE
    big = media.field(seed=5, side=side + 80)
    data = media.mp4([big[:side, 3 * i : 3 * i + side].copy() for i in range(24)], fps=24)
    video = fingerprint(data)
    ids = ledger.add([new_record(7)], fingerprints=[video])
    with av.open(io.BytesIO(data)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    detail = video.detail
    k = 6  # a sampled time: t = 0.5 s, frame 12 at 24 fps
    assert detail.sample_times[k] == 0.5
    png, jpeg = io.BytesIO(), io.BytesIO()
    Image.fromarray(decoded[12]).save(png, format="PNG")
    Image.fromarray(decoded[12]).save(jpeg, format="JPEG", quality=92)
    still, lossy = fingerprint(png.getvalue()), fingerprint(jpeg.getvalue())
    assert detail.sample_pixel_sha256[k] == ""
    assert bin(still.phash ^ detail.sample_phash[k]).count("1") <= 4
    [match] = ledger.find_image(still, 8)
    assert match.record_id == ids[0] and match.verdict is Verdict.NEAR_IDENTICAL and match.frame_time_s == 0.5
    [near] = ledger.find_image(lossy, 8)
    assert near.record_id == ids[0] and near.verdict in (Verdict.NEAR_IDENTICAL, Verdict.SIMILAR)
