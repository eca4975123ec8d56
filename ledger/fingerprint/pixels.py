"""Full-resolution pixel measures: PSNR and SSIM of two decoded images (pure).

The stored fingerprint keeps a 48-pixel thumbnail, which cannot see fine drift (noise
of σ 8 averages away). When both originals are at hand (an archived output and its
replay), these measures compare every pixel:

* **PSNR** over the RGB channels, 8-bit peak: ``10·log10(255² / MSE)``; None when the
  pixels are equal (infinite).
* **SSIM** after Wang, Bovik, Sheikh and Simoncelli (2004) on BT.601 luma: an 11×11
  Gaussian window of σ 1.5, K1 = 0.01, K2 = 0.03, L = 255, averaged over the positions
  where the window lies inside the image (no padding). None when a side is shorter
  than the window.

With both measures, :func:`refine` sharpens a fingerprint comparison: a pair the
thumbnail calls ``near-identical`` stays so only when the full-resolution PSNR and
SSIM reach :data:`DEFAULT_PIXEL_THRESHOLDS` (re-encodes do, noise of σ 8 does not);
otherwise it is ``similar``. ``identical`` (equal pixel hashes), ``similar`` and
``different`` are never changed: fine measures only see drift the thumbnail missed.
Thresholds and measurements: docs/calibration.md ("Full-resolution audits",
``scripts/calibrate_pixels.py``).

Both run over bands of rows (a band plus the window's halo at a time), so the extra
memory beyond the two decoded images is a few float64 bands, not whole-image float
copies, for any image size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from ledger.errors import FingerprintError
from ledger.fingerprint._compare import Comparison
from ledger.fingerprint._types import Verdict

SIGMA = 1.5
RADIUS = 5  # 11-tap window: scipy takes int(truncate·σ + 0.5) = int(5.5) taps each side
_TRUNCATE = RADIUS / SIGMA
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2
#: Pixels per band (rows × width): about a dozen float64 maps of a band are alive at
#: once (about 30 MiB measured at 1024² and 4096²), whatever the image size.
BAND_PIXELS = 1 << 18
_LUMA = np.array([0.299, 0.587, 0.114])

RGB8 = NDArray[np.uint8]


@dataclass(frozen=True, kw_only=True)
class PixelComparison:
    """Full-resolution measures of two same-size images."""

    psnr_db: float | None  # None: the pixels are equal
    ssim: float | None  # None: smaller than the 11-pixel window
    width: int
    height: int


@dataclass(frozen=True, kw_only=True)
class PixelThresholds:
    near_psnr_db: float
    near_ssim: float


#: Calibrated by scripts/calibrate_pixels.py (docs/calibration.md): noise of σ 8 measures
#: 30.1–33.0 dB, JPEG q≥85 and WEBP q≥80 at least 35.2 dB. The SSIM floor is a second
#: line (σ 8 scores below it on 9 of 12 images; a reference-backend PNG vs its JPEG q90
#: scores 0.949 at 41 dB, so a floor of 0.95 would misjudge plain re-encodes).
DEFAULT_PIXEL_THRESHOLDS = PixelThresholds(near_psnr_db=34.0, near_ssim=0.90)


def _check(a: RGB8, b: RGB8) -> tuple[int, int]:
    if a.shape != b.shape or a.ndim != 3 or a.shape[2] != 3:
        raise FingerprintError(
            f"pixel comparison needs two RGB images of one size, got {a.shape} and {b.shape}"
        )
    return int(a.shape[0]), int(a.shape[1])


def _band_rows(width: int) -> int:
    return max(8 * RADIUS, BAND_PIXELS // max(width, 1))


def psnr(a: RGB8, b: RGB8) -> float | None:
    """PSNR in dB of two same-size RGB uint8 images; None when they are equal."""
    height, width = _check(a, b)
    step = _band_rows(width)
    total = 0
    for top in range(0, height, step):
        d = a[top : top + step].astype(np.int32) - b[top : top + step]
        total += int(np.einsum("ijk,ijk->", d, d, dtype=np.int64))
    if total == 0:
        return None
    mse = total / (height * width * 3)
    return round(10 * math.log10(255.0**2 / mse), 3)


def _luma(rgb: RGB8) -> NDArray[np.float64]:
    return np.asarray(rgb @ _LUMA, dtype=np.float64)


def ssim(a: RGB8, b: RGB8) -> float | None:
    """Mean SSIM of the luma of two same-size RGB uint8 images (see the module doc)."""
    from scipy.ndimage import gaussian_filter  # a second to import: only when measuring

    height, width = _check(a, b)
    if min(height, width) < 2 * RADIUS + 1:
        return None
    step = _band_rows(width)
    total = 0.0
    count = 0
    # Output rows RADIUS … height-RADIUS-1 (the window inside the image), one band at a
    # time; each band is filtered with RADIUS rows of halo so its rows are exact.
    for top in range(RADIUS, height - RADIUS, step):
        bottom = min(top + step, height - RADIUS)
        lo, hi = top - RADIUS, bottom + RADIUS
        x, y = _luma(a[lo:hi]), _luma(b[lo:hi])

        def blur(v: NDArray[np.float64]) -> NDArray[np.float64]:
            out: NDArray[np.float64] = gaussian_filter(v, SIGMA, truncate=_TRUNCATE, mode="nearest")
            return out[RADIUS:-RADIUS, RADIUS:-RADIUS]

        mx, my = blur(x), blur(y)
        sxx = blur(x * x) - mx * mx
        syy = blur(y * y) - my * my
        sxy = blur(x * y) - mx * my
        num = (2 * mx * my + _C1) * (2 * sxy + _C2)
        den = (mx * mx + my * my + _C1) * (sxx + syy + _C2)
        total += float(np.sum(num / den))
        count += num.size
    return round(total / count, 6)


def compare_pixels(a: RGB8, b: RGB8) -> PixelComparison:
    """PSNR and SSIM of two decoded same-size RGB images."""
    height, width = _check(a, b)
    return PixelComparison(psnr_db=psnr(a, b), ssim=ssim(a, b), width=width, height=height)


def decoded_rgb(data: bytes) -> RGB8:
    """An output's pixels as the fingerprint sees them (the same safe decoder and
    normalisation: orientation, alpha on white, 8-bit RGB). Raises FingerprintError."""
    from ledger.fingerprint._decode import decode

    return np.asarray(decode(data).image, dtype=np.uint8)


def refine(
    comparison: Comparison, pixels: PixelComparison, *, thresholds: PixelThresholds = DEFAULT_PIXEL_THRESHOLDS
) -> Comparison:
    """``comparison`` with the full-resolution measures beside it, and its verdict
    lowered from ``near-identical`` to ``similar`` when they fall short."""
    measured = replace(comparison, full_resolution=True, pixel_psnr_db=pixels.psnr_db, pixel_ssim=pixels.ssim)
    if comparison.verdict is not Verdict.NEAR_IDENTICAL:
        return measured
    short = []
    if pixels.psnr_db is not None and pixels.psnr_db < thresholds.near_psnr_db:
        short.append(f"PSNR {pixels.psnr_db:g} dB < {thresholds.near_psnr_db:g} dB")
    if pixels.ssim is not None and pixels.ssim < thresholds.near_ssim:
        short.append(f"SSIM {pixels.ssim:.4f} < {thresholds.near_ssim:g}")
    if not short:
        return replace(measured, reason=f"{comparison.reason}; full-resolution PSNR and SSIM agree")
    return replace(
        measured,
        verdict=Verdict.SIMILAR,
        reason=f"{comparison.reason}, but at full resolution {' and '.join(short)}",
    )


def compare_originals(comparison: Comparison, original: bytes, replay: bytes) -> Comparison:
    """Refine an image comparison with the two originals' pixels. Images of different
    sizes keep ``comparison`` as it is (the size difference already decided it).
    Raises FingerprintError when either side cannot be decoded."""
    a, b = decoded_rgb(original), decoded_rgb(replay)
    if a.shape != b.shape:
        return comparison
    return refine(comparison, compare_pixels(a, b))
