"""Safe decoding: untrusted bytes -> one normalised RGB image, or FingerprintError.

Everything a fingerprint holds is computed from this one decode, so the rules here
(EXIF orientation, 16-bit scaling, alpha flattening) are part of the fingerprint
version: change them and bump ``PIPELINE`` in ``_fingerprint.py``.
"""

from __future__ import annotations

import contextlib
import io
import struct
import warnings
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ledger.errors import FingerprintError

#: Decoders we let Pillow use. Restricting them keeps rarely used parsers (and EPS,
#: which shells out to Ghostscript) away from untrusted bytes.
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF", "BMP")

#: 8192×8192: above any current generator's output, and bounds one decode to well
#: under 1 GB even for 16-bit RGBA sources.
DEFAULT_MAX_PIXELS = 8192 * 8192

#: Files above this size are refused before they are read.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024

#: Transparent pixels are composited onto this colour, so a transparent PNG and its
#: flattened copy on white get the same pixel hash.
BACKGROUND = (255, 255, 255)

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error, zlib.error)


@dataclass(frozen=True)
class Decoded:
    """A decoded still image, normalised: EXIF orientation applied, RGB, 8 bits."""

    image: Image.Image
    media_type: str | None
    source_mode: str


def decode(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Decode ``data`` once into a normalised RGB image.

    Raises :class:`FingerprintError` with a one-line reason for empty, non-image,
    truncated, animated or oversized input. Never decodes pixels before the size
    check, so a small file that claims huge dimensions costs nothing.
    """
    if max_pixels < 1:
        raise FingerprintError(f"max_pixels must be positive, not {max_pixels}")
    if not data:
        raise FingerprintError("empty input (0 bytes) is not an image")
    im = _open(data, max_pixels)
    try:
        decoded = _decode_opened(im, max_pixels)
    except BaseException:
        im.close()
        raise
    if decoded.image is not im:
        im.close()
    return decoded


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        # Pillow's own bomb check (Image.MAX_IMAGE_PIXELS) runs inside open(): make its
        # warning an error so it is refused, never printed and then decoded.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's limit applies too: the effective limit is the smaller of the two.
        limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
        raise FingerprintError(
            f"image dimensions exceed the decompression-bomb limit ({limit} pixels); refusing to decode"
        ) from None
    except UnidentifiedImageError:
        raise FingerprintError(
            f"not a supported image ({', '.join(ALLOWED_FORMATS)}); {_describe(data)}"
        ) from None
    except _DECODE_ERRORS as exc:
        raise FingerprintError(f"cannot read the image header: {_reason(exc)}") from None


def _decode_opened(im: Image.Image, max_pixels: int) -> Decoded:
    width, height = im.size
    if width < 1 or height < 1:
        raise FingerprintError(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise FingerprintError(
            f"image is {width}x{height} = {width * height} pixels, above the limit of "
            f"{max_pixels}; raise the pixel limit if this image is expected"
        )
    media_type = im.get_format_mimetype() if hasattr(im, "get_format_mimetype") else None
    try:
        frames = getattr(im, "n_frames", 1)
    except _DECODE_ERRORS as exc:
        raise FingerprintError(f"cannot decode the image: {_reason(exc)}") from None
    if getattr(im, "is_animated", False) or frames > 1:
        raise FingerprintError(f"animated image ({frames} frames): fingerprints cover still images only")
    source_mode = im.mode
    try:
        im.load()
    except _DECODE_ERRORS as exc:
        raise FingerprintError(f"cannot decode the image, truncated or corrupt: {_reason(exc)}") from None
    except MemoryError:
        raise FingerprintError(f"not enough memory to decode a {width}x{height} image") from None
    # Unreadable EXIF: keep the stored orientation (deterministic either way).
    with contextlib.suppress(*_DECODE_ERRORS):
        ImageOps.exif_transpose(im, in_place=True)
    return Decoded(image=_to_rgb(im), media_type=media_type, source_mode=source_mode)


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in _SIXTEEN_BIT_MODES:
        # Pillow's I;16 -> L conversion clips at 255; scale the 16-bit range instead
        # (round(v * 255 / 65535), the PNG specification's recommendation).
        wide = np.clip(np.asarray(im).astype(np.int64), 0, 65535)
        im = Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8), mode="L")
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        flat.alpha_composite(rgba)
        return flat.convert("RGB")
    if im.mode == "RGB":
        return im
    return im.convert("RGB")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return text[:200]


def _describe(data: bytes) -> str:
    head = data[:64]
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return f"{len(data)} bytes of text"
    return f"{len(data)} bytes starting {head[:8].hex()}"
