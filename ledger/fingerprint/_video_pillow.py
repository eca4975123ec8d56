"""Animated GIF and WEBP as video frames, through Pillow (no PyAV needed)."""

from __future__ import annotations

import io
from collections.abc import Iterator

from PIL import Image, ImageSequence

from ledger.errors import FingerprintError
from ledger.fingerprint import _av
from ledger.fingerprint._video_source import Frame, Source, VideoLimits, check_declared


def pillow_source(data: bytes, limits: VideoLimits) -> Source:
    im = Image.open(io.BytesIO(data), formats=("GIF", "WEBP"))
    width, height = im.size
    check_declared(width, height, None, 0, limits)
    try:
        n = int(getattr(im, "n_frames", 1))  # GIF and WEBP images have it; Pillow's types do not say
        check_declared(width, height, None, n, limits)
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
    check_declared(width, height, total, n, limits)
    fmt = im.format or "GIF"

    def frames() -> Iterator[Frame]:
        t = 0.0
        try:
            for k, frame in enumerate(ImageSequence.Iterator(im)):
                rgba = frame.convert("RGBA")
                flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                flat.alpha_composite(rgba)
                rgb = flat.convert("RGB")
                yield Frame(
                    t,
                    lambda rgb=rgb: (rgb, None),
                    lambda d, rgb=rgb: d.update(rgb.tobytes()),
                    4 * width * height,  # Pillow keeps RGB at 4 bytes a pixel
                )
                t += durations[k]
        except (OSError, ValueError, EOFError) as exc:
            raise FingerprintError(
                f"cannot decode the animation, truncated or corrupt: {_av.reason(exc)}"
            ) from None
        finally:
            im.close()

    codec = "gif" if fmt == "GIF" else "webp"
    return Source(
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
