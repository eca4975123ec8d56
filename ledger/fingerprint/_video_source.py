"""Where a video's frames come from: the container's declarations checked against
limits before decoding, then one frame at a time (PyAV for MP4/MOV/WEBM…), each with
the two views the fingerprint needs: its planes for the content hash, and (sampled
frames only) its RGB and, for large frames, a grey frame reduced in C.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ledger.errors import FingerprintError
from ledger.fingerprint import _av

#: Sampled frames are reduced by an integer factor to about this short side (area
#: average, libswscale) before the perceptual hashes' LANCZOS: a full-size LANCZOS to
#: 32×32 costs ~9 ms a hash at 1080p, the reduction ~1.5 ms for both.
REDUCED_SIDE = 128

#: FFmpeg decoder threading (frame and slice threads, as many as cores); bench/ decodes
#: its baseline with the same setting.
DECODER_THREADS = "AUTO"

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


@dataclass(frozen=True)
class Frame:
    time_s: float
    #: () -> (RGB24 ndarray, Unhashed RGB24/RGBX rows or PIL RGB image; reduced grey ndarray or
    #: None), called once for a sampled frame, on a sample thread.
    rgb: Any
    hash_into: Any  # (a hashlib or blake3 object) -> None
    #: The decoded frame's buffers, padding included: what holding it costs.
    nbytes: int


@dataclass(frozen=True)
class Source:
    container: str
    media_type: str
    codec: str
    fps: float | None
    duration_s: float
    width: int
    height: int
    frames: Iterator[Frame]


@dataclass(frozen=True)
class Unhashed:
    """A large sampled frame (pipeline 3), hashed like a still but for the full-size pixel
    hash (""): RGB24 rows, or RGBX rows (the same R, G, B) that Pillow maps without a
    copy, for widths that are a multiple of RGBA_WIDTH_MULTIPLE."""

    rgb: np.ndarray


#: libswscale's RGBA gives RGB24's R, G, B only when no row ends in a partial SIMD block:
#: at widths of 16k + 2 and 16k + 4 its last columns differed (at 16k + 4 from run to
#: run), so other widths are converted to RGB24, which Pillow copies (~1 ms at 1080p).
RGBA_WIDTH_MULTIPLE = 64


def check_declared(width: int, height: int, duration: float | None, frames: int, limits: VideoLimits) -> None:
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


def check_covered(frames: int, covered: float, fps: float | None, declared_s: float | None) -> None:
    """A stream with no frame count (WEBM) whose frames end well before the duration
    declared for it was cut off: the demuxer ends such a file quietly, at the cut."""
    if not frames or not fps or declared_s is None:
        return
    if covered < declared_s - max(2 / fps, 0.1):
        raise FingerprintError(
            f"video is truncated: its frames end at {covered:.3f} s of the {declared_s:.3f} s declared"
        )


def av_source(data: bytes, container: Any, limits: VideoLimits, pipeline: int) -> Source:
    if not container.streams.video:
        raise FingerprintError("the container has no video stream")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    width, height = int(ctx.width or 0), int(ctx.height or 0)
    duration = _av.declared_duration(container, stream)
    fps = float(stream.average_rate) if stream.average_rate else None
    declared = int(stream.frames or 0) or (round(duration * fps) if duration and fps else 0)
    check_declared(width, height, duration, declared, limits)
    if duration is None:
        raise FingerprintError("video declares no duration; refusing to decode an unbounded stream")
    stream.thread_type = DECODER_THREADS

    own = _av.stream_duration(container, stream)  # the video track's, not the longest stream's

    def frames() -> Iterator[Frame]:
        index = 0
        first = end = 0.0  # the first frame's time, and when the last one stops showing
        try:
            for frame in container.decode(stream):
                if (frame.width, frame.height) != (width, height):
                    raise FingerprintError(
                        f"frame {index} is {frame.width}x{frame.height}, not the declared {width}x{height}"
                    )
                t = frame.time if frame.time is not None else index / (fps or 1.0)
                first = t if index == 0 else first
                end = t + (_av.seconds(frame.duration, stream.time_base) or 1 / (fps or 1.0))
                nbytes = sum(plane.buffer_size for plane in frame.planes)
                lock = threading.Lock()
                yield Frame(t, rgb_of(frame, pipeline, lock), planes_of(frame, lock), nbytes)
                index += 1
        except _av.decode_errors() as exc:
            raise FingerprintError(
                f"cannot decode the video, truncated or corrupt: {_av.reason(exc)}"
            ) from None
        if stream.frames and index < stream.frames:
            raise FingerprintError(f"video is truncated: decoded {index} of {stream.frames} declared frames")
        if not stream.frames:  # a declared duration runs from 0, not from the first frame
            check_covered(index, end - min(first, 0.0), fps, own)

    brand = data[8:12]
    media_type = (
        "video/quicktime" if brand == b"qt  " else _MEDIA_TYPES.get(container.format.name, "video/mp4")
    )
    if container.format.name == "matroska,webm" and b"webm" not in data[:64]:
        media_type = "video/x-matroska"
    return Source(container.format.name, media_type, ctx.name, fps, duration, width, height, frames())


_MEDIA_TYPES = {"mov,mp4,m4a,3gp,3g2,mj2": "video/mp4", "matroska,webm": "video/webm"}


def rgb_of(frame: Any, pipeline: int, lock: threading.Lock) -> Any:
    factor = min(frame.width, frame.height) // REDUCED_SIDE

    def convert() -> tuple[Any, np.ndarray | None]:
        try:
            with lock:  # PyAV's reformat rewrites the source frame's colour fields meanwhile
                if factor < 2:
                    return frame.to_ndarray(format="rgb24", threads=1), None
                small = {"width": frame.width // factor, "height": frame.height // factor}
                grey = frame.reformat(**small, format="gray", interpolation="AREA", threads=1).to_ndarray()
                if pipeline >= 3 and frame.width % RGBA_WIDTH_MULTIPLE == 0:
                    return Unhashed(np.ascontiguousarray(frame.to_ndarray(format="rgba", threads=1))), grey
                rgb = frame.to_ndarray(format="rgb24", threads=1)
        except _av.decode_errors() as exc:
            raise FingerprintError(
                f"cannot convert video frames in pixel format {frame.format.name}: {_av.reason(exc)}"
            ) from None
        return (Unhashed(rgb) if pipeline >= 3 else rgb), grey

    return convert


def planes_of(frame: Any, lock: threading.Lock) -> Any:
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
        else:  # through PyAV's reformat, like a sample's conversion: never both at once
            try:
                with lock:
                    pixels = np.ascontiguousarray(frame.to_ndarray())
            except _av.decode_errors() as exc:
                raise FingerprintError(
                    f"cannot hash video frames in pixel format {name}: {_av.reason(exc)}"
                ) from None
            digest.update(pixels.reshape(-1).view(np.uint8))  # the same bytes, as bytes

    return hash_into
