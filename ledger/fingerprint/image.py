"""Image fingerprints: versioned content hashes of one still image plus a small thumbnail."""

from __future__ import annotations

import functools
import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imagehash
import numpy as np
import PIL
from PIL import Image

from ledger.errors import FingerprintError
from ledger.fingerprint._decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, decode
from ledger.fingerprint._types import Fingerprint

#: Bump when anything in decode/normalise/hash/thumbnail changes meaning.
PIPELINE = 1

#: The thumbnail is THUMB_SIZE×THUMB_SIZE RGB (aspect squashed, so any two
#: thumbnails can be compared), area-averaged, stored as PNG: about 5 KB.
THUMB_SIZE = 48

#: The version every fingerprint made by this code carries. Library versions are part
#: of it because Pillow resize changes have changed perceptual hashes before.
FINGERPRINT_VERSION = f"fp{PIPELINE}+pil{PIL.__version__}+ih{imagehash.__version__}"


def fingerprint_bytes(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Fingerprint:
    """Decode ``data`` once and compute every hash and the thumbnail from that decode."""
    # The two SHA-256s release the GIL (hashlib does for large buffers), as do Pillow's
    # decoder and resampler: hash the file while it decodes and the pixels while the
    # perceptual hashes resize. Same results as sequential, less wall time.
    pool = _pool()
    file_hash = pool.submit(_sha256_hex, data)
    decoded = decode(data, max_pixels=max_pixels)
    rgb = decoded.image
    width, height = rgb.size
    pixel_hash = pool.submit(_pixel_sha256, rgb)
    gray = rgb.convert("L")
    dhash = pool.submit(_dhash, gray)
    phash = _phash(gray)
    thumbnail = make_thumbnail(rgb)
    return Fingerprint(
        version=FINGERPRINT_VERSION,
        media_type=decoded.media_type,
        file_sha256=file_hash.result(),
        pixel_sha256=pixel_hash.result(),
        width=width,
        height=height,
        phash=phash,
        dhash=dhash.result(),
        thumbnail=thumbnail,
    )


def _pool() -> ThreadPoolExecutor:
    return _pool_for(os.getpid())  # a forked child gets its own threads


@functools.cache
def _pool_for(pid: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=3, thread_name_prefix="seedledger-fingerprint")


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pixel_sha256(rgb: Image.Image) -> str:
    digest = hashlib.sha256(b"seedledger-pixels:RGB8:%dx%d:" % rgb.size)
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def _phash(gray: Image.Image) -> int:
    """imagehash.phash(gray), bit for bit (tests pin it), without its extra copy:
    LANCZOS to 32×32, 2-D DCT-II (scipy.fftpack), 8×8 low block vs its median."""
    import scipy.fftpack  # as imagehash does: only when a hash is computed

    pixels = np.asarray(gray.resize((32, 32), Image.Resampling.LANCZOS))
    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)
    low = dct[:8, :8]
    return _bits_to_int(low > np.median(low))


def _dhash(gray: Image.Image) -> int:
    """imagehash.dhash(gray), bit for bit: LANCZOS to 9×8, left < right per row."""
    pixels = np.asarray(gray.resize((9, 8), Image.Resampling.LANCZOS))
    return _bits_to_int(pixels[:, 1:] > pixels[:, :-1])


def _bits_to_int(bits: np.ndarray) -> int:
    """Row-major, first bit most significant: the order of ``str(imagehash)``."""
    return int.from_bytes(np.packbits(bits.flatten()).tobytes(), "big")


def fingerprint_file(
    path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES
) -> Fingerprint:
    return fingerprint_bytes(read_bounded(path, max_bytes), max_pixels=max_pixels)


def read_bounded(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of ``path``, refused before reading when above ``max_bytes``."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise FingerprintError(f"{path.name} is {size} bytes, above the limit of {max_bytes}")
        return path.read_bytes()
    except FileNotFoundError:
        raise FingerprintError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise FingerprintError(f"{path} is a directory, not a media file") from None
    except OSError as exc:
        raise FingerprintError(f"cannot read {path}: {exc.strerror or exc}") from None


def thumbnail_image(rgb: Image.Image) -> Image.Image:
    # Area average; reducing_gap lets Pillow pre-shrink by an integer factor first.
    return rgb.resize((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BOX, reducing_gap=2.0)


def make_thumbnail(rgb: Image.Image) -> bytes:
    small = thumbnail_image(rgb)
    out = io.BytesIO()
    small.save(out, format="PNG", compress_level=9)
    return out.getvalue()


def thumbnail_pixels(thumbnail: bytes) -> np.ndarray:
    """The thumbnail as a THUMB_SIZE×THUMB_SIZE×3 uint8 array."""
    try:
        with Image.open(io.BytesIO(thumbnail), formats=("PNG",)) as im:
            if im.size != (THUMB_SIZE, THUMB_SIZE):
                width, height = im.size
                raise FingerprintError(f"thumbnail is {width}x{height}, not {THUMB_SIZE}x{THUMB_SIZE}")
            return np.asarray(im.convert("RGB"))
    except FingerprintError:
        raise
    except Exception as exc:  # Stored bytes we cannot read: say so, never crash.
        raise FingerprintError(f"stored thumbnail is unreadable: {exc.__class__.__name__}") from None
