"""Video fingerprints: MP4/MOV (H.264…), WEBM (VP9…) through PyAV, animated GIF/WEBP
through Pillow.

One bounded decode: the container's declared duration, frame size and frame count are
checked before the first frame is decoded, and again while decoding (a container can
lie). Every decoded frame feeds the content hash (``pixel_sha256``; BLAKE3 from pipeline
3, SHA-256 before): "identical" means the same decoded frames at the same times. Frames
shown at fixed timestamps (every ``step_s``, at most ``MAX_SAMPLES``) are hashed like
still images. Under ``2 * REDUCED_SIDE`` px on their short side (and every GIF/WEBP
frame) that is exact: pixel hash, phash, dhash and 48×48 tile of the RGB frame. Larger
PyAV frames keep the exact tile; their phash and dhash come from a grey frame first
reduced in C by libswscale (area average; a few bits from a still's), and from pipeline
3 they carry no full-size pixel hash (""): it cost more than the rest of a sample and
matched only a still taken at a sample time through the same RGB conversion. A still
pulled from a clip finds it by phash and tile.
"""

from __future__ import annotations

import hashlib
import io
import math
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import imagehash
import numpy as np
import PIL
from PIL import Image

from ledger.errors import FingerprintError
from ledger.fingerprint import _av
from ledger.fingerprint._animated import is_animated_image
from ledger.fingerprint._ogg import check_ogg, is_ogg
from ledger.fingerprint._types import Fingerprint
from ledger.fingerprint._video_pillow import pillow_source
from ledger.fingerprint._video_source import (
    DECODER_THREADS,
    DEFAULT_VIDEO_LIMITS,
    REDUCED_SIDE,
    Frame,
    Source,
    Unhashed,
    VideoLimits,
    av_source,
)
from ledger.fingerprint._video_work import FrameWork, in_flight_frames
from ledger.fingerprint.image import (
    THUMB_SIZE,
    _dhash,
    _phash,
    _pixel_sha256,
    _sha256_hex,
    thumbnail_image,
)

__all__ = [
    "CONTENT_HASHES",
    "DECODER_THREADS",
    "DEFAULT_VIDEO_LIMITS",
    "MAX_SAMPLES",
    "MIN_STEP_S",
    "PIPELINES",
    "REDUCED_SIDE",
    "VIDEO_PIPELINE",
    "VIDEO_VERSION",
    "VideoDetail",
    "VideoLimits",
    "content_hash_of",
    "fingerprint_video",
    "in_flight_frames",
    "pipeline_like",
    "pipeline_of",
    "video_version",
]

#: Bump when decoding, sampling, hashing or the tiles change meaning (2: sampled phash and
#: dhash of large frames from a libswscale-reduced grey frame; the content hash, pixel
#: hashes and tiles are as in 1, so "identical" still compares across the two. 3: the
#: content hash is BLAKE3, 2-3x cheaper than SHA-256 over every decoded byte, and large
#: sampled frames carry no full-size pixel hash; phash, dhash and tiles as in 2).
VIDEO_PIPELINE = 3
#: The decoded-frames hash of each pipeline: "identical" is decided only within one kind.
CONTENT_HASHES = {1: "sha256", 2: "sha256", 3: "blake3"}
#: The pipelines this code still computes (``fingerprint_video(pipeline=)``): 2 gives the
#: content hash of records made by pipelines 1 and 2, so a replay compares with them.
PIPELINES = (2, 3)


def video_version(pipeline: int = VIDEO_PIPELINE) -> str:
    return f"vfp{pipeline}+av{_av.av_version()}+pil{PIL.__version__}+ih{imagehash.__version__}"


VIDEO_VERSION = video_version()


def pipeline_of(version: str) -> int | None:
    """The pipeline number of a stored video fingerprint's version ("vfp3+…" -> 3)."""
    head = version.split("+", 1)[0]
    return int(head[3:]) if head.startswith("vfp") and head[3:].isdigit() else None


def content_hash_of(version: str) -> str | None:
    """The kind of decoded-frames hash a version carries (None: unknown)."""
    pipeline = pipeline_of(version)
    return None if pipeline is None else CONTENT_HASHES.get(pipeline)


def pipeline_like(version: str) -> int:
    """The pipeline to fingerprint a replay with so its content hash compares with a
    stored fingerprint of ``version``: the newest one of the same hash kind."""
    kind = content_hash_of(version)
    same = [p for p in PIPELINES if CONTENT_HASHES[p] == kind]
    return max(same) if same else VIDEO_PIPELINE


#: Samples every MIN_STEP_S (one frame at 12 fps, so a short clip replayed a frame late
#: still aligns sample for sample), or more sparsely so there are at most MAX_SAMPLES.
MIN_STEP_S = 1 / 12
MAX_SAMPLES = 32
#: Codecs that keep every pixel; anything else is lossy (the lossy-output warning).
LOSSLESS_CODECS = frozenset({"ffv1", "png", "apng", "qtrle", "rawvideo", "utvideo", "huffyuv", "gif"})


@dataclass(frozen=True, kw_only=True)
class VideoDetail:
    container: str
    codec: str
    lossy: bool
    fps: float | None
    duration_s: float
    frame_count: int
    step_s: float
    sample_times: tuple[float, ...]
    sample_phash: tuple[int, ...]
    sample_dhash: tuple[int, ...]
    sample_pixel_sha256: tuple[str, ...]
    #: One PNG, THUMB_SIZE high, the sampled frames' tiles side by side.
    strip: bytes = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "container": self.container,
            "codec": self.codec,
            "lossy": self.lossy,
            "fps": self.fps,
            "duration_s": self.duration_s,
            "frame_count": self.frame_count,
            "step_s": self.step_s,
            "samples": len(self.sample_times),
            "sample_times": list(self.sample_times),
            "sample_phash": [f"{h:016x}" for h in self.sample_phash],
            "strip_bytes": len(self.strip),
        }

    def tiles(self) -> np.ndarray:
        """The strip as (samples, THUMB_SIZE, THUMB_SIZE, 3) uint8."""
        try:
            with Image.open(io.BytesIO(self.strip), formats=("PNG",)) as im:
                pixels = np.asarray(im.convert("RGB"))
        except Exception as exc:  # stored bytes we cannot read: say so, never crash
            raise FingerprintError(f"stored frame strip is unreadable: {exc.__class__.__name__}") from None
        n = len(self.sample_times)
        if pixels.shape[:2] != (THUMB_SIZE, THUMB_SIZE * n):
            raise FingerprintError(
                f"stored frame strip is {pixels.shape[1]}x{pixels.shape[0]}, not {n} tiles"
            )
        return pixels.reshape(THUMB_SIZE, n, THUMB_SIZE, 3).transpose(1, 0, 2, 3)

    def tile_png(self, index: int) -> bytes:
        return _png(self.tiles()[index])

    def frame_fingerprint(self, index: int, width: int, height: int) -> Fingerprint:
        """Sampled frame ``index`` as an image fingerprint (what a still of it would give)."""
        from ledger.fingerprint.image import FINGERPRINT_VERSION

        return Fingerprint(
            version=FINGERPRINT_VERSION,
            media_type=None,
            file_sha256="",
            pixel_sha256=self.sample_pixel_sha256[index],
            width=width,
            height=height,
            phash=self.sample_phash[index],
            dhash=self.sample_dhash[index],
            thumbnail=self.tile_png(index),
        )


def fingerprint_video(
    data: bytes, *, limits: VideoLimits = DEFAULT_VIDEO_LIMITS, pipeline: int = VIDEO_PIPELINE
) -> Fingerprint:
    """Decode ``data`` once (bounded) into a video fingerprint; FingerprintError otherwise.

    ``pipeline`` (one of ``PIPELINES``) picks an earlier content hash, to compare a
    replay with a record fingerprinted before it changed (:func:`pipeline_like`)."""
    if pipeline not in PIPELINES:
        raise FingerprintError(f"video fingerprint pipeline {pipeline} is not one of {PIPELINES}")
    if not data:
        raise FingerprintError("empty input (0 bytes) is not a video")
    if is_animated_image(data):
        return _fingerprint_source(data, pillow_source(data, limits), limits, pipeline)
    if is_ogg(data):
        check_ogg(data)
    with _av.open_container(data, "video") as container:
        return _fingerprint_source(data, av_source(data, container, limits, pipeline), limits, pipeline)


def _content_digest(pipeline: int, width: int, height: int) -> Any:
    prefix = b"seedledger-frames:%dx%d:" % (width, height)
    if CONTENT_HASHES[pipeline] == "sha256":
        return hashlib.sha256(prefix)
    import blake3  # the media extra's; it releases the GIL for large updates, like hashlib

    return blake3.blake3(prefix)


def _fingerprint_source(data: bytes, src: Source, limits: VideoLimits, pipeline: int) -> Fingerprint:
    step = max(MIN_STEP_S, src.duration_s / MAX_SAMPLES)
    times = [round(k * step, 6) for k in range(max(1, math.ceil(src.duration_s / step - 1e-9)))]
    work = FrameWork(_content_digest(pipeline, src.width, src.height), _sample_of)
    try:
        count, samples = _decode(src, limits, times, work)
        # The rest runs while the hashing thread works off its last frames.
        done = [f.result() for f in samples]
        rgb_tiles = [d.tile for d in done]
        strip = _png(np.concatenate(rgb_tiles, axis=1))
        middle = len(samples) // 2
        thumbnail, file_sha256 = _png(rgb_tiles[middle]), _sha256_hex(data)
        digest = work.hashed()
    except BaseException:
        work.abandon()
        raise
    phashes = [d.phash for d in done]
    dhashes = [d.dhash for d in done]
    pixel_hashes = [d.pixel_sha256 for d in done]
    detail = VideoDetail(
        container=src.container,
        codec=src.codec,
        lossy=src.codec not in LOSSLESS_CODECS,
        fps=None if src.fps is None else round(src.fps, 6),
        duration_s=round(src.duration_s, 6),
        frame_count=count,
        step_s=round(step, 6),
        sample_times=tuple(times),
        sample_phash=tuple(phashes),
        sample_dhash=tuple(dhashes),
        sample_pixel_sha256=tuple(pixel_hashes),
        strip=strip,
    )
    return Fingerprint(
        version=video_version(pipeline),
        media_type=src.media_type,
        file_sha256=file_sha256,
        pixel_sha256=digest.hexdigest(),
        width=src.width,
        height=src.height,
        phash=phashes[middle],
        dhash=dhashes[middle],
        thumbnail=thumbnail,
        modality="video",
        detail=detail,
    )


def _decode(
    src: Source, limits: VideoLimits, times: list[float], work: FrameWork[_Sample]
) -> tuple[int, list[Future[_Sample]]]:
    """Decode every frame (bounded) into ``work``: (frames decoded, a sample for each of
    ``times``). A frame shown at (or within 0.1 ms of) a sample time is that sample;
    one shown at several is sampled once."""
    samples: list[Future[_Sample]] = []
    prev: Frame | None = None
    prev_sample: Future[_Sample] | None = None
    count = 0
    start: float | None = None
    for frame in src.frames:
        count += 1
        if count > limits.max_frames:
            raise FingerprintError(
                f"video has more than {limits.max_frames} frames; refusing to decode further"
            )
        if start is None:
            start = frame.time_s
        t = frame.time_s - start
        if t > limits.max_duration_s:
            raise FingerprintError(f"video runs past {limits.max_duration_s:g} s; refusing to decode further")
        while prev is not None and len(samples) < len(times) and times[len(samples)] < t - 1e-4:
            prev_sample = prev_sample or work.sample(prev)
            samples.append(prev_sample)
        work.hash(frame, round(t * 1000))
        prev, prev_sample = frame, None
    if prev is None:
        raise FingerprintError("video has no decodable frames (empty or truncated)")
    while len(samples) < len(times):
        prev_sample = prev_sample or work.sample(prev)
        samples.append(prev_sample)
    return count, samples


@dataclass(frozen=True)
class _Sample:
    phash: int
    dhash: int
    pixel_sha256: str
    tile: np.ndarray


def _sample_of(rgb: Any) -> _Sample:
    """A sampled frame's work, on a sample thread: its conversions (``Frame.rgb``; each
    decoded frame has its own libswscale context, and none is converted twice at once)
    and its hashes."""
    return _sample(*rgb())


def _sample(pixels: Any, reduced: np.ndarray | None = None) -> _Sample:
    """A sampled frame hashed like a still image (the module docstring says how exactly),
    from its RGB or the decoder's reductions."""
    if isinstance(pixels, Unhashed):  # no pixel hash
        height, width, channels = pixels.rgb.shape
        if channels == 4:  # RGBX rows: mapped by Pillow, not copied
            rgb = Image.frombuffer("RGBX", (width, height), pixels.rgb, "raw", "RGBX", 0, 1)
        else:
            rgb = Image.fromarray(pixels.rgb, "RGB")
        gray = rgb.convert("L") if reduced is None else Image.fromarray(reduced, "L")
        tile = thumbnail_image(rgb).convert("RGB")  # BOX per channel: the same R, G, B
        return _Sample(_phash(gray), _dhash(gray), "", np.asarray(tile))
    if isinstance(pixels, np.ndarray):  # the decoder's RGB24 rows: hashed as they are
        height, width = pixels.shape[:2]
        digest = hashlib.sha256(b"seedledger-pixels:RGB8:%dx%d:" % (width, height))
        digest.update(np.ascontiguousarray(pixels).data)
        rgb, pixel_hash = Image.fromarray(pixels, "RGB"), digest.hexdigest()
    else:
        rgb, pixel_hash = pixels, _pixel_sha256(pixels)
    gray = rgb.convert("L") if reduced is None else Image.fromarray(reduced, "L")
    return _Sample(_phash(gray), _dhash(gray), pixel_hash, np.asarray(thumbnail_image(rgb)))


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), "RGB").save(out, format="PNG", compress_level=9)
    return out.getvalue()
