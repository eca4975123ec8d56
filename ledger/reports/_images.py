"""Thumbnails as inline PNG data URIs, and the difference heat map between two."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from ledger.fingerprint import THUMB_SIZE

#: Differences are scaled by this factor before colouring, so a mean channel
#: difference of 64 (of 255) or more shows as white-hot.
HEAT_GAIN = 4


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _pixels(thumbnail: bytes) -> np.ndarray | None:
    """A stored thumbnail's RGB pixels; None when it is not a readable THUMB_SIZE PNG."""
    try:
        with Image.open(io.BytesIO(thumbnail), formats=("PNG",)) as im:
            if im.size != (THUMB_SIZE, THUMB_SIZE):
                return None
            return np.asarray(im.convert("RGB"))
    except Exception:  # unreadable stored bytes show as "no thumbnail", never a crash
        return None


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", compress_level=6)
    return out.getvalue()


def thumbnail_png(thumbnail: bytes | None) -> bytes | None:
    """The stored thumbnail re-encoded from its decoded pixels (never the raw stored bytes,
    so nothing but pixels can reach the report), or None if unreadable."""
    pixels = _pixels(thumbnail) if thumbnail else None
    return None if pixels is None else _png(pixels)


def heat_map(original: bytes | None, replay: bytes | None) -> tuple[bytes, float, int] | None:
    """(PNG of |a − b| per pixel on a black→red→yellow→white scale, mean diff, max diff)."""
    pa = _pixels(original) if original else None
    pb = _pixels(replay) if replay else None
    if pa is None or pb is None:
        return None
    a, b = pa.astype(np.int16), pb.astype(np.int16)
    diff = np.abs(a - b).mean(axis=2)
    v = np.clip(diff * HEAT_GAIN, 0, 255) / 255.0
    # "hot" colour map: red rises first, then green, then blue.
    rgb = np.stack([np.clip(v * 3, 0, 1), np.clip(v * 3 - 1, 0, 1), np.clip(v * 3 - 2, 0, 1)], axis=2)
    return _png((rgb * 255).astype(np.uint8)), round(float(diff.mean()), 3), int(np.abs(a - b).max())
