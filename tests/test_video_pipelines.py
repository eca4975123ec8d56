"""Video fingerprint pipeline 3 (BLAKE3 content hash; large samples reduced in C) and
the pipeline 2 it still computes, so records made before it keep comparing identical."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import av
import blake3
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from ledger.audit.originals import generate_originals, store_originals
from ledger.backends import open_backend
from ledger.backends.reference.server import ReferenceServer
from ledger.cli import main
from ledger.errors import FingerprintError
from ledger.fingerprint import (
    Verdict,
    compare,
    content_equal,
    content_hash_kind,
    fingerprint,
    fingerprint_bytes,
)
from ledger.fingerprint.video import (
    REDUCED_SIDE,
    VIDEO_PIPELINE,
    content_hash_of,
    fingerprint_video,
    pipeline_like,
    pipeline_of,
)
from ledger.store import Ledger
from tests import media
from tests.factories import new_record
from tests.test_audit import audit, by_record
from tests.test_audit_media import media_request


def decoded_frames_hash(data: bytes, digest: Any) -> str:
    """The content hash written out from its definition (``digest`` holds the size
    prefix): per frame its time in ms, pixel format and every plane's rows unpadded."""
    with av.open(io.BytesIO(data)) as container:
        start = None
        for frame in container.decode(video=0):
            start = frame.time if start is None else start
            digest.update(b"t%d:" % round((frame.time - start) * 1000))
            digest.update(frame.format.name.encode() + b":")
            for plane in frame.planes:
                rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
                digest.update(np.ascontiguousarray(rows[:, : plane.width]))
    return str(digest.hexdigest())


@pytest.fixture(scope="module")
def clip() -> bytes:
    return media.mp4(media.pan())


def test_the_content_hash_is_blake3_of_the_decoded_frames_and_sha256_in_pipeline_2(clip: bytes) -> None:
    prefix = b"seedledger-frames:64x64:"
    v3, v2 = fingerprint_video(clip), fingerprint_video(clip, pipeline=2)
    assert VIDEO_PIPELINE == 3 and pipeline_of(v3.version) == 3 and pipeline_of(v2.version) == 2
    assert v3.pixel_sha256 == decoded_frames_hash(clip, blake3.blake3(prefix))
    assert v2.pixel_sha256 == decoded_frames_hash(clip, hashlib.sha256(prefix))
    # Everything but the content hash is pipeline 2's for frames this small.
    assert (v2.detail.sample_phash, v2.detail.strip) == (v3.detail.sample_phash, v3.detail.strip)
    assert v2.detail.sample_pixel_sha256 == v3.detail.sample_pixel_sha256
    assert content_hash_of(v3.version) == "blake3" and content_hash_of(v2.version) == "sha256"
    assert content_hash_of("vfp1+av14") == "sha256" and content_hash_of("img2+pil") is None
    with pytest.raises(FingerprintError, match="pipeline 1 is not one of"):
        fingerprint_video(clip, pipeline=1)


def test_hashes_of_two_kinds_never_decide_identical_and_like_makes_them_one_kind(clip: bytes) -> None:
    old = fingerprint_video(clip, pipeline=2)
    fresh = fingerprint(clip, "video")
    across = compare(old, fresh)
    assert across.verdict is Verdict.NEAR_IDENTICAL and not across.pixel_equal
    assert "two kinds (sha256, blake3)" in across.reason
    assert pipeline_like(old.version) == 2 and pipeline_like(fresh.version) == 3
    replay = fingerprint(clip, "video", like=old)
    assert replay.version == old.version and compare(old, replay).verdict is Verdict.IDENTICAL
    assert fingerprint(clip, "video", like=fresh) == fresh
    # A v1 record (SHA-256 too) is met by pipeline 2; unknown versions get the current one.
    assert pipeline_like("vfp1+av14.0.0") == 2 and pipeline_like("vfp9+x") == VIDEO_PIPELINE


def test_large_sampled_frames_carry_no_full_size_pixel_hash_and_stills_still_match() -> None:
    side = 2 * REDUCED_SIDE
    big = media.field(seed=5, side=side + 80)
    frames = [big[:side, 3 * i : 3 * i + side].copy() for i in range(24)]
    data = media.mp4(frames, fps=24)
    v3, v2 = fingerprint_video(data), fingerprint_video(data, pipeline=2)
    assert set(v3.detail.sample_pixel_sha256) == {""}
    assert all(len(h) == 64 for h in v2.detail.sample_pixel_sha256)
    assert v3.detail.sample_phash == v2.detail.sample_phash  # the same reduced grey frames
    assert v3.detail.strip == v2.detail.strip  # the tiles, exactly as a still's
    # A sample without a pixel hash is never identical, not even to itself.
    frame = v3.detail.frame_fingerprint(6, v3.width, v3.height)
    assert compare(frame, frame).verdict is not Verdict.IDENTICAL
    with av.open(io.BytesIO(data)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    png = io.BytesIO()
    Image.fromarray(decoded[12]).save(png, format="PNG")  # t = 0.5 s, sample 6
    still = fingerprint_bytes(png.getvalue())
    assert still.pixel_sha256 == v2.detail.sample_pixel_sha256[6]
    assert compare(still, frame).verdict is Verdict.NEAR_IDENTICAL


def test_an_audit_of_a_record_fingerprinted_by_pipeline_2_replays_identical(ledger: Ledger) -> None:
    requests = [media_request("video", "Euler"), media_request("video", "Euler a")]
    with ReferenceServer.running() as server:

        async def generate() -> list[Any]:
            backend = open_backend("reference", server.url)
            try:
                return await generate_originals(backend, requests)
            finally:
                await backend.aclose()

        generated = asyncio.run(generate())
        ids = store_originals(ledger, generated, fingerprint=False)
        for rid, g in zip(ids, generated, strict=True):  # as a pipeline 2 ledger stored them
            ledger.attach_fingerprint(rid, fingerprint_video(g.data, pipeline=2))
        outcome = audit(ledger, server.url)
    results = by_record(ledger, outcome.run.id)
    deterministic, stochastic = (results[i] for i in ids)
    assert (deterministic.verdict, deterministic.outcome) == ("identical", "pass"), deterministic.distances
    assert deterministic.replay["fingerprint_version"].startswith("vfp2+")
    assert stochastic.verdict == "similar" and stochastic.outcome == "expected-drift"


def test_cli_compare_of_a_file_with_a_pipeline_2_record_hashes_the_file_like_it(
    sqlite_url: str, tmp_path: Path, clip: bytes
) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(clip)
    with Ledger.open(sqlite_url) as ledger:
        [rid] = ledger.add([new_record(1)], fingerprints=[fingerprint_video(clip, pipeline=2)])
    for args in ((str(path), str(rid)), (str(rid), str(path))):
        run = CliRunner().invoke(main, ["--json", "--db", sqlite_url, "compare", *args])
        assert run.exit_code == 0, run.output
        data = json.loads(run.stdout)
        assert data["verdict"] == "identical" and data["same_version"] is True, data
    # Two files: both fingerprinted by the current pipeline.
    run = CliRunner().invoke(main, ["--json", "compare", str(path), str(path)])
    assert json.loads(run.stdout)["version_a"].startswith("vfp3+")


def test_cli_find_of_a_video_finds_a_pipeline_2_record_identical(
    sqlite_url: str, tmp_path: Path, clip: bytes
) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(clip)
    other = media.mp4(media.pan(seed=3))
    with Ledger.open(sqlite_url) as ledger:
        ids = ledger.add(
            [new_record(1), new_record(2), new_record(3)],
            fingerprints=[
                fingerprint_video(clip, pipeline=2),  # stored before pipeline 3
                fingerprint_video(clip),
                fingerprint_video(other, pipeline=2),
            ],
        )
    run = CliRunner().invoke(main, ["--json", "--db", sqlite_url, "find", str(path), "--radius", "16"])
    assert run.exit_code == 0, run.output
    found = {row["record_id"]: row for row in map(json.loads, run.stdout.splitlines())}
    assert found[ids[0]]["verdict"] == "identical" and found[ids[0]]["version_b"].startswith("vfp2+")
    assert found[ids[1]]["verdict"] == "identical" and found[ids[1]]["version_b"].startswith("vfp3+")
    assert ids[2] not in found or found[ids[2]]["verdict"] != "identical"


def test_the_hashing_thread_lags_the_decoder_by_a_bounded_number_of_frames() -> None:
    from ledger.fingerprint.video import in_flight_frames

    assert in_flight_frames(1920 * 1080 * 3 // 2) == 10  # 1080p 4:2:0, 32 MiB of slack
    assert in_flight_frames(4096 * 4096 * 6) == 2  # never fewer than 2
    assert in_flight_frames(16 * 16) == 64  # tiny frames: a fixed cap, not 131,072
    assert in_flight_frames(0) == 64


def test_animated_gif_samples_keep_their_pixel_hash_in_every_pipeline() -> None:
    big = media.field(seed=2, side=2 * REDUCED_SIDE + 16)
    frames = [big[:, 2 * i : 2 * i + 2 * REDUCED_SIDE].copy() for i in range(8)]
    assert min(frames[0].shape[:2]) >= 2 * REDUCED_SIDE  # large enough to lose it on PyAV
    gif = media.animated(frames, "GIF")
    v3, v2 = fingerprint_video(gif), fingerprint_video(gif, pipeline=2)
    assert all(len(h) == 64 for h in v3.detail.sample_pixel_sha256)
    assert v3.detail.sample_pixel_sha256 == v2.detail.sample_pixel_sha256
    assert v3.pixel_sha256 != v2.pixel_sha256  # another hash of the same frames
    assert compare(v3, fingerprint_video(gif)).verdict is Verdict.IDENTICAL


def test_empty_or_unknown_content_hashes_never_decide_identical(clip: bytes) -> None:
    import dataclasses

    fp = fingerprint_video(clip)
    blank = dataclasses.replace(fp, pixel_sha256="")
    assert compare(blank, blank).verdict is not Verdict.IDENTICAL
    unknown = dataclasses.replace(fp, version="vfp9+future")
    assert compare(unknown, unknown).verdict is not Verdict.IDENTICAL
    assert not content_equal(unknown, unknown) and content_hash_kind(unknown) is None
    assert content_hash_kind(fp) == "blake3" and content_equal(fp, fp)
    png = io.BytesIO()
    Image.fromarray(media.field(seed=1, side=32)).save(png, format="PNG")
    still = fingerprint_bytes(png.getvalue())
    assert content_hash_kind(still) == "sha256" and content_equal(still, still)
