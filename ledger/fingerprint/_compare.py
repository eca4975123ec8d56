"""compare(a, b): the verdict ladder and every raw distance beside it.

identical       the normalised pixels (and size) hash the same: nothing else decides it
near-identical  same size, phash within ``near_phash`` and thumbnail PSNR at least
                ``near_psnr_db``: re-encodes, ±1 noise, slight blur (GPU-noise level)
similar         same composition with visible drift: phash within ``close_phash``
                (thumbnail PSNR above a sanity floor ``close_psnr_db``: small shifts),
                or phash within ``similar_phash`` with thumbnail PSNR at least
                ``similar_psnr_db`` (stochastic-scheduler replays)
different       otherwise

The thresholds come from ``scripts/calibrate.py``; docs/calibration.md holds the
measured distributions and error rates behind them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ledger.fingerprint._types import Fingerprint, Verdict, content_equal, hamming
from ledger.fingerprint.image import thumbnail_pixels


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    near_phash: int
    near_psnr_db: float
    close_phash: int
    close_psnr_db: float
    similar_phash: int
    similar_psnr_db: float


#: Calibrated by scripts/calibrate.py (see docs/calibration.md). phash distances are
#: always even (imagehash's median split), so 4/6/10 are the steps below 6/8/12.
DEFAULT_THRESHOLDS = Thresholds(
    near_phash=4,
    near_psnr_db=40.0,
    close_phash=6,
    close_psnr_db=15.0,
    similar_phash=10,
    similar_psnr_db=30.0,
)


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """The verdict and the raw distances it was decided from.

    ``thumb_psnr_db`` is None when the thumbnails are equal (infinite PSNR).
    ``same_version`` False means the two fingerprints were made by different hashing
    pipelines or library versions: perceptual distances may then be off by a few bits.
    ``full_resolution`` True means both originals were compared pixel by pixel
    (:mod:`ledger.fingerprint.pixels`): ``pixel_psnr_db`` (None: equal pixels) and
    ``pixel_ssim`` then sit beside the perceptual distances and took part in the verdict.
    """

    verdict: Verdict
    reason: str
    pixel_equal: bool
    file_equal: bool
    same_size: bool
    phash_distance: int
    dhash_distance: int
    thumb_mean_abs_diff: float
    thumb_max_abs_diff: int
    thumb_psnr_db: float | None
    same_version: bool
    version_a: str
    version_b: str
    full_resolution: bool = False
    pixel_psnr_db: float | None = None
    pixel_ssim: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = str(self.verdict)
        if not self.full_resolution:  # the shape stored before full-resolution audits
            for key in ("full_resolution", "pixel_psnr_db", "pixel_ssim"):
                del data[key]
        return data


def compare_images(
    a: Fingerprint, b: Fingerprint, *, thresholds: Thresholds = DEFAULT_THRESHOLDS
) -> Comparison:
    ta = thumbnail_pixels(a.thumbnail).astype(np.int16)
    tb = thumbnail_pixels(b.thumbnail).astype(np.int16)
    diff = np.abs(ta - tb)
    mse = float(np.mean(diff.astype(np.float64) ** 2))
    psnr = None if mse == 0 else round(10 * math.log10(255.0**2 / mse), 3)
    pixel_equal = content_equal(a, b)
    same_size = (a.width, a.height) == (b.width, b.height)
    p = hamming(a.phash, b.phash)
    verdict, reason = _decide(pixel_equal, same_size, p, psnr, thresholds)
    return Comparison(
        verdict=verdict,
        reason=reason,
        pixel_equal=pixel_equal,
        file_equal=a.file_sha256 == b.file_sha256,
        same_size=same_size,
        phash_distance=p,
        dhash_distance=hamming(a.dhash, b.dhash),
        thumb_mean_abs_diff=round(float(diff.mean()), 4),
        thumb_max_abs_diff=int(diff.max()),
        thumb_psnr_db=psnr,
        same_version=a.version == b.version,
        version_a=a.version,
        version_b=b.version,
    )


def _decide(
    pixel_equal: bool, same_size: bool, p: int, psnr: float | None, t: Thresholds
) -> tuple[Verdict, str]:
    if pixel_equal:
        return Verdict.IDENTICAL, "pixel hashes are equal"
    psnr_value = math.inf if psnr is None else psnr
    if same_size and p <= t.near_phash and psnr_value >= t.near_psnr_db:
        return Verdict.NEAR_IDENTICAL, (
            f"phash distance {p} <= {t.near_phash} and thumbnail PSNR >= {t.near_psnr_db:g} dB"
        )
    why = "" if same_size else " (sizes differ, so at most similar)"
    if p <= t.close_phash and psnr_value >= t.close_psnr_db:
        return Verdict.SIMILAR, (
            f"phash distance {p} <= {t.close_phash} and thumbnail PSNR >= {t.close_psnr_db:g} dB{why}"
        )
    if p <= t.similar_phash and psnr_value >= t.similar_psnr_db:
        return Verdict.SIMILAR, (
            f"phash distance {p} <= {t.similar_phash} and thumbnail PSNR >= {t.similar_psnr_db:g} dB{why}"
        )
    return Verdict.DIFFERENT, (f"phash distance {p} or thumbnail PSNR {_fmt(psnr)} outside the similar band")


def _fmt(psnr: float | None) -> str:
    return "inf" if psnr is None else f"{psnr:g} dB"
