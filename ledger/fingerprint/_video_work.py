"""The worker threads of one video fingerprint, and the bounds on what waits for them.

The decoding thread hands each decoded frame to the one hashing thread (which keeps the
frames in order) and each sampled frame to a sample thread (its conversions and
hashes); hashlib, blake3, libswscale and Pillow release the GIL, so both run while the
decoder works. The frames waiting for the hashing thread, and the sampled frames
waiting for a sample thread, are each bounded (:func:`in_flight_frames`); if the
fingerprint fails, work not yet started is dropped and work started is waited for, so
nothing outlives the decode.
"""

from __future__ import annotations

import functools
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Generic, TypeVar

from ledger.fingerprint._video_source import Frame

T = TypeVar("T")

#: Decoded bytes handed to the hashing thread and not yet hashed, at most (and at least
#: 2 frames): enough slack for the hash to run in the decoder's idle gaps (at 1080p, 10
#: frames were 5-9 % faster than 4 in one interleaved run), bounded whatever the size.
#: The sampled frames waiting for a sample thread have a budget of the same size. Per
#: fingerprint: concurrent ones (an audit runs a few) each hold their own.
_IN_FLIGHT_BYTES = 32 << 20
#: ...and at most this many frames, whatever their size (each also holds Python objects).
_IN_FLIGHT_FRAMES = 64


def in_flight_frames(frame_bytes: int) -> int:
    """Frames the hashing thread may lag the decoder by, for frames of ``frame_bytes``."""
    return max(2, min(_IN_FLIGHT_FRAMES, _IN_FLIGHT_BYTES // max(1, frame_bytes)))


@functools.cache
def _hash_pool_for(pid: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="seedledger-frame-hash")


def _hash_pool() -> ThreadPoolExecutor:
    return _hash_pool_for(os.getpid())  # a forked child gets its own thread


@functools.cache
def _sample_pool_for(pid: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="seedledger-frame-sample")


def _sample_pool() -> ThreadPoolExecutor:
    # Its own threads, not the image pool's: the tasks here never wait on each other.
    return _sample_pool_for(os.getpid())


def _hash_frame(digest: Any, millis: int, hash_into: Any) -> None:
    digest.update(b"t%d:" % millis)
    hash_into(digest)


class FrameWork(Generic[T]):
    """One fingerprint's queued work: ``sample_of(frame.rgb)`` gives a sampled frame's
    result on a sample thread; ``digest`` takes every frame, in order."""

    def __init__(self, digest: Any, sample_of: Callable[[Any], T]) -> None:
        self._digest = digest
        self._sample_of = sample_of
        self._hasher = _hash_pool()
        self._sampler = _sample_pool()
        self._hashing: deque[Future[None]] = deque()
        self._sampling: deque[Future[T]] = deque()
        self._bound = 0  # set from the first frame's real size

    def hash(self, frame: Frame, millis: int) -> None:
        hashing = self._hasher.submit(_hash_frame, self._digest, millis, frame.hash_into)
        self._queue(self._hashing, hashing, frame)

    def sample(self, frame: Frame) -> Future[T]:
        sampling = self._sampler.submit(self._sample_of, frame.rgb)
        self._queue(self._sampling, sampling, frame)
        return sampling

    def _queue(self, queue: deque[Future[Any]], submitted: Future[Any], frame: Frame) -> None:
        """Queue ``submitted``, then wait until no more than the bound is waiting."""
        if not self._bound:
            self._bound = in_flight_frames(frame.nbytes)
        queue.append(submitted)
        while len(queue) > self._bound:
            queue.popleft().result()

    def hashed(self) -> Any:
        """The digest, once every frame handed over is in it."""
        while self._hashing:
            self._hashing.popleft().result()
        return self._digest

    def abandon(self) -> None:
        """Drop what has not started and wait for what has (the fingerprint failed)."""
        pending: list[Future[Any]] = [*self._hashing, *self._sampling]
        for future in pending:
            future.cancel()
        wait(pending)
        self._hashing.clear()
        self._sampling.clear()
