"""Calibrate full-resolution audits (pixel PSNR/SSIM beside the perceptual hashes).

For every calibration image and every same-size change of ``scripts/calibrate.py``
(plus JPEG q90 and Gaussian noise σ 4/6), and for reference-backend replays, the
original and the changed copy are fingerprinted and compared as an audit compares
them without the archive (thumbnail and phash), then refined with the two files'
pixels as an audit with the archive does (``ledger.fingerprint.compare_originals``).
``--write docs/calibration.md`` replaces the "Full-resolution audits" section there.

    .venv/bin/python scripts/calibrate_pixels.py [--images DIR] [--write docs/calibration.md]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import calibrate as base

from ledger.fingerprint import (
    DEFAULT_PIXEL_THRESHOLDS,
    Comparison,
    Verdict,
    compare,
    compare_originals,
    fingerprint_bytes,
)

START, END = "<!-- full-resolution:start -->", "<!-- full-resolution:end -->"
#: What a full-resolution audit must call each change (a set: more than one is right).
WANT: dict[str, tuple[str, ...]] = {
    "identical": ("identical",),
    "near-identical": ("near-identical",),
    "similar": ("similar",),
    "different": ("different",),
    # Visible loss on fine texture (grass, gravel): either call is defensible.
    "near-identical/similar": ("near-identical", "similar"),
}
#: Changes whose class at full resolution differs from the thumbnail calibration's.
LOSSY_ON_TEXTURE = frozenset({"jpeg-q75", "blur-1px", "blur-0.5px"})


@dataclass(frozen=True)
class Row:
    image: str
    change: str
    want: str
    thumb: Comparison
    full: Comparison


def extra_changes() -> Iterator[base.Change]:
    yield "jpeg-q90", "near-identical", lambda a: base.encode(a, "JPEG", quality=90)
    for s in (4.0, 6.0):
        yield f"gauss-s{s:g}", "near-identical/similar", lambda a, s=s: base.encode(base.noise(a, s, 5))


def _want(change: str, expected: str) -> str:
    return "near-identical/similar" if change in LOSSY_ON_TEXTURE else expected


def image_rows(images: list[Path]) -> list[Row]:
    rows: list[Row] = []
    for path in images:
        arr = base.rgb_of(path)
        original = base.encode(arr)
        fp = fingerprint_bytes(original)
        for change, expected, make in [*base.changes(), *extra_changes()]:
            data = make(arr)
            thumb = compare(fp, fingerprint_bytes(data))
            rows.append(
                Row(
                    path.stem,
                    change,
                    _want(change, expected),
                    thumb,
                    compare_originals(thumb, original, data),
                )
            )
    return rows


def reference_rows(seeds: int = 6) -> list[Row]:
    from ledger.backends.reference.generator import ImageRequest, ReferenceGenerator

    generator, revised = ReferenceGenerator(), ReferenceGenerator(model_revision=1)
    rows: list[Row] = []
    for seed in range(1, seeds + 1):
        req = ImageRequest(
            model="runware:101@1", prompt="a lighthouse at dusk", seed=seed, scheduler="DPM++ 2M Karras"
        )
        stochastic = replace(req, scheduler="Euler a")
        first = generator.image(req).data
        jpeg = replace(req, output_format="JPG", output_quality=90)
        cases: list[tuple[str, str, bytes, bytes]] = [
            ("ref-deterministic-replay", "identical", first, generator.image(req).data),
            ("ref-jpeg-q90-replay", "identical", generator.image(jpeg).data, generator.image(jpeg).data),
            ("ref-png-vs-jpeg-q90", "near-identical", first, generator.image(jpeg).data),
            (
                "ref-stochastic-replay",
                "similar",
                generator.image(stochastic).data,
                generator.image(stochastic).data,
            ),
            ("ref-model-revision", "similar/different", first, revised.image(req).data),
        ]
        for change, want, a, b in cases:
            thumb = compare(fingerprint_bytes(a), fingerprint_bytes(b))
            rows.append(Row(f"seed{seed}", change, want, thumb, compare_originals(thumb, a, b)))
    return rows


def _ok(row: Row) -> bool:
    if row.full.verdict is Verdict.IDENTICAL and row.full.pixel_psnr_db is None and row.full.full_resolution:
        return True  # the change left the pixels as they were (a 0.5 px blur of a flat image)
    allowed = WANT.get(row.want, tuple(row.want.split("/")))
    return str(row.full.verdict) in allowed


def _range(values: list[float | None], fmt: Callable[[float], str]) -> str:
    xs = [math.inf if v is None else v for v in values]
    return f"{fmt(min(xs))}–{fmt(max(xs))}"


def _db(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.1f}"


def _verdicts(comparisons: list[Comparison]) -> str:
    counts = Counter(str(c.verdict) for c in comparisons)
    return ", ".join(f"{v} {n}" for v, n in sorted(counts.items(), key=lambda kv: Verdict(kv[0]).rank))


def report(rows: list[Row], images: list[Path]) -> str:
    t = DEFAULT_PIXEL_THRESHOLDS
    by_change: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_change[row.change].append(row)
    wrong = [r for r in rows if not _ok(r)]
    lines = [
        START,
        "## Full-resolution audits (scripts/calibrate_pixels.py)",
        "",
        f"Generated on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; rerun the script, do not edit.",
        f"{len(images)} calibration images × every same-size change above plus JPEG q90 and noise σ 4/6, "
        "and reference-backend pairs; "
        f"{len(rows)} pairs. When an audit has the record's original (the output archive), it compares the "
        "replay pixel by pixel (`ledger/fingerprint/pixels.py`: PSNR over RGB; SSIM of Wang et al. 2004 on "
        "BT.601 luma, 11×11 Gaussian window σ 1.5, no padding) and keeps `near-identical` only when "
        f"**PSNR ≥ {t.near_psnr_db:g} dB and SSIM ≥ {t.near_ssim:g}**; otherwise it is `similar` "
        "(`DEFAULT_PIXEL_THRESHOLDS`). `identical`, `similar` and `different` are never changed.",
        "",
        "| change | full-res class | n | PSNR dB min–max | SSIM min–max | thumbnail verdicts "
        "| full-resolution verdicts |",
        "|---|---|---|---|---|---|---|",
    ]
    for change, group in by_change.items():
        full = [r.full for r in group]
        lines.append(
            f"| {change} | {group[0].want} | {len(group)} "
            f"| {_range([c.pixel_psnr_db for c in full], _db)} "
            f"| {_range([c.pixel_ssim for c in full], lambda x: f'{x:.4f}')} "
            f"| {_verdicts([r.thumb for r in group])} | {_verdicts(full)} |"
        )
    noise = by_change.get("gauss-s8", [])
    q90 = by_change.get("jpeg-q90", [])
    lines += [
        "",
        f"- Noise σ 8 called `similar`: {sum(r.full.verdict is Verdict.SIMILAR for r in noise)}/{len(noise)} "
        f"(thumbnail alone: {sum(r.thumb.verdict is Verdict.SIMILAR for r in noise)}/{len(noise)}).",
        f"- JPEG q90 kept `near-identical`: {sum(r.full.verdict is Verdict.NEAR_IDENTICAL for r in q90)}/"
        f"{len(q90)}; lossless re-encodes `identical`: "
        + str(sum(r.full.verdict is Verdict.IDENTICAL for r in rows if r.want == "identical"))
        + f"/{sum(r.want == 'identical' for r in rows)}.",
        f"- Pairs outside their full-resolution class: {len(wrong)}"
        + (": " + ", ".join(f"{r.change} ({r.image}: {r.full.verdict})" for r in wrong) if wrong else "."),
        "- JPEG q75 and blur of 0.5–1 px lose visible detail on fine texture (grass 29.9 dB at q75): "
        "at full resolution they may be `similar`, and some are.",
        "- Known limit: a 1–3 px shift of a smooth image (cell, clock_motion, color, moon) measures "
        "like a re-encode at full resolution too (PSNR up to 46 dB), so those the thumbnail calls "
        "`near-identical` stay so. The held-out image sets were not run here.",
        END,
    ]
    return "\n".join(lines)


def write_section(doc: Path, section: str) -> None:
    text = doc.read_text(encoding="utf-8")
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    doc.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=base.DEFAULT_IMAGES)
    parser.add_argument("--write", type=Path, help="replace the section in this markdown file")
    args = parser.parse_args(argv)
    images = sorted(args.images.glob("*.png"))
    if not images:
        print(f"no PNG images in {args.images}", file=sys.stderr)
        return 2
    rows = image_rows(images) + reference_rows()
    text = report(rows, images)
    print(text)
    if args.write:
        write_section(args.write, text)
        print(f"wrote {args.write}", file=sys.stderr)
    noise = [r for r in rows if r.change == "gauss-s8"]
    strict = [r for r in rows if r.change in ("gauss-s8", "jpeg-q90") or r.want == "identical"]
    return 1 if any(not _ok(r) for r in strict) or not noise else 0


if __name__ == "__main__":
    raise SystemExit(main())
