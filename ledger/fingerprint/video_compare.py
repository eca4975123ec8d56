"""compare_videos(a, b): align two sampled-frame sequences in time, then the verdict ladder.

The samples sit at fixed timestamps; a replay may be re-encoded or start a frame or
two late, so the sequences are paired at time lags of up to ±0.25 s (at least ±2 sample steps) (each
sample of ``a`` with the nearest sample of ``b`` at ``t + lag``) and the lag with the
smallest mean phash distance wins. Per pair: the phash distance, the tile PSNR and the
PSNR of the tiles box-averaged to 12×12 (``coarse``: what survives once a codec's
lost texture and pixel noise are averaged away); the worst aligned segment is the run
of ``SEGMENT`` consecutive pairs with the largest mean phash distance. The motion
correlation is the cosine between the two clips' changes over a quarter of their
length (coarse tiles): near 1 for the same motion, ≤ 0 for a clip played backwards or panned the
other way; None when either clip is too still for its motion to say anything.

identical       the decoded-frames hashes are equal: nothing else decides it
different       motion correlation below ``min_motion_correlation`` (backwards,
                another motion), or under ``min_coverage`` of the samples align
near-identical  same size and duration, mean phash within ``near_mean_phash``, the
                worst segment within ``near_segment_phash``, and median tile PSNR at
                least ``near_psnr_db`` or median coarse PSNR at least
                ``near_coarse_psnr_db`` (re-encodes at another CRF or codec, ±1 noise,
                a frame late)
similar         mean phash within ``similar_mean_phash``, worst segment within
                ``similar_segment_phash`` and every aligned tile at least
                ``similar_min_psnr_db``; or every coarse tile at least
                ``similar_min_coarse_psnr_db`` (heavy noise, stochastic drift, harsh
                re-encodes of fine texture, whose phash bits flip)
different       otherwise (another clip, sizes or lengths apart)

Thresholds come from ``scripts/calibrate_media.py`` (docs/calibration.md). The rule
is versioned (``VIDEO_RULE``, in every comparison) apart from the fingerprint: it
reads only what every video fingerprint already stores (hashes and tiles).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ledger.errors import FingerprintError
from ledger.fingerprint._types import Fingerprint, Verdict, content_equal, content_hash_kind, hamming
from ledger.fingerprint.video import VideoDetail

SEGMENT = 3
#: Bump when the ladder below changes meaning (2: coarse PSNR and motion correlation).
VIDEO_RULE = 2
#: Tiles are box-averaged by COARSE (48 -> 12 px) for the coarse PSNR and the motion.
COARSE = 4
#: Motion is the change over this share of the aligned samples (a quarter of the clip).
MOTION_SPAN = 0.25
#: RMS change over that span (grey levels, coarse tiles) under which a clip counts as still.
STILL_MOTION = 1.0
#: Lags tried: ±MAX_LAG_S, at least ±2 sample steps.
MAX_LAG_S = 0.25


@dataclass(frozen=True, kw_only=True)
class VideoThresholds:
    near_psnr_db: float
    near_mean_phash: float
    near_segment_phash: float
    similar_mean_phash: float
    similar_segment_phash: float
    similar_min_psnr_db: float
    min_coverage: float
    near_coarse_psnr_db: float
    similar_min_coarse_psnr_db: float
    min_motion_correlation: float


#: From scripts/calibrate_media.py (docs/calibration.md).
DEFAULT_VIDEO_THRESHOLDS = VideoThresholds(
    near_psnr_db=30.0,
    near_mean_phash=10.0,
    near_segment_phash=14.0,
    similar_mean_phash=12.0,
    similar_segment_phash=18.0,
    similar_min_psnr_db=22.0,
    min_coverage=0.75,
    near_coarse_psnr_db=40.0,
    similar_min_coarse_psnr_db=30.0,
    min_motion_correlation=0.3,
)


@dataclass(frozen=True, kw_only=True)
class VideoComparison:
    verdict: Verdict
    reason: str
    pixel_equal: bool
    file_equal: bool
    same_size: bool
    duration_a_s: float
    duration_b_s: float
    frame_count_a: int
    frame_count_b: int
    lag_s: float
    aligned: int
    coverage: float
    frame_phash: tuple[int, ...]
    frame_psnr_db: tuple[float | None, ...]
    mean_phash: float
    max_phash: int
    min_psnr_db: float | None
    median_psnr_db: float | None
    worst_segment_start_s: float
    worst_segment_end_s: float
    worst_segment_phash: float
    median_coarse_psnr_db: float | None
    min_coarse_psnr_db: float | None
    motion_correlation: float | None
    same_version: bool
    version_a: str
    version_b: str
    modality: str = "video"
    rule: int = VIDEO_RULE

    @property
    def phash_distance(self) -> int:  # sorts lookup matches beside images
        return self.max_phash

    @property
    def dhash_distance(self) -> int:
        return round(self.mean_phash)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = str(self.verdict)
        data["frame_phash"] = list(self.frame_phash)
        data["frame_psnr_db"] = list(self.frame_psnr_db)
        return data


def _detail(fp: Fingerprint) -> VideoDetail:
    if not isinstance(fp.detail, VideoDetail):
        raise FingerprintError("video fingerprint carries no sampled frames")
    return fp.detail


def compare_videos(
    a: Fingerprint, b: Fingerprint, *, thresholds: VideoThresholds = DEFAULT_VIDEO_THRESHOLDS
) -> VideoComparison:
    da, db = _detail(a), _detail(b)
    tiles_a, tiles_b = da.tiles().astype(np.int16), db.tiles().astype(np.int16)
    best: tuple[float, float, list[tuple[int, int]]] | None = None
    steps = max(2, round(MAX_LAG_S / da.step_s))
    for k in range(-steps, steps + 1):
        lag = k * da.step_s
        pairs = _pairs(da, db, lag)
        if not pairs:
            continue
        mean = sum(hamming(da.sample_phash[i], db.sample_phash[j]) for i, j in pairs) / len(pairs)
        key = (mean, abs(lag))
        if best is None or key < (best[0], abs(best[1])):
            best = (mean, lag, pairs)
    if best is None:
        raise FingerprintError("the two videos share no time span to compare")
    _, lag, pairs = best
    phash = [hamming(da.sample_phash[i], db.sample_phash[j]) for i, j in pairs]
    psnr = [_psnr(tiles_a[i], tiles_b[j]) for i, j in pairs]
    coarse_a = _coarse(tiles_a[[i for i, _ in pairs]])
    coarse_b = _coarse(tiles_b[[j for _, j in pairs]])
    coarse = [_psnr(x, y) for x, y in zip(coarse_a, coarse_b, strict=True)]
    motion = _motion_correlation(coarse_a, coarse_b)
    width = min(SEGMENT, len(pairs))
    windows = [sum(phash[s : s + width]) / width for s in range(len(pairs) - width + 1)]
    worst = int(np.argmax(windows))
    coverage = len(pairs) / max(len(da.sample_times), len(db.sample_times))
    finite = [p for p in psnr if p is not None]
    min_psnr = min(finite) if finite else None
    # Equal tiles count as infinitely close: the median is None only if most are equal.
    ranked = sorted(math.inf if p is None else p for p in psnr)
    median = ranked[len(ranked) // 2]
    same_size = (a.width, a.height) == (b.width, b.height)
    # Hashes of two kinds (a record fingerprinted before pipeline 3) cannot show equality.
    kind_a, kind_b = content_hash_kind(a), content_hash_kind(b)
    hashes_comparable = kind_a is not None and kind_a == kind_b
    pixel_equal = content_equal(a, b)
    mean_phash, max_phash = round(sum(phash) / len(phash), 4), max(phash)
    median_psnr = None if math.isinf(median) else median
    worst_phash = round(windows[worst], 4)
    ranked_coarse = sorted(math.inf if p is None else p for p in coarse)
    median_coarse = (
        None if math.isinf(ranked_coarse[len(ranked_coarse) // 2]) else ranked_coarse[len(ranked_coarse) // 2]
    )
    finite_coarse = [p for p in coarse if p is not None]
    min_coarse = min(finite_coarse) if finite_coarse else None
    fields: dict[str, Any] = {
        "pixel_equal": pixel_equal,
        "same_size": same_size,
        "coverage": round(coverage, 4),
        "mean_phash": mean_phash,
        "max_phash": max_phash,
        "min_psnr_db": min_psnr,
        "median_psnr_db": median_psnr,
        "worst_segment_phash": worst_phash,
        "median_coarse_psnr_db": median_coarse,
        "min_coarse_psnr_db": min_coarse,
        "motion_correlation": motion,
    }
    frame = 1.0 / da.fps if da.fps else da.step_s
    same_length = abs(da.duration_s - db.duration_s) <= 2 * frame + 1e-6
    verdict, reason = _decide(fields, same_length, thresholds)
    if not hashes_comparable and verdict is not Verdict.DIFFERENT:
        reason = (
            f"not identical by fingerprint: their decoded-frames hashes are of two kinds "
            f"({kind_a}, {kind_b}); {reason}"
        )
    return VideoComparison(
        verdict=verdict,
        reason=reason,
        file_equal=a.file_sha256 == b.file_sha256,
        duration_a_s=da.duration_s,
        duration_b_s=db.duration_s,
        frame_count_a=da.frame_count,
        frame_count_b=db.frame_count,
        lag_s=round(lag, 6),
        aligned=len(pairs),
        frame_phash=tuple(phash),
        frame_psnr_db=tuple(psnr),
        worst_segment_start_s=da.sample_times[pairs[worst][0]],
        worst_segment_end_s=da.sample_times[pairs[worst + width - 1][0]],
        same_version=a.version == b.version,
        version_a=a.version,
        version_b=b.version,
        pixel_equal=pixel_equal,
        same_size=same_size,
        coverage=round(coverage, 4),
        mean_phash=mean_phash,
        max_phash=max_phash,
        min_psnr_db=min_psnr,
        median_psnr_db=median_psnr,
        worst_segment_phash=worst_phash,
        median_coarse_psnr_db=median_coarse,
        min_coarse_psnr_db=min_coarse,
        motion_correlation=motion,
    )


def _pairs(da: VideoDetail, db: VideoDetail, lag: float) -> list[tuple[int, int]]:
    """(i, j): sample i of a with the sample of b nearest to t_i + lag, within half a step."""
    times_b = np.asarray(db.sample_times)
    pairs = []
    for i, t in enumerate(da.sample_times):
        j = int(np.argmin(np.abs(times_b - (t + lag))))
        if abs(times_b[j] - (t + lag)) <= db.step_s / 2 + 1e-9:
            pairs.append((i, j))
    return pairs


def _coarse(tiles: np.ndarray) -> np.ndarray:
    """(n, 48, 48, 3) tiles box-averaged to (n, 12, 12, 3), float64."""
    n, h, w, c = tiles.shape
    out: np.ndarray = tiles.reshape(n, h // COARSE, COARSE, w // COARSE, COARSE, c).mean(axis=(2, 4))
    return out


def _motion_correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Cosine between the changes of two aligned coarse sequences over MOTION_SPAN of
    their length: motion adds up over the span, codec and pixel noise do not."""
    span = max(1, round(len(a) * MOTION_SPAN))
    da, db = a[span:] - a[:-span], b[span:] - b[:-span]
    if not da.size or min(float(np.sqrt(np.mean(d * d))) for d in (da, db)) < STILL_MOTION:
        return None
    return round(float((da * db).sum() / math.sqrt(float((da * da).sum()) * float((db * db).sum()))), 4)


def _psnr(a: np.ndarray, b: np.ndarray) -> float | None:
    mse = float(np.mean((a - b).astype(np.float64) ** 2))
    return None if mse == 0 else round(10 * math.log10(255.0**2 / mse), 3)


def _decide(f: dict[str, Any], same_length: bool, t: VideoThresholds) -> tuple[Verdict, str]:
    if f["pixel_equal"]:
        return Verdict.IDENTICAL, "decoded-frames hashes are equal"
    low = _inf(f["min_psnr_db"])
    median = _inf(f["median_psnr_db"])
    coarse_median, coarse_low = _inf(f["median_coarse_psnr_db"]), _inf(f["min_coarse_psnr_db"])
    mean, worst, motion = f["mean_phash"], f["worst_segment_phash"], f["motion_correlation"]
    if f["coverage"] < t.min_coverage:
        return Verdict.DIFFERENT, f"only {f['coverage']:.0%} of the sampled frames align in time"
    if motion is not None and motion < t.min_motion_correlation:
        return Verdict.DIFFERENT, (
            f"motion correlation {motion:g} < {t.min_motion_correlation:g}: the frames change "
            "another way (played backwards, or another motion)"
        )
    if (
        f["same_size"]
        and same_length
        and (median >= t.near_psnr_db or coarse_median >= t.near_coarse_psnr_db)
        and mean <= t.near_mean_phash
        and worst <= t.near_segment_phash
    ):
        return Verdict.NEAR_IDENTICAL, (
            f"median tile PSNR {_db(median)} >= {t.near_psnr_db:g} or coarse {_db(coarse_median)} >= "
            f"{t.near_coarse_psnr_db:g}, mean phash {mean:g} <= {t.near_mean_phash:g}, "
            f"worst segment {worst:g} <= {t.near_segment_phash:g}"
        )
    if mean <= t.similar_mean_phash and worst <= t.similar_segment_phash and low >= t.similar_min_psnr_db:
        return Verdict.SIMILAR, (
            f"mean phash {mean:g} <= {t.similar_mean_phash:g}, worst segment {worst:g} <= "
            f"{t.similar_segment_phash:g}, every tile >= {t.similar_min_psnr_db:g} dB"
        )
    if coarse_low >= t.similar_min_coarse_psnr_db:
        return Verdict.SIMILAR, (
            f"every coarse tile >= {t.similar_min_coarse_psnr_db:g} dB (mean phash {mean:g})"
        )
    return (
        Verdict.DIFFERENT,
        f"mean phash {mean:g}, worst segment {worst:g} or tile PSNR outside the similar band",
    )


def _inf(value: float | None) -> float:
    return math.inf if value is None else value


def _db(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:g} dB"
