"""Calibrate the verdict ladder on ../shared/calibration (and reference-backend replays).

Builds pairs (original, changed copy) for every calibration image and every change a
replay can really bring, fingerprints both sides through the production code path
(encoded bytes -> fingerprint_bytes), compares them with the shipped thresholds and
prints the confusion matrix. ``--write docs/calibration.md`` records the thresholds,
the per-change distance ranges behind them and the measured error rates.

    .venv/bin/python scripts/calibrate.py [--images DIR] [--write docs/calibration.md]
"""

from __future__ import annotations

import argparse
import io
import math
import platform
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import imagehash
import numpy as np
import PIL
import scipy
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger.fingerprint import (
    DEFAULT_THRESHOLDS,
    FINGERPRINT_VERSION,
    Comparison,
    Fingerprint,
    Verdict,
    compare,
    fingerprint_bytes,
)

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "calibration"
EXPECTED = ("identical", "near-identical", "similar", "different")
VERDICTS = [str(v) for v in Verdict]


@dataclass(frozen=True)
class Pair:
    image: str
    change: str
    expected: str  # one of EXPECTED
    comparison: Comparison
    pixels_equal: bool  # ground truth: the two decoded pixel arrays are equal


def encode(arr: np.ndarray, fmt: str = "PNG", **options: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr, "RGB").save(out, format=fmt, **options)
    return out.getvalue()


def rgb_of(path: Path) -> np.ndarray:
    """The calibration image normalised the way fingerprints normalise it."""
    from ledger.fingerprint._decode import decode

    return np.asarray(decode(path.read_bytes()).image).copy()


def noise(arr: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(arr + rng.normal(0, sigma, arr.shape)), 0, 255).astype(np.uint8)


def plus_minus_one(arr: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    step = rng.choice(np.array([-1, 1]), size=arr.shape)
    return np.clip(arr.astype(np.int16) + step, 0, 255).astype(np.uint8)


def blur(arr: np.ndarray, radius: float) -> np.ndarray:
    return np.asarray(Image.fromarray(arr, "RGB").filter(ImageFilter.GaussianBlur(radius)))


def move(arr: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The same scene moved by (dx, dy) pixels; the uncovered border repeats the edge."""
    h, w = arr.shape[:2]
    padded = np.pad(arr, ((max(dy, 0), max(-dy, 0)), (max(dx, 0), max(-dx, 0)), (0, 0)), mode="edge")
    y0, x0 = max(-dy, 0), max(-dx, 0)
    return np.ascontiguousarray(padded[y0 : y0 + h, x0 : x0 + w])


def crop(arr: np.ndarray, fraction: float, ox: int, oy: int) -> np.ndarray:
    h, w = arr.shape[:2]
    ch, cw = int(h * fraction), int(w * fraction)
    return np.ascontiguousarray(arr[oy : oy + ch, ox : ox + cw])


def roundtrip(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


Change = tuple[str, str, Callable[[np.ndarray], bytes]]


def changes() -> Iterator[Change]:
    """(name, expected class, function of the original pixels -> the copy's file bytes)."""
    yield "png-reencode", "identical", lambda a: encode(a, "PNG", optimize=True)
    yield "bmp-reencode", "identical", lambda a: encode(a, "BMP")
    yield "webp-lossless", "identical", lambda a: encode(a, "WEBP", lossless=True)
    for q in (75, 85, 95):
        yield f"jpeg-q{q}", "near-identical", lambda a, q=q: encode(a, "JPEG", quality=q)
    for q in (80, 90, 100):
        yield f"webp-q{q}", "near-identical", lambda a, q=q: encode(a, "WEBP", quality=q)
    yield "noise-pm1", "near-identical", lambda a: encode(plus_minus_one(a, 1))
    for s in (0.5, 1.0, 2.0):
        yield f"gauss-s{s:g}", "near-identical", lambda a, s=s: encode(noise(a, s, 2))
    for r in (0.5, 1.0):
        yield f"blur-{r:g}px", "near-identical", lambda a, r=r: encode(blur(a, r))
    yield "gauss-s8", "similar", lambda a: encode(noise(a, 8.0, 3))
    for d in (1, 2, 3, 4):
        yield f"shift-{d}px", "similar", lambda a, d=d: encode(move(a, d, d // 2))
    for pct in (5, 8, 12, 20):
        yield f"moved-{pct}pct", "different", lambda a, pct=pct: encode(move(a, a.shape[1] * pct // 100, 0))
        yield (
            f"moved-{pct}pct-diag",
            "different",
            lambda a, pct=pct: encode(move(a, -(a.shape[1] * pct // 100), a.shape[0] * pct // 100)),
        )


def build_pairs(images: list[Path]) -> list[Pair]:
    pairs: list[Pair] = []
    originals: dict[str, np.ndarray] = {p.stem: rgb_of(p) for p in images}
    fps: dict[str, Fingerprint] = {name: fingerprint_bytes(encode(a)) for name, a in originals.items()}
    for name, arr in originals.items():
        for change, expected, make in changes():
            data = make(arr)
            equal = bool(np.array_equal(roundtrip(data), arr))
            pairs.append(Pair(name, change, expected, compare(fps[name], fingerprint_bytes(data)), equal))
        # Overlapping crops of one photo at different offsets (80% windows).
        h, w = arr.shape[:2]
        base = fingerprint_bytes(encode(crop(arr, 0.8, 0, 0)))
        for pct in (5, 10, 15, 20):
            dx, dy = w * pct // 100, h * pct // 100
            for label, ox, oy in (("x", dx, 0), ("y", 0, dy), ("xy", dx, dy)):
                shifted = fingerprint_bytes(encode(crop(arr, 0.8, ox, oy)))
                pairs.append(
                    Pair(name, f"crop80-offset-{pct}pct-{label}", "different", compare(base, shifted), False)
                )
    # Other images: every pair of originals, and each original against the others'
    # lossy copies (what a wrong-record match would look like).
    names = sorted(originals)
    jpeg = {n: fingerprint_bytes(encode(originals[n], "JPEG", quality=85)) for n in names}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            pairs.append(Pair(f"{a}|{b}", "other-image", "different", compare(fps[a], fps[b]), False))
            pairs.append(Pair(f"{a}|{b}", "other-image-jpeg", "different", compare(fps[a], jpeg[b]), False))
    return pairs


def reference_pairs(seeds: int = 12) -> tuple[list[Pair], str]:
    """Replays from the bundled reference backend (procedural, not a model)."""
    try:
        from ledger.backends.reference.generator import ImageRequest, ReferenceGenerator
    except ImportError:
        return [], "not included: the reference backend is not in this tree"
    generator = ReferenceGenerator()
    revised = ReferenceGenerator(model_revision=1)
    pairs: list[Pair] = []
    for seed in range(1, seeds + 1):
        req = ImageRequest(
            model="runware:101@1", prompt="a lighthouse at dusk", seed=seed, scheduler="DPM++ 2M Karras"
        )
        stochastic = replace(req, scheduler="Euler a")
        first = generator.image(req).data
        cases = [
            ("ref-deterministic-replay", "identical", generator.image(req).data),
            (
                "ref-jpeg-q85-output",
                "near-identical",
                generator.image(replace(req, output_format="JPG", output_quality=85)).data,
            ),
            ("ref-stochastic-vs-deterministic", "similar", generator.image(stochastic).data),
            ("ref-model-revision", "similar", revised.image(req).data),
            ("ref-other-seed", "different", generator.image(replace(req, seed=seed + 1000)).data),
        ]
        base = fingerprint_bytes(first)
        for change, expected, data in cases:
            equal = bool(np.array_equal(roundtrip(data), roundtrip(first)))
            pairs.append(Pair(f"seed{seed}", change, expected, compare(base, fingerprint_bytes(data)), equal))
        one, two = generator.image(stochastic).data, generator.image(stochastic).data
        equal = bool(np.array_equal(roundtrip(one), roundtrip(two)))
        pairs.append(
            Pair(
                f"seed{seed}",
                "ref-stochastic-replay",
                "similar",
                compare(fingerprint_bytes(one), fingerprint_bytes(two)),
                equal,
            )
        )
    note = (
        f"included: {seeds} seeds of ledger.backends.reference.generator (512x512, runware:101@1): "
        "deterministic replays (DPM++ 2M Karras), JPEG outputs, stochastic replays (Euler a), "
        'a silent model revision ("similar at best"), other seeds'
    )
    return pairs, note


@dataclass(frozen=True)
class Summary:
    matrix: dict[str, Counter[str]]
    positives: list[Pair]
    negatives: list[Pair]
    pixel_equal: list[Pair]
    false_identical: list[Pair]  # called identical, pixels differ
    missed_identical: list[Pair]  # pixels equal, not called identical
    missed_positive: list[Pair]  # a positive called similar or different
    false_negative: list[Pair]  # a negative not called different

    @property
    def failed(self) -> bool:
        return bool(
            self.false_identical or self.missed_identical or self.missed_positive or self.false_negative
        )


def summarise(pairs: list[Pair]) -> Summary:
    matrix: dict[str, Counter[str]] = {e: Counter() for e in EXPECTED}
    for p in pairs:
        matrix[p.expected][str(p.comparison.verdict)] += 1
    positives = [p for p in pairs if p.expected in ("identical", "near-identical")]
    negatives = [p for p in pairs if p.expected == "different"]
    identical = Verdict.IDENTICAL
    return Summary(
        matrix=matrix,
        positives=positives,
        negatives=negatives,
        pixel_equal=[p for p in pairs if p.pixels_equal],
        false_identical=[p for p in pairs if p.comparison.verdict is identical and not p.pixels_equal],
        missed_identical=[p for p in pairs if p.pixels_equal and p.comparison.verdict is not identical],
        missed_positive=[p for p in positives if p.comparison.verdict.rank > Verdict.NEAR_IDENTICAL.rank],
        false_negative=[p for p in negatives if p.comparison.verdict is not Verdict.DIFFERENT],
    )


def matrix_lines(matrix: dict[str, Counter[str]]) -> list[str]:
    head = "| expected \\ verdict | " + " | ".join(VERDICTS) + " | total |"
    lines = [head, "|" + "---|" * (len(VERDICTS) + 2)]
    for e in EXPECTED:
        row = matrix[e]
        lines.append(f"| {e} | " + " | ".join(str(row[v]) for v in VERDICTS) + f" | {sum(row.values())} |")
    return lines


def ranges_lines(pairs: list[Pair]) -> list[str]:
    by_change: dict[str, list[Pair]] = defaultdict(list)
    for p in pairs:
        by_change[p.change].append(p)
    lines = [
        "| change | expected | n | phash min–max | dhash min–max | thumb PSNR dB min–max "
        "| thumb MAD max | verdicts |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for change, group in by_change.items():
        c = [p.comparison for p in group]
        ph = [x.phash_distance for x in c]
        dh = [x.dhash_distance for x in c]
        ps = [math.inf if x.thumb_psnr_db is None else x.thumb_psnr_db for x in c]
        mad = max(x.thumb_mean_abs_diff for x in c)
        verdicts = Counter(str(x.verdict) for x in c)
        shown = ", ".join(f"{v} {n}" for v, n in sorted(verdicts.items(), key=lambda kv: Verdict(kv[0]).rank))
        lines.append(
            f"| {change} | {group[0].expected} | {len(group)} | {min(ph)}–{max(ph)} | {min(dh)}–{max(dh)} "
            f"| {_db(min(ps))}–{_db(max(ps))} | {mad:.2f} | {shown} |"
        )
    return lines


def _db(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.1f}"


def rate(bad: list[Pair], of: list[Pair]) -> str:
    return f"{len(bad)}/{len(of)} ({100 * len(bad) / max(len(of), 1):.2f}%)"


def report(pairs: list[Pair], images: list[Path], reference_note: str) -> str:
    s = summarise(pairs)
    t = DEFAULT_THRESHOLDS
    similar = [p for p in pairs if p.expected == "similar"]
    similar_hit = [p for p in similar if p.comparison.verdict is Verdict.SIMILAR]
    lines = [
        "# Verdict calibration",
        "",
        f"Generated by `scripts/calibrate.py` on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}. "
        "Do not edit by hand; rerun the script.",
        "",
        f"- Fingerprint version: `{FINGERPRINT_VERSION}`",
        f"- Pillow {PIL.__version__}, ImageHash {imagehash.__version__}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, Python {platform.python_version()}, {platform.machine()}",
        f"- Images: {len(images)} from `../shared/calibration/` ({', '.join(p.stem for p in images)})",
        f"- Pairs: {len(pairs)}",
        f"- Reference-backend replays: {reference_note}",
        "",
        "## Thresholds (ledger/fingerprint/_compare.py `DEFAULT_THRESHOLDS`)",
        "",
        "| verdict | rule |",
        "|---|---|",
        "| identical | SHA-256 of the normalised RGB pixels and size equal (never a perceptual hash) |",
        f"| near-identical | same size, phash ≤ {t.near_phash} and thumbnail PSNR ≥ {t.near_psnr_db:g} dB |",
        f"| similar | phash ≤ {t.close_phash} and thumbnail PSNR ≥ {t.close_psnr_db:g} dB, "
        f"or phash ≤ {t.similar_phash} and thumbnail PSNR ≥ {t.similar_psnr_db:g} dB |",
        "| different | otherwise |",
        "",
        "## Confusion matrix",
        "",
        *matrix_lines(s.matrix),
        "",
        "## Error rates",
        "",
        f"- False `identical` (pixels differ): {rate(s.false_identical, pairs)}",
        f"- Pixel-equal pairs not called `identical`: {rate(s.missed_identical, s.pixel_equal)}",
        f"- Positives not `identical`/`near-identical`: {rate(s.missed_positive, s.positives)}",
        f"- Negatives not `different`: {rate(s.false_negative, s.negatives)}",
        f"- Drift changes called `similar` (informational): {rate(similar_hit, similar)}",
        "",
        "Expected classes come from the change applied; a positive whose pixels came out",
        "unchanged (e.g. a 0.5 px blur of a flat logo) is rightly `identical`.",
        "",
        "## Distances per change",
        "",
        *ranges_lines(pairs),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--write", type=Path, help="write the markdown report here")
    args = parser.parse_args(argv)
    images = sorted(args.images.glob("*.png"))
    if not images:
        print(f"no PNG images in {args.images}", file=sys.stderr)
        return 2
    pairs = build_pairs(images)
    extra, reference_note = reference_pairs()
    pairs.extend(extra)
    text = report(pairs, images, reference_note)
    print(text)
    if args.write:
        # Sections other scripts own (calibrate_pixels.py's, between its markers) stay.
        previous = args.write.read_text(encoding="utf-8") if args.write.exists() else ""
        start, end = "<!-- full-resolution:start -->", "<!-- full-resolution:end -->"
        if start in previous and end in previous:
            kept = previous[previous.index(start) : previous.index(end) + len(end)]
            text = text.rstrip("\n") + "\n\n" + kept + "\n"
        args.write.write_text(text, encoding="utf-8")
        print(f"wrote {args.write}", file=sys.stderr)
    return 1 if summarise(pairs).failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
