"""Reference video: real H.264 MP4 (or VP9 WEBM, MOV) clips encoded with PyAV.

``render_video`` encodes losslessly (x264 crf 0, no timestamps in the container), so a
deterministic-scheduler replay decodes to exactly the frames of the original.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # imported where used at run time (generator imports this module)
    from ledger.backends.reference.generator import Output

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
        # One thread everywhere (frame, lookahead, slices), and no macroblock-tree rate
        # control: with it, the same frames gave another stream in 31 of 120 encodes in
        # one process (none of 120 without), so x264 is bit-exact run to run.
        options.update(
            {
                "preset": "veryfast",
                "x264-params": "threads=1:lookahead-threads=1:sliced-threads=0:mbtree=0",
            }
        )
    if codec == "libvpx-vp9":
        options.update({"deadline": "realtime", "cpu-used": "8"})
        options.setdefault("crf", "32")
        options["b"] = "0"
    keep = [np.ascontiguousarray(pixels) for pixels in frames]
    buf = io.BytesIO()
    with av.open(buf, "w", format=muxer, container_options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream(codec, rate=fps, options=options)
        assert isinstance(stream, av.VideoStream)  # its type follows the codec name
        stream.codec_context.thread_count = 1
        height, width = keep[0].shape[:2]
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index, pixels in enumerate(keep):
            # Converted here, not by the encoder: PyAV's own conversion inside encode()
            # gave 3-4 different streams in 15 encodes of the same frames in one process;
            # VideoFrame.reformat gives the same pixels every time.
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def render_video(
    gen: Any,
    model: str,
    prompt: str,
    seed: int | None,
    *,
    scheduler: str | None = None,
    width: int = 96,
    height: int = 96,
    frames: int = 24,
    fps: int = 12,
) -> Output:
    """A slow pan over one reference still (same seed, scheduler and revision rules as
    images: deterministic schedulers repeat exactly, stochastic ones drift), as H.264 MP4."""
    from ledger.backends.reference.generator import ImageRequest, Output

    w, h = _even(width), _even(height)
    count = max(2, min(int(frames), 96))
    travel = count  # one pixel a frame
    pixels, seed_used, stochastic, used = gen.render(
        ImageRequest(model=model, prompt=prompt, width=w + travel, height=h, seed=seed, scheduler=scheduler)
    )
    clip = [pixels[:, i : i + w] for i in range(count)]
    return Output(
        # Lossless H.264 (crf 0): the decoded frames are the rendered ones (in YUV 4:2:0),
        # so a deterministic replay decodes to the very same frames.
        encode_video(clip, fps=max(1, min(int(fps), 60)), crf=0),
        seed_used,
        "mp4",
        "video/mp4",
        seeded=seed_used is not None,
        stochastic=stochastic,
        scheduler=used,
    )


def _even(side: int) -> int:
    return max(16, min(int(side), 256)) // 2 * 2
