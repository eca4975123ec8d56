"""Reference video: real H.264 MP4 (or VP9 WEBM, MOV) clips encoded with PyAV.

``encode_video`` is deterministic for the same frames and options (single-threaded
x264, no timestamps in the container), so a deterministic-scheduler replay gives the
same bytes and the same decoded frames.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

#: container -> (FFmpeg muxer, default encoder, file extension, media type)
CONTAINERS: dict[str, tuple[str, str, str, str]] = {
    "mp4": ("mp4", "libx264", "mp4", "video/mp4"),
    "mov": ("mov", "libx264", "mov", "video/quicktime"),
    "webm": ("webm", "libvpx-vp9", "webm", "video/webm"),
}


def encode_video(
    frames: Sequence[np.ndarray],
    *,
    container: str = "mp4",
    codec: str | None = None,
    fps: int = 24,
    crf: int | None = None,
) -> bytes:
    """Encode RGB uint8 frames (all one even size) into ``container``."""
    import av

    muxer, default_codec, _, _ = CONTAINERS[container]
    codec = codec or default_codec
    options = {"threads": "1"}
    if crf is not None:
        options["crf"] = str(crf)
    if codec == "libx264":
        options["preset"] = "veryfast"
    if codec == "libvpx-vp9":
        options.update({"deadline": "realtime", "cpu-used": "8"})
        options.setdefault("crf", "32")
        options["b"] = "0"
    buf = io.BytesIO()
    with av.open(buf, "w", format=muxer, container_options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream(codec, rate=fps, options=options)
        height, width = frames[0].shape[:2]
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for pixels in frames:
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            ):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()
