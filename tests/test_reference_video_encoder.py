"""The reference backend's video encoder repeats itself byte for byte.

Deterministic replays of video records compare `identical` only if the same frames
encode to the same stream every time, in one long-lived process too. The backend
encodes lossless H.264 (crf 0) and VP9; tests and the calibration also encode lossy
x264. Two causes of another stream from the same frames were found: PyAV's own YUV
conversion inside ``encode()`` (2-4 streams a run; ``encode_video`` converts each frame
first), and x264's macroblock-tree rate control, lossy only (31 of 120 re-encodes in one
process after other work; ``encode_video`` turns it off).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

pytest.importorskip("av")

from ledger.backends.reference.video import encode_video


def _pan() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    field = np.kron(rng.integers(0, 255, (10, 14, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))
    return [np.ascontiguousarray(field[:64, i : i + 64]) for i in range(24)]


@pytest.mark.parametrize(("container", "crf"), [("mp4", 0), ("webm", None)])
def test_the_same_frames_encode_to_the_same_bytes_every_time(container: str, crf: int | None) -> None:
    frames = _pan()
    digests = {
        hashlib.sha256(encode_video(frames, container=container, fps=12, crf=crf)).hexdigest()
        for _ in range(16)
    }
    assert len(digests) == 1


def _zooms() -> list[list[np.ndarray]]:
    from PIL import Image

    from tests import media

    clips = []
    for seed in range(6):
        big = Image.fromarray(media.field(seed=seed, side=128))
        clips.append(
            [
                np.asarray(big.crop((i, i, 128 - i, 128 - i)).resize((64, 64), Image.Resampling.BILINEAR))
                for i in range(24)
            ]
        )
    return clips


@pytest.mark.parametrize("crf", [None, 30])
def test_lossy_x264_repeats_itself_between_other_media_work(crf: int | None) -> None:
    # The state that showed macroblock-tree's variation: encodes with fingerprinting
    # (decoding, thread pools, freed buffers) in between, in one process.
    from ledger.fingerprint.video import fingerprint_video

    clips, differing = _zooms(), []
    for round_ in range(4):
        for k, frames in enumerate(clips):
            first = encode_video(frames, fps=12, crf=crf)
            fingerprint_video(first)
            if encode_video(frames, fps=12, crf=crf) != first:
                differing.append((round_, k))
    assert differing == []
