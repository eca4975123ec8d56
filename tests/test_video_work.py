"""The worker threads of a video fingerprint: sampled frames are converted off the
decoding thread, once each, with bounded queues, and nothing outlives a failure."""

from __future__ import annotations

import hashlib
import io
import threading
import time
from fractions import Fraction
from typing import Any

import av
import blake3
import numpy as np
import pytest
from PIL import Image

import ledger.fingerprint.video as video
from ledger.errors import FingerprintError
from ledger.fingerprint import Fingerprint, fingerprint_bytes
from ledger.fingerprint._video_source import Frame
from ledger.fingerprint._video_work import FrameWork
from tests import media


class _Digest:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def update(self, data: Any) -> None:
        self.parts.append(bytes(data))


def _frame(nbytes: int, tag: bytes = b"x") -> Frame:
    return Frame(0.0, lambda: tag, lambda digest: digest.update(tag), nbytes)


def _still(rgb: np.ndarray) -> Fingerprint:
    """A PNG still of a decoded frame, as an outside tool would pull it, fingerprinted."""
    png = io.BytesIO()
    Image.fromarray(rgb).save(png, format="PNG")
    return fingerprint_bytes(png.getvalue())


def _still_hashes(clip: bytes, times: tuple[float, ...]) -> list[str]:
    """The pixel hash of a still of the frame shown at each time (PyAV's RGB24)."""
    with av.open(io.BytesIO(clip)) as container:
        frames = [(f.time, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    start = frames[0][0]
    shown = [[rgb for time_s, rgb in frames if time_s - start <= t + 1e-4][-1] for t in times]
    return [_still(rgb).pixel_sha256 for rgb in shown]


def test_a_frame_shown_at_several_sample_times_is_converted_once_off_the_decoding_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 4 fps for 2.5 s: 30 sample times (every 1/12 s) over 10 distinct frames.
    clip = media.mp4(media.pan(n=10, size=64), fps=4)
    calls: list[str] = []
    real = video._sample_of

    def counting(rgb: Any) -> Any:
        calls.append(threading.current_thread().name)
        return real(rgb)

    monkeypatch.setattr(video, "_sample_of", counting)
    got = video.fingerprint_video(clip)
    assert len(got.detail.sample_times) == 30 and got.detail.frame_count == 10
    assert len(calls) == 10  # one conversion per distinct frame, not per sample time
    assert all(name.startswith("seedledger-frame-sample") for name in calls)
    # Every sample is still the frame shown at its time, as a still of it says.
    assert list(got.detail.sample_pixel_sha256) == _still_hashes(clip, got.detail.sample_times)


def test_large_samples_at_any_width_are_steady_and_tile_like_a_still() -> None:
    # libswscale's RGBA differed from RGB24 in the last columns at widths of 16k + 2 and
    # 16k + 4, and from run to run at 16k + 4: it is used only at multiples of 64 (640).
    rng = np.random.default_rng(5)
    for width in (640, 642, 644):
        clip = media.mp4([rng.integers(0, 255, (288, width, 3), dtype=np.uint8) for _ in range(6)], fps=12)
        runs = [video.fingerprint_video(clip) for _ in range(3)]
        assert len({fp.detail.strip for fp in runs}) == 1, width
        with av.open(io.BytesIO(clip)) as container:
            first = next(iter(container.decode(video=0))).to_ndarray(format="rgb24")
        sample = runs[0].detail.frame_fingerprint(0, width, 288)
        assert sample.pixel_sha256 == ""  # a large frame: no full-size pixel hash
        assert sample.thumbnail == _still(first).thumbnail, width


def _ffv1(pix_fmt: str) -> bytes:
    out = io.BytesIO()
    rng = np.random.default_rng(1)
    with av.open(out, "w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=12)
        stream.width, stream.height, stream.pix_fmt = 64, 64, pix_fmt
        for i in range(6):
            rgb = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return out.getvalue()


def _array_hash(data: bytes, digest: Any) -> str:
    """The content hash of frames PyAV gives as arrays, written out from its definition
    (``digest`` holds the size prefix): per frame its time in ms, pixel format, array bytes."""
    with av.open(io.BytesIO(data)) as container:
        start = None
        for frame in container.decode(video=0):
            start = frame.time if start is None else start
            digest.update(b"t%d:" % round((frame.time - start) * 1000))
            digest.update(frame.format.name.encode() + b":" + frame.to_ndarray().tobytes())
    return str(digest.hexdigest())


def test_frames_of_other_pixel_formats_are_hashed_or_refused_in_one_line() -> None:
    ten_bit = _ffv1("yuv420p10le")  # 2 bytes a sample: hashed through PyAV's arrays
    prefix = b"seedledger-frames:64x64:"
    assert video.fingerprint_video(ten_bit).pixel_sha256 == _array_hash(ten_bit, blake3.blake3(prefix))
    # Pipeline 2's SHA-256 of the same bytes, as before blake3 needed them as bytes:
    assert video.fingerprint_video(ten_bit, pipeline=2).pixel_sha256 == _array_hash(
        ten_bit, hashlib.sha256(prefix)
    )
    with pytest.raises(FingerprintError, match="cannot hash video frames in pixel format bgr0"):
        video.fingerprint_video(_ffv1("bgr0"))  # PyAV has no array for it


def _late_webm(frames: list[np.ndarray], start: int) -> bytes:
    """A WEBM whose video starts ``start`` frames in (as after a cut at a keyframe)."""
    out = io.BytesIO()
    with av.open(out, "w", format="webm") as container:
        stream = container.add_stream("libvpx-vp9", rate=24)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = start + i, Fraction(1, 24)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return out.getvalue()


def test_a_webm_starting_late_is_whole_and_its_cut_is_not() -> None:
    late = _late_webm(media.pan(n=48, size=64), start=12)  # 0.5 s in; DURATION 2.5 s
    assert video.fingerprint_video(late).detail.frame_count == 48
    with pytest.raises(FingerprintError, match=r"frames end at [\d.]+ s of the 2\.500 s declared"):
        video.fingerprint_video(late[: len(late) * 7 // 10])


def test_sampled_frames_waiting_for_a_sample_thread_are_bounded() -> None:
    release = threading.Event()
    work = FrameWork(_Digest(), lambda rgb: release.wait(10))
    big = 4096 * 4096 * 6  # a bound of 2 frames
    returned: list[int] = []

    def hand_over() -> None:
        for i in range(3):
            work.sample(_frame(big))
            returned.append(i)

    feeder = threading.Thread(target=hand_over)
    feeder.start()
    try:
        feeder.join(0.5)
        assert feeder.is_alive() and returned == [0, 1]  # the third waits for a free slot
    finally:
        release.set()
        feeder.join(10)
    assert returned == [0, 1, 2]


def test_a_failed_fingerprint_drops_queued_work_and_waits_for_running_work() -> None:
    release = threading.Event()
    started = threading.Semaphore(0)
    finished: list[int] = []

    def slow(rgb: Any) -> None:
        started.release()
        release.wait(10)
        finished.append(1)

    work = FrameWork(_Digest(), slow)
    futures = [work.sample(_frame(1)) for _ in range(6)]  # 2 sample threads: 2 run
    for _ in range(2):
        assert started.acquire(timeout=10)
    abandon = threading.Thread(target=work.abandon)
    abandon.start()
    abandon.join(0.3)
    assert abandon.is_alive()  # waiting for the two running conversions
    release.set()
    abandon.join(10)
    assert not abandon.is_alive()
    assert len(finished) == 2 and sum(f.cancelled() for f in futures) == 4


def test_frames_are_hashed_in_order_and_all_in_before_the_digest_is_read() -> None:
    digest = _Digest()
    work = FrameWork(digest, lambda rgb: None)
    for i in range(100):
        work.hash(_frame(1, b"%d" % i), i)
    assert work.hashed() is digest
    assert digest.parts == [part for i in range(100) for part in (b"t%d:" % i, b"%d" % i)]


def test_a_truncated_clip_fails_with_no_sample_left_running(monkeypatch: pytest.MonkeyPatch) -> None:
    # WEBM opens however it is cut, so the failure comes after samples were handed over.
    clip = media.mp4(media.pan(n=48, size=64), container="webm")
    started: list[int] = []
    running: list[int] = []
    real = video._sample_of

    def tracked(rgb: Any) -> Any:
        started.append(1)
        running.append(1)
        try:
            time.sleep(0.02)  # slow enough that some are queued or running at the cut
            return real(rgb)
        finally:
            running.pop()

    monkeypatch.setattr(video, "_sample_of", tracked)
    with pytest.raises(FingerprintError, match="truncated"):
        video.fingerprint_video(clip[: len(clip) * 4 // 5])
    assert started  # samples were under way when the cut was found
    assert running == []  # and every one started had ended before the error came back


def test_the_covered_duration_check_allows_two_frames_or_a_tenth_of_a_second() -> None:
    from ledger.fingerprint._video_source import check_covered

    check_covered(48, 1.9, 24.0, 2.0)  # 100 ms short at 24 fps: the floor (two frames: 83 ms)
    check_covered(20, 1.8, 10.0, 2.0)  # 200 ms short at 10 fps: two frames
    check_covered(10, 0.4, None, 2.0)  # no frame rate: nothing to measure a frame by
    check_covered(10, 0.4, 24.0, None)  # nothing declared for the track
    with pytest.raises(FingerprintError, match=r"end at 1\.890 s of the 2\.000 s declared"):
        check_covered(48, 1.89, 24.0, 2.0)
    with pytest.raises(FingerprintError, match=r"end at 1\.790 s"):
        check_covered(20, 1.79, 10.0, 2.0)
