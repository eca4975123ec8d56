"""Calibrate the video, audio and 3D verdict ladders on a generated set.

Video: pans, zooms and cuts over each ../shared/calibration image (64×64, 2 s, 12 fps),
each compared with its re-encodes (another CRF, VP9/WEBM, MOV remux), ±1 noise, one
frame late, heavy noise, backwards, another motion and another image. Audio: tones,
chords and noise (5 s) against FLAC/MP3/OGG/M4A re-encodes, gain −3 dB, heavy noise and
other content. 3D: primitive meshes against re-exports, float jitter, heavy noise and
other primitives. Everything goes through the production path (encoded bytes ->
fingerprint -> compare); the confusion matrix is printed, ``--write FILE`` appends it.

    .venv/bin/python scripts/calibrate_media.py [--images DIR] [--limit N] [--write docs/calibration.md]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger.backends.reference.audio import encode_audio
from ledger.backends.reference.video import encode_video
from ledger.fingerprint import compare, fingerprint

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "calibration"
SIDE, FRAMES, FPS, RATE = 64, 24, 12, 22050
Case = tuple[str, str, str, Callable[[], bytes], Callable[[], bytes]]  # modality, change, expected


def _picture(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize((2 * SIDE, 2 * SIDE), Image.Resampling.BOX)).copy()


def _pan(pic: np.ndarray, dx: int = 1) -> list[np.ndarray]:
    x0 = 8 if dx >= 0 else 8 + abs(dx) * FRAMES
    return [pic[8 : 8 + SIDE, x0 + i * dx : x0 + i * dx + SIDE] for i in range(FRAMES)]


def _zoom(pic: np.ndarray) -> list[np.ndarray]:
    out = []
    for i in range(FRAMES):
        m = i  # crop shrinks one pixel a side per frame
        crop = Image.fromarray(pic[m : 2 * SIDE - m, m : 2 * SIDE - m])
        out.append(np.asarray(crop.resize((SIDE, SIDE), Image.Resampling.BILINEAR)))
    return out


def _cut(pic: np.ndarray, other: np.ndarray) -> list[np.ndarray]:
    return _pan(pic)[: FRAMES // 2] + _pan(other)[FRAMES // 2 :]


def _noise(frames: list[np.ndarray], sigma: float) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [np.clip(np.rint(f + rng.normal(0, sigma, f.shape)), 0, 255).astype(np.uint8) for f in frames]


def _pm1(frames: list[np.ndarray]) -> list[np.ndarray]:
    rng = np.random.default_rng(2)
    return [
        np.clip(f.astype(np.int16) + rng.choice([-1, 1], f.shape), 0, 255).astype(np.uint8) for f in frames
    ]


Changes = dict[str, tuple[str, Callable[[], bytes]]]  # change -> (expected, encoded bytes)


def video_changes(frames: list[np.ndarray], fps: int = FPS) -> Changes:
    """The per-clip changes (re-encodes, ±1 noise, a frame late, heavy noise, backwards),
    each against ``encode_video(frames, fps=fps)``; also used by evaluate_heldout.py."""
    return {
        "remux-mov": (
            "identical/near-identical",
            lambda f=frames: encode_video(f, fps=fps, container="mov"),
        ),
        "crf-30": ("near-identical", lambda f=frames: encode_video(f, fps=fps, crf=30)),
        "crf-35": ("near-identical/similar", lambda f=frames: encode_video(f, fps=fps, crf=35)),
        "vp9-webm": ("near-identical", lambda f=frames: encode_video(f, fps=fps, container="webm")),
        "noise-pm1": ("near-identical", lambda f=frames: encode_video(_pm1(f), fps=fps)),
        "one-frame-late": ("near-identical", lambda f=frames: encode_video(f[:1] + f[:-1], fps=fps)),
        "heavy-noise-s20": ("similar", lambda f=frames: encode_video(_noise(f, 20), fps=fps)),
        "backwards": ("different", lambda f=frames: encode_video(f[::-1], fps=fps)),
    }


def video_cases(images: list[Path]) -> Iterator[Case]:
    pics = [_picture(p) for p in images]
    for k, pic in enumerate(pics):
        other = pics[(k + 1) % len(pics)]
        for motion, frames in (("pan", _pan(pic)), ("zoom", _zoom(pic)), ("cut", _cut(pic, other))):

            def base(frames: list[np.ndarray] = frames) -> bytes:
                return encode_video(frames, fps=FPS)

            changes = video_changes(frames)
            changes["other-image"] = ("different", lambda o=other: encode_video(_pan(o), fps=FPS))
            if motion == "pan":
                changes["other-motion"] = ("different", lambda p=pic: encode_video(_pan(p, -1), fps=FPS))
            for change, (expected, make) in changes.items():
                yield "video", change, expected, base, make


def _tone(freqs: tuple[float, ...], noise: float = 0.0, seconds: float = 5.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    x = sum(
        (np.sin(2 * np.pi * (0.5 + 0.3 * k) * t) + 1) / 2 * np.sin(2 * np.pi * f * t)
        for k, f in enumerate(freqs)
    )
    x = np.asarray(x, np.float64) / max(len(freqs), 1) * 0.6
    return np.clip(x + np.random.default_rng(seed).normal(0, noise, t.size), -1, 1)


def audio_changes(x: np.ndarray, rate: int = RATE) -> Changes:
    """The per-source changes (FLAC, MP3, OGG/Opus, M4A/AAC, gain −3 dB, heavy noise σ 0.2),
    each against ``encode_audio(x, rate)`` (WAV); also used by evaluate_heldout.py."""
    return {
        "flac": ("identical", lambda x=x: encode_audio(x, rate, container="flac")),
        "mp3": ("near-identical", lambda x=x: encode_audio(x, rate, container="mp3")),
        "ogg-opus": ("near-identical", lambda x=x: encode_audio(x, rate, container="ogg")),
        "m4a-aac": ("near-identical", lambda x=x: encode_audio(x, rate, container="m4a")),
        "gain-3db": ("near-identical", lambda x=x: encode_audio(x * 10 ** (-3 / 20), rate)),
        "heavy-noise": (
            "similar",
            lambda x=x: encode_audio(
                np.clip(x + np.random.default_rng(4).normal(0, 0.2, x.size), -1, 1), rate
            ),
        ),
    }


def audio_cases() -> Iterator[Case]:
    sources = {
        "tone-440": _tone((440.0,)),
        "chord-a": _tone((440.0, 554.0, 659.0)),
        "chord-c": _tone((262.0, 330.0, 392.0)),
        "low-chord": _tone((110.0, 165.0, 220.0)),
        "noise": np.random.default_rng(9).normal(0, 0.2, RATE * 5).clip(-1, 1),
    }
    names = list(sources)
    for name in names:
        x = sources[name]

        def base(x: np.ndarray = x) -> bytes:
            return encode_audio(x, RATE)

        changes = audio_changes(x)
        for other_name in names:  # every other source: the different pairs set the margin
            if other_name != name:
                changes[f"other-content:{other_name}"] = (
                    "different",
                    lambda o=sources[other_name]: encode_audio(o, RATE),
                )
        for change, (expected, make) in changes.items():
            yield "audio", change.split(":")[0], expected, base, make


def mesh_export(mesh: object, file_type: str) -> bytes:
    data = mesh.export(file_type=file_type)  # type: ignore[attr-defined]
    return data.encode() if isinstance(data, str) else data


def mesh_jitter(mesh: object, sigma: float) -> object:
    moved = mesh.copy()  # type: ignore[attr-defined]
    moved.vertices = moved.vertices + np.random.default_rng(0).normal(0, sigma, moved.vertices.shape)
    return moved


def mesh_changes(mesh: object) -> Changes:
    """The per-mesh changes (PLY/STL/OBJ re-exports, float jitter, heavy noise, scaled by the
    bounding-box diagonal), each against the GLB export; also used by evaluate_heldout.py."""
    bounds = mesh.bounds  # type: ignore[attr-defined]
    d = float(np.linalg.norm(bounds[1] - bounds[0]))
    return {
        "ply": ("identical", lambda m=mesh: mesh_export(m, "ply")),
        "stl": ("identical", lambda m=mesh: mesh_export(m, "stl")),
        "obj": ("identical/near-identical", lambda m=mesh: mesh_export(m, "obj")),
        "float-jitter-1e-7": (
            "identical/near-identical",
            lambda m=mesh: mesh_export(mesh_jitter(m, 1e-7 * d), "ply"),
        ),
        "jitter-1e-5": ("near-identical", lambda m=mesh: mesh_export(mesh_jitter(m, 1e-5 * d), "ply")),
        "heavy-noise-0.5pct": ("similar", lambda m=mesh: mesh_export(mesh_jitter(m, 5e-3 * d), "ply")),
    }


def mesh_cases() -> Iterator[Case]:
    import trimesh

    shapes = {
        "sphere": trimesh.creation.icosphere(subdivisions=3),
        "torus": trimesh.creation.torus(1.0, 0.3),
        "box": trimesh.creation.box(extents=(1.0, 1.5, 0.7)),
        "cylinder": trimesh.creation.cylinder(radius=0.8, height=1.6, sections=48),
        "cone": trimesh.creation.cone(radius=0.8, height=1.6, sections=48),
    }
    names = list(shapes)
    for name in names:
        mesh = shapes[name]

        def base(m: object = mesh) -> bytes:
            return mesh_export(m, "glb")

        changes = mesh_changes(mesh)
        for other_name in names:  # every other primitive: the different pairs set the margin
            if other_name != name:
                changes[f"other-primitive:{other_name}"] = (
                    "different",
                    lambda o=shapes[other_name]: mesh_export(o, "glb"),
                )
        for change, (expected, make) in changes.items():
            yield "3d", change.split(":")[0], expected, base, make


RANK = {"identical": 0, "near-identical": 1, "similar": 2, "different": 3}

#: The raw distances the ladders decide on, reported per change (min–max).
DISTANCES = {
    "video": (
        "mean_phash",
        "worst_segment_phash",
        "median_psnr_db",
        "min_psnr_db",
        "median_coarse_psnr_db",
        "min_coarse_psnr_db",
        "motion_correlation",
    ),
    "audio": ("bit_error_rate", "spectrogram_phash_distance", "band_cosine"),
    "3d": ("bbox_distance", "area_relative_diff", "volume_relative_diff", "shape_distance"),
}
Key = tuple[str, str, str]


#: One wrong verdict: the case's index in the run, the verdict, every raw distance.
Miss = tuple[int, str, dict[str, object]]


def error_kind(expected: str, got: str) -> str | None:
    """The error class of a verdict (None when ``got`` is allowed by ``expected``)."""
    allowed = expected.split("/")
    if got in allowed:
        return None
    if got == "identical":
        return "false-identical"
    if "near-identical" in allowed or "identical" in allowed:  # a lossless one too
        return "re-encode-not-near"
    if expected == "different":
        return "other-not-different"
    return "heavy-noise-not-similar"


def run(
    cases: Iterator[Case],
    distances: dict[Key, dict[str, list[float]]] | None = None,
    misses: list[Miss] | None = None,
) -> tuple[dict[Key, Counter[str]], Counter[str]]:
    """The confusion table per (modality, change, expected) and the errors by kind;
    ``distances`` (when given) collects each change's raw distances, ``misses`` each
    wrong verdict. A ``make`` that is an earlier case's ``base`` reuses its fingerprint."""
    table: dict[Key, Counter[str]] = defaultdict(Counter)
    errors: Counter[str] = Counter()
    cache: dict[Callable[[], bytes], object] = {}  # keyed by the function: it stays alive
    for index, (modality, change, expected, base, make) in enumerate(cases):
        if base not in cache:
            cache[base] = fingerprint(base(), modality)
        other = cache[make] if make in cache else fingerprint(make(), modality)
        result = compare(cache[base], other)  # type: ignore[arg-type]
        got = str(result.verdict)
        table[(modality, change, expected)][got] += 1
        raw = result.to_dict()
        if distances is not None:
            row = distances.setdefault((modality, change, expected), defaultdict(list))
            for name, value in raw.items():
                if name in DISTANCES[modality] and value is not None:
                    row[name].append(float(value))
        kind = error_kind(expected, got)
        if kind is not None:
            errors[kind] += 1
            if misses is not None:
                misses.append((index, got, raw))
    return table, errors


def render(
    table: dict[Key, Counter[str]],
    errors: Counter[str],
    n_images: int,
    distances: dict[Key, dict[str, list[float]]] | None = None,
) -> str:
    lines = [
        "## Video, audio and 3D (scripts/calibrate_media.py)",
        "",
        f"Generated set: {n_images} calibration images as pans, zooms and cuts (64×64, 2 s, "
        "12 fps, H.264); 5 tones/chords/noise (5 s, 22,050 Hz); 5 primitive meshes. "
        "Thresholds: `DEFAULT_VIDEO_THRESHOLDS`, `DEFAULT_AUDIO_THRESHOLDS`, "
        "`DEFAULT_MESH_THRESHOLDS`.",
        "",
    ]
    return "\n".join(lines + render_tables(table, errors, distances)) + "\n"


def render_tables(
    table: dict[Key, Counter[str]],
    errors: Counter[str],
    distances: dict[Key, dict[str, list[float]]] | None = None,
) -> list[str]:
    """The confusion table, the error counts and the raw distances per change, as lines."""
    lines = ["| modality | change | expected | pairs | verdicts |", "|---|---|---|---|---|"]
    for (modality, change, expected), got in table.items():
        verdicts = ", ".join(f"{v} {n}" for v, n in sorted(got.items(), key=lambda kv: RANK[kv[0]]))
        lines.append(f"| {modality} | {change} | {expected} | {sum(got.values())} | {verdicts} |")
    total = sum(sum(c.values()) for c in table.values())
    lines += [
        "",
        f"Pairs: {total}. Errors: " + (", ".join(f"{k} {v}" for k, v in errors.items()) or "none") + ".",
    ]
    for modality, names in DISTANCES.items():
        rows = [(key, d) for key, d in (distances or {}).items() if key[0] == modality]
        if not rows:
            continue
        lines += ["", f"Raw distances, {modality} (min–max over the pairs; PSNR in dB, None = equal):", ""]
        lines += ["| change | expected | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        for (_, change, expected), d in rows:
            cells = [f"{min(d[n]):.4g}–{max(d[n]):.4g}" if d.get(n) else "–" for n in names]
            lines.append(f"| {change} | {expected} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images (0: all)")
    parser.add_argument("--write", type=Path, default=None)
    args = parser.parse_args(argv)
    images = sorted(p for p in args.images.glob("*.png"))
    if args.limit:
        images = images[: args.limit]
    if len(images) < 2:
        print(f"need at least 2 PNG images in {args.images}", file=sys.stderr)
        return 2
    distances: dict[Key, dict[str, list[float]]] = {}
    table, errors = run(iter([*video_cases(images), *audio_cases(), *mesh_cases()]), distances)
    text = render(table, errors, len(images), distances)
    print(text)
    if args.write:
        with args.write.open("a", encoding="utf-8") as out:
            out.write("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
