"""What a video, audio or 3D record looks like in a report, from its stored fingerprint.

Every fingerprint keeps a THUMB_SIZE PNG thumbnail: a video's middle sampled frame, an
audio track's min…max waveform, a mesh's projected depth silhouette. A video's payload
also keeps the frame strip (every sampled frame's tile side by side); reports show at
most :data:`STRIP_TILES` of them, evenly spaced. Everything is re-encoded from decoded
pixels (never the stored bytes) and bounded in size, like the image thumbnails.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Mapping
from typing import Any, Final

import numpy as np
from PIL import Image

from ledger.fingerprint import THUMB_SIZE

#: Tiles of a video strip shown in a report (a strip holds up to 32).
STRIP_TILES: Final = 8
#: Largest stored strip read (32 tiles of 48×48 RGB compress far below this).
MAX_STRIP_BYTES: Final = 1 << 20

#: What a record's thumbnail shows, by modality (captions in reports and the UI).
THUMBNAIL_SHOWS: Final = {
    "image": "thumbnail",
    "video": "middle sampled frame",
    "audio": "waveform",
    "3d": "projected silhouette",
}


def thumbnail_caption(modality: str | None) -> str:
    return THUMBNAIL_SHOWS.get(modality or "image", "thumbnail")


def strip_png(detail: Mapping[str, Any] | None, *, tiles: int = STRIP_TILES) -> tuple[bytes, int] | None:
    """(PNG of at most ``tiles`` evenly spaced sampled frames, how many) from a stored video
    fingerprint payload; None when there is no readable strip."""
    raw = detail.get("strip") if isinstance(detail, Mapping) else None
    if not isinstance(raw, str) or len(raw) > 2 * MAX_STRIP_BYTES:
        return None
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return None
    return strip_png_of(data, tiles=tiles)


def strip_png_of(strip: bytes, *, tiles: int = STRIP_TILES) -> tuple[bytes, int] | None:
    """:func:`strip_png` from a strip's stored PNG bytes (a VideoDetail's ``strip``)."""
    pixels = _strip_pixels(strip)
    if pixels is None:
        return None
    count = pixels.shape[1] // THUMB_SIZE
    picks = np.unique(np.linspace(0, count - 1, min(tiles, count)).round().astype(int))
    chosen = [pixels[:, k * THUMB_SIZE : (k + 1) * THUMB_SIZE] for k in picks]
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.concatenate(chosen, axis=1)), "RGB").save(
        out, format="PNG", compress_level=6
    )
    return out.getvalue(), len(chosen)


def _strip_pixels(data: bytes) -> np.ndarray | None:
    if len(data) > MAX_STRIP_BYTES:
        return None
    try:
        with Image.open(io.BytesIO(data), formats=("PNG",)) as im:
            width, height = im.size
            if height != THUMB_SIZE or width % THUMB_SIZE or not 0 < width <= 64 * THUMB_SIZE:
                return None
            return np.asarray(im.convert("RGB"))
    except (ValueError, OSError, Image.DecompressionBombError):
        return None  # unreadable stored bytes show as "no strip", never a crash
