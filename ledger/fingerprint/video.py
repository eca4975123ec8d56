"""Video fingerprints: MP4/MOV (H.264…), WEBM (VP9…) through PyAV, animated GIF/WEBP
through Pillow.

One bounded decode: the container's declared duration, frame size and frame count are
checked before the first frame is decoded, and again while decoding (a container can
lie). Every decoded frame feeds the content hash (``pixel_sha256``: "identical" means
the same decoded frames at the same times); frames shown at fixed timestamps (every
``step_s``, at most ``MAX_SAMPLES``) are converted to RGB and hashed like still images
(pixel hash and 48×48 tile exactly; phash and dhash exactly for frames under
``2 * REDUCED_SIDE`` px on their short side, else from a grey frame first reduced in C by
libswscale, a few bits from a still's), so a still pulled from the clip finds it.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import imagehash
import numpy as np
import PIL
from PIL import Image, ImageSequence

from ledger.errors import FingerprintError
from ledger.fingerprint import _av
from ledger.fingerprint._animated import is_animated_image
from ledger.fingerprint._types import Fingerprint
from ledger.fingerprint.image import (
    THUMB_SIZE,
    _dhash,
    _phash,
    _pixel_sha256,
    _sha256_hex,
    thumbnail_image,
)

#: Bump when decoding, sampling, hashing or the tiles change meaning (2: sampled phash and
#: dhash of large frames from a libswscale-reduced grey frame; the content hash, pixel
#: hashes and tiles are as in 1, so "identical" still compares across the two).
VIDEO_PIPELINE = 2
VIDEO_VERSION = f"vfp{VIDEO_PIPELINE}+av{_av.av_version()}+pil{PIL.__version__}+ih{imagehash.__version__}"

#: Samples every MIN_STEP_S (one frame at 12 fps, so a short clip replayed a frame late
#: still aligns sample for sample), or more sparsely so there are at most MAX_SAMPLES.
MIN_STEP_S = 1 / 12
MAX_SAMPLES = 32
#: Sampled frames are reduced by an integer factor to about this short side (area
#: average, libswscale) before the perceptual hashes' LANCZOS: a full-size LANCZOS to
#: 32×32 costs ~9 ms a hash at 1080p, the reduction ~1.5 ms for both.
REDUCED_SIDE = 128

#: FFmpeg decoder threading (frame and slice threads, as many as cores); bench/ decodes
#: its baseline with the same setting.
DECODER_THREADS = "AUTO"

#: Codecs that keep every pixel; anything else is lossy (the lossy-output warning).
LOSSLESS_CODECS = frozenset({"ffv1", "png", "apng", "qtrle", "rawvideo", "utvideo", "huffyuv", "gif"})

_PACKED_8BIT = {
    "yuv420p": 3,
    "yuvj420p": 3,
    "yuv422p": 3,
    "yuvj422p": 3,
    "yuv444p": 3,
    "yuvj444p": 3,
    "gray": 1,
}


@dataclass(frozen=True, kw_only=True)
class VideoLimits:
    """Refused from the container's declarations before decoding, and while decoding."""

    max_duration_s: float = 600.0
    max_frame_pixels: int = 4096 * 4096
    max_frames: int = 36_000
    max_decoded_pixels: int = 20_000 * 1920 * 1080


DEFAULT_VIDEO_LIMITS = VideoLimits()


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


@dataclass(frozen=True)
class _Frame:
    time_s: float
    #: () -> (RGB24 ndarray or PIL RGB image, reduced grey ndarray or None), called for
    #: sampled frames only, on the decoding thread.
    rgb: Any
    hash_into: Any  # (hashlib object) -> None


@dataclass(frozen=True)
class _Source:
    container: str
    media_type: str
    codec: str
    fps: float | None
    duration_s: float
    width: int
    height: int
    frames: Iterator[_Frame]


def fingerprint_video(data: bytes, *, limits: VideoLimits = DEFAULT_VIDEO_LIMITS) -> Fingerprint:
    """Decode ``data`` once (bounded) into a video fingerprint; FingerprintError otherwise."""
    if not data:
        raise FingerprintError("empty input (0 bytes) is not a video")
    if is_animated_image(data):
        return _fingerprint_source(data, _pillow_source(data, limits), limits)
    with _av.open_container(data, "video") as container:
        return _fingerprint_source(data, _av_source(data, container, limits), limits)


def _fingerprint_source(data: bytes, src: _Source, limits: VideoLimits) -> Fingerprint:
    step = max(MIN_STEP_S, src.duration_s / MAX_SAMPLES)
    times = [round(k * step, 6) for k in range(max(1, math.ceil(src.duration_s / step - 1e-9)))]
    digest = hashlib.sha256(b"seedledger-frames:%dx%d:" % (src.width, src.height))
    # Hashing and the sampled frames' hashes run on worker threads while this one decodes
    # (hashlib and Pillow release the GIL): one hashing thread keeps the frames in order;
    # a few frames in flight at most, so memory stays bounded.
    hasher = _hash_pool()
    pool = _sample_pool()
    hashing: deque[Future[None]] = deque()
    samples: list[Future[_Sample]] = []
    prev: _Frame | None = None
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
        # A frame shown at (or within 0.1 ms of) a sample time is that sample.
        while prev is not None and len(samples) < len(times) and times[len(samples)] < t - 1e-4:
            samples.append(pool.submit(_sample, *prev.rgb()))
        hashing.append(hasher.submit(_hash_frame, digest, round(t * 1000), frame.hash_into))
        while len(hashing) > _IN_FLIGHT:
            hashing.popleft().result()
        prev = frame
    for pending in hashing:
        pending.result()
    if prev is None:
        raise FingerprintError("video has no decodable frames (empty or truncated)")
    while len(samples) < len(times):
        samples.append(pool.submit(_sample, *prev.rgb()))
    done = [f.result() for f in samples]
    rgb_tiles = [d.tile for d in done]
    phashes = [d.phash for d in done]
    dhashes = [d.dhash for d in done]
    pixel_hashes = [d.pixel_sha256 for d in done]
    strip = _png(np.concatenate(rgb_tiles, axis=1))
    middle = len(samples) // 2
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
        version=VIDEO_VERSION,
        media_type=src.media_type,
        file_sha256=_sha256_hex(data),
        pixel_sha256=digest.hexdigest(),
        width=src.width,
        height=src.height,
        phash=phashes[middle],
        dhash=dhashes[middle],
        thumbnail=_png(rgb_tiles[middle]),
        modality="video",
        detail=detail,
    )


#: Frames handed to the hashing thread and not yet hashed, at most.
_IN_FLIGHT = 4


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


@dataclass(frozen=True)
class _Sample:
    phash: int
    dhash: int
    pixel_sha256: str
    tile: np.ndarray


def _sample(pixels: Any, reduced: np.ndarray | None = None) -> _Sample:
    """A sampled frame hashed like a still image: pixel hash and tile exactly; phash and
    dhash exactly too, or from ``reduced`` (grey) when the decoder gave one. The RGB
    conversion and the reduction stay on the decoding thread: PyAV's converters are not
    safe to share between threads."""
    if isinstance(pixels, np.ndarray):  # the decoder's RGB24 rows: hashed as they are
        height, width = pixels.shape[:2]
        digest = hashlib.sha256(b"seedledger-pixels:RGB8:%dx%d:" % (width, height))
        digest.update(np.ascontiguousarray(pixels).data)
        rgb, pixel_hash = Image.fromarray(pixels, "RGB"), digest.hexdigest()
    else:
        rgb, pixel_hash = pixels, _pixel_sha256(pixels)
    gray = rgb.convert("L") if reduced is None else Image.fromarray(reduced, "L")
    return _Sample(_phash(gray), _dhash(gray), pixel_hash, np.asarray(thumbnail_image(rgb)))


def _check_declared(
    width: int, height: int, duration: float | None, frames: int, limits: VideoLimits
) -> None:
    if width < 1 or height < 1:
        raise FingerprintError(f"video has no pixels ({width}x{height})")
    if width * height > limits.max_frame_pixels:
        raise FingerprintError(
            f"video frames are {width}x{height} = {width * height} pixels, above the limit of "
            f"{limits.max_frame_pixels}; refusing to decode"
        )
    if duration is not None and duration > limits.max_duration_s:
        raise FingerprintError(
            f"video declares {duration:g} s, above the limit of {limits.max_duration_s:g} s; "
            "refusing to decode"
        )
    if frames > limits.max_frames:
        raise FingerprintError(f"video declares {frames} frames, above the limit of {limits.max_frames}")
    if frames * width * height > limits.max_decoded_pixels:
        raise FingerprintError(
            f"video declares {frames} frames of {width}x{height}, above the decoded-pixel limit of "
            f"{limits.max_decoded_pixels}"
        )


def _av_source(data: bytes, container: Any, limits: VideoLimits) -> _Source:
    if not container.streams.video:
        raise FingerprintError("the container has no video stream")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    width, height = int(ctx.width or 0), int(ctx.height or 0)
    duration = _av.declared_duration(container, stream)
    fps = float(stream.average_rate) if stream.average_rate else None
    declared = int(stream.frames or 0) or (round(duration * fps) if duration and fps else 0)
    _check_declared(width, height, duration, declared, limits)
    if duration is None:
        raise FingerprintError("video declares no duration; refusing to decode an unbounded stream")
    stream.thread_type = DECODER_THREADS

    def frames() -> Iterator[_Frame]:
        index = 0
        try:
            for frame in container.decode(stream):
                if (frame.width, frame.height) != (width, height):
                    raise FingerprintError(
                        f"frame {index} is {frame.width}x{frame.height}, not the declared {width}x{height}"
                    )
                t = frame.time if frame.time is not None else index / (fps or 1.0)
                yield _Frame(t, _rgb_of(frame), _planes_of(frame))
                index += 1
        except _av.decode_errors() as exc:
            raise FingerprintError(
                f"cannot decode the video, truncated or corrupt: {_av.reason(exc)}"
            ) from None
        if stream.frames and index < stream.frames:
            raise FingerprintError(f"video is truncated: decoded {index} of {stream.frames} declared frames")

    brand = data[8:12]
    media_type = (
        "video/quicktime" if brand == b"qt  " else _MEDIA_TYPES.get(container.format.name, "video/mp4")
    )
    if container.format.name == "matroska,webm" and b"webm" not in data[:64]:
        media_type = "video/x-matroska"
    return _Source(container.format.name, media_type, ctx.name, fps, duration, width, height, frames())


_MEDIA_TYPES = {"mov,mp4,m4a,3gp,3g2,mj2": "video/mp4", "matroska,webm": "video/webm"}


def _rgb_of(frame: Any) -> Any:
    factor = min(frame.width, frame.height) // REDUCED_SIDE
    if factor < 2:
        return lambda: (frame.to_ndarray(format="rgb24"), None)
    size = {"width": frame.width // factor, "height": frame.height // factor}

    def convert() -> tuple[np.ndarray, np.ndarray]:
        grey = frame.reformat(**size, format="gray", interpolation="AREA").to_ndarray()
        return frame.to_ndarray(format="rgb24"), grey

    return convert


def _planes_of(frame: Any) -> Any:
    name = frame.format.name

    def hash_into(digest: Any) -> None:
        digest.update(name.encode() + b":")
        if name in _PACKED_8BIT:  # one byte per sample: trim each plane's row padding
            for plane in frame.planes:
                if plane.line_size == plane.width:  # no padding: the buffer as it is, no copy
                    digest.update(memoryview(plane)[: plane.width * plane.height])
                    continue
                rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
                digest.update(np.ascontiguousarray(rows[:, : plane.width]))
        else:
            digest.update(np.ascontiguousarray(frame.to_ndarray()))

    return hash_into


def _pillow_source(data: bytes, limits: VideoLimits) -> _Source:
    im = Image.open(io.BytesIO(data), formats=("GIF", "WEBP"))
    width, height = im.size
    _check_declared(width, height, None, 0, limits)
    try:
        n = int(getattr(im, "n_frames", 1))  # GIF and WEBP images have it; Pillow's types do not say
        _check_declared(width, height, None, n, limits)
        if im.format == "WEBP":
            millis = _webp_durations(data)
        else:
            millis = []
            for k in range(n):
                im.seek(k)
                millis.append(int(im.info.get("duration", 100) or 100))
        durations = [max(d, 10) / 1000 for d in millis]  # browsers show 0-10 ms frames longer
    except (OSError, ValueError, EOFError) as exc:
        raise FingerprintError(f"cannot read the animation: {_av.reason(exc)}") from None
    total = float(sum(durations))
    _check_declared(width, height, total, n, limits)
    fmt = im.format or "GIF"

    def frames() -> Iterator[_Frame]:
        t = 0.0
        try:
            for k, frame in enumerate(ImageSequence.Iterator(im)):
                rgba = frame.convert("RGBA")
                flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                flat.alpha_composite(rgba)
                rgb = flat.convert("RGB")
                yield _Frame(t, lambda rgb=rgb: (rgb, None), lambda d, rgb=rgb: d.update(rgb.tobytes()))
                t += durations[k]
        except (OSError, ValueError, EOFError) as exc:
            raise FingerprintError(
                f"cannot decode the animation, truncated or corrupt: {_av.reason(exc)}"
            ) from None
        finally:
            im.close()

    codec = "gif" if fmt == "GIF" else "webp"
    return _Source(
        fmt.lower(), f"image/{codec}", codec, n / total if total else None, total, width, height, frames()
    )


def _webp_durations(data: bytes) -> list[int]:
    """Frame durations (ms) from the ANMF chunks: Pillow reports them only per decoded frame."""
    out, pos = [], 12
    while pos + 8 <= len(data):
        tag, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if tag == b"ANMF" and size >= 16:
            out.append(int.from_bytes(data[pos + 20 : pos + 23], "little"))
        pos += 8 + size + (size & 1)
    return out


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), "RGB").save(out, format="PNG", compress_level=9)
    return out.getvalue()
