"""Is a GIF or WEBP animated? Pillow alone answers, so sniffing a file never needs PyAV
(the core install, without the ``media`` extra, fingerprints images)."""

from __future__ import annotations

import io

from PIL import Image


def is_animated_image(data: bytes) -> bool:
    """An animated GIF or WEBP (fingerprinted as video); stills stay images."""
    if not (data[:6] in (b"GIF87a", b"GIF89a") or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")):
        return False
    try:
        with Image.open(io.BytesIO(data), formats=("GIF", "WEBP")) as im:
            return bool(getattr(im, "is_animated", False))
    except Exception:
        return False
