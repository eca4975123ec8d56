"""A1111 "stealth" infotext hidden in the least significant bits of the pixels.

The sd-webui-stealth-pnginfo extension writes a 15-byte signature, a 32-bit big-endian
bit count and the infotext (gzip-compressed for ``…comp``), bit by bit, column by column
(x outer, y inner): in the alpha channel (``stealth_pnginfo`` / ``stealth_pngcomp``) or
in the R, G, B channels (``stealth_rgbinfo`` / ``stealth_rgbcomp``).
"""

from __future__ import annotations

import gzip
import io
import zlib
from typing import Final

from ledger.errors import InvalidInputError

_SIGNATURES: Final = {
    b"stealth_pnginfo": ("alpha", False),
    b"stealth_pngcomp": ("alpha", True),
    b"stealth_rgbinfo": ("rgb", False),
    b"stealth_rgbcomp": ("rgb", True),
}
_MAX_PIXELS: Final = 64 * 1024 * 1024
_MAX_TEXT: Final = 1024 * 1024


def _bits(data: bytes, alpha: bool) -> bytes | None:
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        if im.width * im.height > _MAX_PIXELS:
            return None
        if alpha:
            if "A" not in im.getbands():
                return None
            plane = np.asarray(im.getchannel("A"))
            bits = plane.T.reshape(-1) & 1
        else:
            rgb = np.asarray(im.convert("RGB"))
            bits = rgb.transpose(1, 0, 2).reshape(-1) & 1
    return bytes(np.packbits(bits))


def read_stealth(data: bytes, has_alpha: bool) -> str | None:
    """The hidden infotext, or None when the pixels carry no signature."""
    try:
        for alpha in (True, False) if has_alpha else (False,):
            packed = _bits(data, alpha)
            if packed is None or len(packed) < 19:
                continue
            found = _SIGNATURES.get(packed[:15])
            if found is None or (found[0] == "alpha") != alpha:
                continue
            length = int.from_bytes(packed[15:19], "big") // 8
            if length > min(_MAX_TEXT, len(packed) - 19):
                raise InvalidInputError("stealth infotext: length runs past the image")
            body = packed[19 : 19 + length]
            if found[1]:
                body = gzip.GzipFile(fileobj=io.BytesIO(body)).read(_MAX_TEXT + 1)
                if len(body) > _MAX_TEXT:
                    raise InvalidInputError("stealth infotext inflates beyond 1 MiB; refused")
            return body.decode("utf-8")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInputError(f"stealth infotext is corrupt: {exc}") from None
    return None
