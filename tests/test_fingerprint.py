"""Fingerprints: safe decoding of a bad-input corpus, hashes, normalisation, verdicts."""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image

from ledger.errors import FingerprintError
from ledger.fingerprint import (
    FINGERPRINT_VERSION,
    THUMB_SIZE,
    Fingerprint,
    Verdict,
    compare,
    fingerprint_bytes,
    fingerprint_file,
    phash_chunks,
)

CALIBRATION = Path(__file__).resolve().parents[2] / "shared" / "calibration"


def scene(width: int = 96, height: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth, asymmetric RGB test picture (gradients plus a few blobs)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.stack([x / width * 200, y / height * 180, (x + y) / (width + height) * 120], axis=-1)
    for _ in range(4):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(6, 20)
        img += (np.hypot(x - cx, y - cy) < r)[..., None] * rng.uniform(-60, 60, 3)
    return np.clip(img, 0, 255).astype(np.uint8)


def encode(img: Image.Image | np.ndarray, fmt: str = "PNG", **options: object) -> bytes:
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    out = io.BytesIO()
    img.save(out, format=fmt, **options)
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims width×height (a decompression bomb's header)."""
    data = bytearray(encode(Image.new("L", (1, 1))))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (16, 16), (i * 80, 255 - i * 80, 0)) for i in range(3)]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    return out.getvalue()


def animated_png() -> bytes:
    frames = [Image.new("RGB", (16, 16), (i * 60, 0, 0)) for i in range(2)]
    out = io.BytesIO()
    frames[0].save(out, format="PNG", save_all=True, append_images=frames[1:])
    return out.getvalue()


# -- the bad-input corpus ---------------------------------------------------------------

BAD_INPUTS = {
    "zero-bytes": (b"", "empty input"),
    "text": (b"hello, this is not an image\n", "bytes of text"),
    "truncated-png": (encode(scene(256, 256))[:700], "truncated"),
    "bomb-30000x30000": (png_claiming(30000, 30000), "decompression-bomb limit"),
    "over-pixel-limit-9000x9000": (png_claiming(9000, 9000), "above the limit"),
    "animated-gif": (animated_gif(), "animated image (3 frames)"),
    "animated-png": (animated_png(), "animated image (2 frames)"),
    "tiff-not-allowed": (encode(scene(), "TIFF"), "not a supported image"),
    "png-signature-only": (b"\x89PNG\r\n\x1a\n", "8 bytes starting 89504e47"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_gets_one_clear_error(name: str) -> None:
    data, message = BAD_INPUTS[name]
    with pytest.raises(FingerprintError) as caught:
        fingerprint_bytes(data)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 5


def test_pixel_limit_is_configurable() -> None:
    data = encode(scene(40, 30))
    assert fingerprint_bytes(data, max_pixels=1200).width == 40
    with pytest.raises(FingerprintError, match="40x30 = 1200 pixels, above the limit of 1199"):
        fingerprint_bytes(data, max_pixels=1199)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(FingerprintError, match="no such file"):
        fingerprint_file(tmp_path / "nope.png")
    with pytest.raises(FingerprintError, match="is a directory"):
        fingerprint_file(tmp_path)
    big = tmp_path / "big.png"
    big.write_bytes(encode(scene()))
    with pytest.raises(FingerprintError, match="above the limit of 10"):
        fingerprint_file(big, max_bytes=10)


def test_cmyk_jpeg_fingerprints_as_its_rgb_conversion() -> None:
    cmyk = Image.fromarray(scene()).convert("CMYK")
    data = encode(cmyk, "JPEG", quality=95)
    fp = fingerprint_bytes(data)
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.mode == "CMYK"
        expected = fingerprint_bytes(encode(decoded.convert("RGB")))
    assert (fp.width, fp.height, fp.media_type) == (96, 64, "image/jpeg")
    assert fp.pixel_sha256 == expected.pixel_sha256


def test_16_bit_png_is_scaled_not_clipped() -> None:
    gray8 = scene()[..., 0]
    wide = Image.fromarray(gray8.astype(np.uint16) * 257)  # v8 * 257 spans the 16-bit range
    data = encode(wide)
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode.startswith("I")
    fp = fingerprint_bytes(data)
    assert fp.pixel_sha256 == fingerprint_bytes(encode(Image.fromarray(gray8, "L"))).pixel_sha256
    # Pillow's own I;16 -> L clips everything above 255 to white: not what we hash.
    with Image.open(io.BytesIO(data)) as clipped:
        assert fp.pixel_sha256 != fingerprint_bytes(encode(clipped.convert("L"))).pixel_sha256


def test_palette_with_alpha_is_flattened_on_white() -> None:
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:16, :, 3] = 255  # top half opaque red, bottom half fully transparent
    palette = Image.fromarray(rgba, "RGBA").quantize(colors=4)
    palette.info["transparency"] = palette.getpixel((0, 31))
    data = encode(palette)
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "P" and "transparency" in check.info
    flat = np.full((32, 32, 3), 255, np.uint8)
    with Image.open(io.BytesIO(data)) as check:
        flat[:16] = np.asarray(check.convert("RGB"))[:16]
    assert fingerprint_bytes(data).pixel_sha256 == fingerprint_bytes(encode(flat)).pixel_sha256


def test_rgba_and_its_flattened_copy_are_identical() -> None:
    rgba = np.dstack([scene(), np.linspace(0, 255, 96 * 64).reshape(64, 96).astype(np.uint8)])
    flat = Image.new("RGBA", (96, 64), (255, 255, 255, 255))
    flat.alpha_composite(Image.fromarray(rgba, "RGBA"))
    a = fingerprint_bytes(encode(Image.fromarray(rgba, "RGBA")))
    b = fingerprint_bytes(encode(flat.convert("RGB"), "WEBP", lossless=True))
    assert compare(a, b).verdict is Verdict.IDENTICAL
    assert a.file_sha256 != b.file_sha256


@pytest.mark.parametrize(
    "orientation,stored", [(6, Image.Transpose.ROTATE_90), (3, Image.Transpose.ROTATE_180)]
)
def test_exif_orientation_is_applied(orientation: int, stored: Image.Transpose) -> None:
    upright = Image.fromarray(scene())
    exif = Image.Exif()
    exif[0x0112] = orientation
    rotated = encode(upright.transpose(stored), "PNG", exif=exif)
    fp = fingerprint_bytes(rotated)
    assert (fp.width, fp.height) == (96, 64)
    assert fp.pixel_sha256 == fingerprint_bytes(encode(upright)).pixel_sha256


def test_grayscale_and_bilevel_inputs() -> None:
    gray = scene()[..., 1]
    fp = fingerprint_bytes(encode(Image.fromarray(gray, "L")))
    assert fp.pixel_sha256 == fingerprint_bytes(encode(np.dstack([gray] * 3))).pixel_sha256
    assert fingerprint_bytes(encode(Image.fromarray(gray, "L").convert("1"))).width == 96


# -- hashes -----------------------------------------------------------------------------


def _imagehash_int(h: imagehash.ImageHash) -> int:
    return int(str(h), 16)


def _calibration_images() -> list[Path]:
    return sorted(CALIBRATION.glob("*.png"))


@pytest.mark.skipif(not CALIBRATION.is_dir(), reason="calibration images not present")
@pytest.mark.parametrize("path", _calibration_images(), ids=lambda p: p.stem)
def test_hashes_are_bit_identical_to_imagehash(path: Path) -> None:
    fp = fingerprint_file(path)
    with Image.open(path) as im:
        if im.mode in ("RGBA", "LA", "P"):
            flat = Image.new("RGBA", im.size, (255, 255, 255, 255))
            flat.alpha_composite(im.convert("RGBA"))
            im = flat.convert("RGB")
        assert fp.phash == _imagehash_int(imagehash.phash(im))
        assert fp.dhash == _imagehash_int(imagehash.dhash(im))


@pytest.mark.parametrize("seed", range(5))
def test_hashes_match_imagehash_on_random_sizes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    img = scene(int(rng.integers(20, 300)), int(rng.integers(20, 300)), seed)
    fp = fingerprint_bytes(encode(img))
    assert fp.phash == _imagehash_int(imagehash.phash(Image.fromarray(img)))
    assert fp.dhash == _imagehash_int(imagehash.dhash(Image.fromarray(img)))


def test_fingerprint_fields() -> None:
    fp = fingerprint_bytes(encode(scene()))
    assert fp.version == FINGERPRINT_VERSION
    assert fp.version.startswith("fp1+pil") and "+ih" in fp.version
    assert len(fp.file_sha256) == len(fp.pixel_sha256) == 64
    c0, c1, c2, c3 = fp.phash_chunks
    assert (c0 << 48) | (c1 << 32) | (c2 << 16) | c3 == fp.phash
    assert fp.phash.bit_count() == 32  # imagehash's median split: always 32 bits set
    assert len(fp.thumbnail) < 8192
    with Image.open(io.BytesIO(fp.thumbnail)) as thumb:
        assert thumb.size == (THUMB_SIZE, THUMB_SIZE) and thumb.format == "PNG"
    with pytest.raises(dataclasses.FrozenInstanceError):
        fp.phash = 0  # type: ignore[misc]
    assert fp.to_dict()["phash"] == f"{fp.phash:016x}"
    assert "thumbnail_png" not in fp.to_dict()


def test_chunks_and_range_checks() -> None:
    assert phash_chunks(0x0123_4567_89AB_CDEF) == (0x0123, 0x4567, 0x89AB, 0xCDEF)
    with pytest.raises(FingerprintError, match="unsigned 64-bit"):
        dataclasses.replace(fingerprint_bytes(encode(scene())), phash=1 << 64)


def test_pixel_hash_covers_the_size() -> None:
    # Same bytes, different shape: 2x8 vs 4x4 of one colour must not be identical.
    a = fingerprint_bytes(encode(np.zeros((2, 8, 3), np.uint8)))
    b = fingerprint_bytes(encode(np.zeros((4, 4, 3), np.uint8)))
    assert a.pixel_sha256 != b.pixel_sha256


# -- verdicts ---------------------------------------------------------------------------


def test_identical_only_on_equal_pixels() -> None:
    img = scene(128, 128)
    one_off = img.copy()
    one_off[5, 5, 0] ^= 1  # one level on one pixel: every perceptual hash is unchanged
    a, b = fingerprint_bytes(encode(img)), fingerprint_bytes(encode(one_off))
    c = compare(a, b)
    assert c.phash_distance == 0 and c.dhash_distance == 0
    assert not c.pixel_equal
    assert c.verdict is Verdict.NEAR_IDENTICAL
    same = compare(a, fingerprint_bytes(encode(img, "BMP")))
    assert same.verdict is Verdict.IDENTICAL and not same.file_equal and same.thumb_psnr_db is None


def test_verdict_ladder_on_a_calibration_photo() -> None:
    path = CALIBRATION / "camera.png"
    if not path.exists():
        pytest.skip("calibration images not present")
    with Image.open(path) as im:
        img = np.asarray(im.convert("RGB"))
    base = fingerprint_bytes(encode(img))
    jpeg = compare(base, fingerprint_bytes(encode(img, "JPEG", quality=80)))
    assert jpeg.verdict is Verdict.NEAR_IDENTICAL
    moved = np.pad(img, ((0, 0), (51, 0), (0, 0)), mode="edge")[:, :512]
    assert compare(base, fingerprint_bytes(encode(moved))).verdict is Verdict.DIFFERENT
    with Image.open(CALIBRATION / "moon.png") as other:
        different = compare(base, fingerprint_bytes(encode(other.convert("RGB"))))
    assert different.verdict is Verdict.DIFFERENT
    assert different.phash_distance > 8
    data = different.to_dict()
    assert data["verdict"] == "different"
    assert set(data) >= {"phash_distance", "dhash_distance", "thumb_psnr_db", "thumb_mean_abs_diff"}


def test_size_mismatch_is_never_near_identical() -> None:
    img = Image.fromarray(scene(200, 200))
    a = fingerprint_bytes(encode(img))
    b = fingerprint_bytes(encode(img.resize((100, 100), Image.Resampling.LANCZOS)))
    c = compare(a, b)
    assert not c.same_size
    assert c.verdict in (Verdict.SIMILAR, Verdict.DIFFERENT)


def test_cross_version_comparison_is_flagged() -> None:
    a = fingerprint_bytes(encode(scene()))
    b = dataclasses.replace(a, version="fp0+old")
    c = compare(a, b)
    assert not c.same_version and c.version_b == "fp0+old"


def test_unreadable_stored_thumbnail_is_a_fingerprint_error() -> None:
    a = fingerprint_bytes(encode(scene()))
    broken = dataclasses.replace(a, thumbnail=b"not a png")
    with pytest.raises(FingerprintError, match="thumbnail"):
        compare(a, broken)


def test_fingerprint_type_is_exported() -> None:
    assert Fingerprint.__module__.startswith("ledger.fingerprint")
