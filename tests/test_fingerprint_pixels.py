"""Full-resolution PSNR/SSIM (ledger/fingerprint/pixels.py) and the verdict they refine,
on generated images: exact against independent formulas, banded in bounded memory,
σ 8 noise `similar`, lossless `identical`, JPEG q90 `near-identical`."""

from __future__ import annotations

import io
import math
import tracemalloc

import numpy as np
import pytest
from PIL import Image
from scipy.signal import correlate2d

from ledger.errors import FingerprintError
from ledger.fingerprint import Verdict, compare, compare_originals, compare_pixels, fingerprint_bytes, pixels


def _scene(width: int = 256, height: int = 192, seed: int = 0) -> np.ndarray:
    """A photo-like RGB image: smooth shading, a few shapes and mild texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = 90 + 60 * np.sin(x / 37.0) * np.cos(y / 29.0) + 0.2 * x
    for _ in range(6):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(12, 40)
        base += 50 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
    texture = rng.normal(0, 3, (height, width))
    rgb = np.stack([base + texture, base * 0.8 + 30 + texture, 200 - base * 0.5 + texture], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _encode(arr: np.ndarray, fmt: str = "PNG", **options: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr, "RGB").save(out, format=fmt, **options)
    return out.getvalue()


def _noisy(arr: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(arr + rng.normal(0, sigma, arr.shape)), 0, 255).astype(np.uint8)


def _reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. written out directly: explicit normalised 11×11 Gaussian, 'valid'
    correlation (window inside the image), population statistics."""
    g = np.exp(-(np.arange(-5, 6) ** 2) / (2 * 1.5**2))
    g /= g.sum()
    w = np.outer(g, g)
    coef = np.array([0.299, 0.587, 0.114])
    x, y = a.astype(np.float64) @ coef, b.astype(np.float64) @ coef

    def f(v: np.ndarray) -> np.ndarray:
        return np.asarray(correlate2d(v, w, mode="valid"))

    mx, my = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return float(np.mean((2 * mx * my + c1) * (2 * sxy + c2) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))))


def test_psnr_is_exact_and_none_for_equal_pixels() -> None:
    a = _scene(64, 48)
    assert pixels.psnr(a, a.copy()) is None
    b = a.astype(np.int16)
    b[::2] += 2  # half the rows off by 2 in every channel (some clip at 255)
    b = b.clip(0, 255).astype(np.uint8)
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    assert 0 < mse <= 2
    assert pixels.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-3)


@pytest.mark.parametrize("band_pixels", [1 << 18, 1])  # one band, and bands of 40 rows
def test_ssim_matches_the_direct_definition_in_any_band_size(
    band_pixels: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pixels, "BAND_PIXELS", band_pixels)
    a = _scene(67, 131, seed=3)
    for b in (_noisy(a, 8), _noisy(a, 2, seed=4), np.ascontiguousarray(a[:, ::-1])):
        assert pixels.ssim(a, b) == pytest.approx(_reference_ssim(a, b), abs=2e-6)
    assert pixels.ssim(a, a) == pytest.approx(1.0)


def test_ssim_needs_the_window_and_one_size() -> None:
    tiny = _scene(10, 40)
    assert pixels.ssim(tiny, _noisy(tiny, 8)) is None
    assert compare_pixels(tiny, tiny).psnr_db is None
    with pytest.raises(FingerprintError, match="one size"):
        pixels.ssim(_scene(20, 20), _scene(21, 20))


def test_ssim_memory_is_bounded_by_the_band_not_the_image(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pixels, "BAND_PIXELS", 1 << 15)
    a = _scene(2048, 2048)
    b = _noisy(a, 8)
    band = (pixels._band_rows(2048) + 2 * pixels.RADIUS) * 2048 * 8  # one float64 band map
    whole = 2048 * 2048 * 8  # one float64 map of the whole image
    tracemalloc.start()
    try:
        pixels.ssim(a, b)
        pixels.psnr(a, b)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * band < 0.5 * whole, (peak, band, whole)


def test_full_resolution_calls_fine_noise_similar_and_keeps_reencodes() -> None:
    a = _scene()
    original = _encode(a)
    fp = fingerprint_bytes(original)

    def both(data: bytes) -> tuple[Verdict, Verdict, dict[str, object]]:
        thumb = compare(fp, fingerprint_bytes(data))
        full = compare_originals(thumb, original, data)
        return thumb.verdict, full.verdict, full.to_dict()

    thumb, full, d = both(_encode(_noisy(a, 8)))
    assert (thumb, full) == (Verdict.NEAR_IDENTICAL, Verdict.SIMILAR)  # the thumbnail cannot see it
    assert d["full_resolution"] is True and float(d["pixel_psnr_db"]) < 34  # type: ignore[arg-type]
    assert "at full resolution PSNR" in str(d["reason"])

    thumb, full, d = both(_encode(a, "WEBP", lossless=True))
    assert (thumb, full) == (Verdict.IDENTICAL, Verdict.IDENTICAL)
    assert d["pixel_psnr_db"] is None and d["pixel_ssim"] == 1.0

    thumb, full, d = both(_encode(a, "JPEG", quality=90))
    assert (thumb, full) == (Verdict.NEAR_IDENTICAL, Verdict.NEAR_IDENTICAL)
    assert float(d["pixel_psnr_db"]) >= 34 and float(d["pixel_ssim"]) >= 0.9  # type: ignore[arg-type]


def test_other_sizes_and_plain_comparisons_keep_their_shape() -> None:
    a = _scene()
    original, smaller = _encode(a), _encode(a[:100, :100])
    thumb = compare(fingerprint_bytes(original), fingerprint_bytes(smaller))
    assert compare_originals(thumb, original, smaller) is thumb
    assert not {"full_resolution", "pixel_psnr_db", "pixel_ssim"} & set(thumb.to_dict())
