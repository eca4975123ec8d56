"""A video's frame strip reduced for display: at most a few evenly spaced tiles.

A fingerprint's strip holds every sampled frame's THUMB_SIZE tile side by side (up to
32). Reports, the UI and audit results show at most :data:`STRIP_TILES` of them,
re-encoded from the decoded pixels, so what is kept or shown is small and bounded.
"""

from __future__ import annotations

import base64
import io
from typing import Final

import numpy as np
from PIL import Image

from ledger.fingerprint._types import Fingerprint
from ledger.fingerprint.image import THUMB_SIZE

#: Tiles shown of a strip (evenly spaced from the first sampled frame to the last).
STRIP_TILES: Final = 8
#: Largest stored strip read (32 tiles of 48×48 RGB compress far below this).
MAX_STRIP_BYTES: Final = 1 << 20


def display_strip(strip: bytes, *, tiles: int = STRIP_TILES) -> tuple[bytes, int] | None:
    """(PNG of at most ``tiles`` evenly spaced tiles, how many) from a strip's PNG bytes;
    None when the bytes are not a readable strip (never raises)."""
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
    if not data or len(data) > MAX_STRIP_BYTES:
        return None
    try:
        with Image.open(io.BytesIO(data), formats=("PNG",)) as im:
            width, height = im.size
            if height != THUMB_SIZE or width % THUMB_SIZE or not 0 < width <= 64 * THUMB_SIZE:
                return None
            return np.asarray(im.convert("RGB"))
    except (ValueError, OSError, Image.DecompressionBombError):
        return None  # unreadable stored bytes show as "no strip", never a crash


def display_strip_b64(fp: Fingerprint) -> str | None:
    """A video fingerprint's :func:`display_strip` as base64 text (what an audit result
    keeps of a replay's frames); None for other modalities or an unreadable strip."""
    strip = getattr(fp.detail, "strip", None) if fp.modality == "video" else None
    made = display_strip(strip) if isinstance(strip, bytes) else None
    return base64.b64encode(made[0]).decode("ascii") if made else None
