"""The worker threads of a video fingerprint: sampled frames are converted off the
decoding thread, once each, with bounded queues, and nothing outlives a failure."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import ledger.fingerprint.video as video
from ledger.errors import FingerprintError
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


def test_a_frame_shown_at_several_sample_times_is_converted_once_off_the_decoding_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 4 fps for 2.5 s: 30 sample times (every 1/12 s) over 10 distinct frames.
    clip = media.mp4(media.pan(n=10, size=64), fps=4)
    expected = video.fingerprint_video(clip)
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
    assert got == expected  # the same fingerprint as before sharing


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
    with pytest.raises(FingerprintError, match=r"cover 1\.890 s of the 2\.000 s declared"):
        check_covered(48, 1.89, 24.0, 2.0)
    with pytest.raises(FingerprintError, match=r"cover 1\.790 s"):
        check_covered(20, 1.79, 10.0, 2.0)
