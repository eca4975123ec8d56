"""What a video, audio or 3D record looks like in a report, from its stored fingerprint.

Every fingerprint keeps a THUMB_SIZE PNG thumbnail: a video's middle sampled frame, an
audio track's min…max waveform, a mesh's projected depth silhouette. A video's payload
also keeps the frame strip (every sampled frame's tile side by side), and an audit of a
video keeps the replay's strip reduced to :data:`STRIP_TILES` tiles
(``replay["frame_strip_png"]``). Everything shown is re-encoded from decoded pixels
(never the stored bytes) and bounded in size, like the image thumbnails.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Final

from ledger.fingerprint._thumbs_video import MAX_STRIP_BYTES, STRIP_TILES, display_strip

__all__ = ["STRIP_TILES", "strip_png", "strip_png_of", "thumbnail_caption"]

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
    return strip_png_b64(raw, tiles=tiles)


def strip_png_b64(raw: Any, *, tiles: int = STRIP_TILES) -> tuple[bytes, int] | None:
    """:func:`strip_png` from a base64 strip (as payloads and audit results keep it)."""
    if not isinstance(raw, str) or len(raw) > 2 * MAX_STRIP_BYTES:
        return None
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return None
    return display_strip(data, tiles=tiles)


def strip_png_of(strip: bytes, *, tiles: int = STRIP_TILES) -> tuple[bytes, int] | None:
    """:func:`strip_png` from a strip's PNG bytes (a VideoDetail's ``strip``)."""
    return display_strip(strip, tiles=tiles)
