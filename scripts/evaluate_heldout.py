"""Evaluate the video, audio and 3D verdict ladders on held-out public media (no tuning).

Each file is decoded (audio: mono 22,050 Hz, first 30 s; video: first 20 s, long side
at most 320 px, even size; meshes: up to 100,000 vertices, merged into one mesh) and run
through calibrate_media.py's own changes: re-encodes (CRF 30/35, VP9/WEBM, MOV;
FLAC/MP3/OGG/M4A; PLY/STL/OBJ), gain −3 dB, ±1 noise, a frame late, float jitter, heavy
noise, backwards; and every file against every other of its modality (other content),
except files of one ``same`` group (shipped re-encodes of one content, expected identical
or near-identical) and of one ``related`` group (reported, not scored). The confusion
matrices, error counts and every miss with its distances are printed.

    .venv/bin/python scripts/evaluate_heldout.py [--cache DIR] [--packages P ...] [--files DIR]
"""

from __future__ import annotations

import argparse
import io
import sys
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import calibrate_media as cm
import heldout_sources as hs

from ledger.backends.reference.audio import encode_audio
from ledger.backends.reference.video import encode_video

MAX_AUDIO_S, MAX_VIDEO_S, MAX_SIDE, MAX_VERTICES = 30.0, 20.0, 320, 100_000
UNSCORED = "identical/near-identical/similar/different"
VERDICTS = ("identical", "near-identical", "similar", "different")
Label = tuple[str, str, str]  # modality, change, "file" or "file vs file"


def load_audio(path: Path, max_s: float = MAX_AUDIO_S) -> np.ndarray:
    """Mono float samples at calibrate_media.RATE, the first ``max_s`` seconds."""
    import av

    out: list[np.ndarray] = []
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=cm.RATE)
        for frame in container.decode(audio=0):
            for chunk in resampler.resample(frame):
                out.append(chunk.to_ndarray().reshape(-1))
        for chunk in resampler.resample(None):
            out.append(chunk.to_ndarray().reshape(-1))
    x = np.concatenate(out).astype(np.float64)[: int(max_s * cm.RATE)] if out else np.zeros(0)
    if x.size < cm.RATE // 10:
        raise ValueError(f"{x.size} samples (under 0.1 s)")
    return np.clip(x, -1.0, 1.0)


def _fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    w, h = size
    scale = min(1.0, max_side / max(w, h))
    return max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2)


def load_video(
    path: Path, max_s: float = MAX_VIDEO_S, max_side: int = MAX_SIDE
) -> tuple[list[np.ndarray], int]:
    """RGB frames (even size, long side ≤ ``max_side``) of the first ``max_s`` s, and the fps."""
    from PIL import Image, ImageSequence

    if path.suffix.lower() in (".gif", ".webp"):
        with Image.open(path) as im:
            size = _fit(im.size, max_side)
            frames, durations = [], []
            for frame in ImageSequence.Iterator(im):
                durations.append(frame.info.get("duration") or 100)
                frames.append(np.asarray(frame.convert("RGB").resize(size, Image.Resampling.BOX)))
        fps = int(np.clip(round(1000 / float(np.mean(durations))), 1, 50))
        frames = frames[: int(max_s * fps)]
    else:
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = int(np.clip(round(float(stream.average_rate or 24)), 1, 60))
            size = _fit((stream.width, stream.height), max_side)
            frames = []
            for frame in container.decode(stream):
                if frame.time is not None and frame.time >= max_s:
                    break
                frames.append(frame.to_ndarray(format="rgb24", width=size[0], height=size[1]))
    if len(frames) < 2:
        raise ValueError("a still image (one frame), not a video")
    return frames, fps


def load_mesh(path: Path, max_vertices: int = MAX_VERTICES) -> object:
    import trimesh

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mesh = trimesh.load(str(path), force="mesh")
    if len(mesh.faces) == 0:
        raise ValueError("no faces")
    if len(mesh.vertices) > max_vertices:
        raise ValueError(f"{len(mesh.vertices)} vertices (limit {max_vertices})")
    return mesh


def _prepare(src: hs.Source) -> tuple[Callable[[], bytes], cm.Changes, str]:
    """The source's base encoding, its calibration changes and a note on what was capped."""
    if src.modality == "audio":
        x = load_audio(src.file)
        return (lambda x=x: encode_audio(x, cm.RATE)), cm.audio_changes(x), f"{x.size / cm.RATE:.2f} s"
    if src.modality == "video":
        frames, fps = load_video(src.file)
        h, w = frames[0].shape[:2]
        note = f"{len(frames)} frames {w}×{h} @ {fps} fps"
        return (lambda f=frames, r=fps: encode_video(f, fps=r)), cm.video_changes(frames, fps), note
    mesh = load_mesh(src.file)
    note = f"{len(mesh.vertices)} vertices, {len(mesh.faces)} faces"  # type: ignore[attr-defined]
    return (lambda m=mesh: cm.mesh_export(m, "glb")), cm.mesh_changes(mesh), note


def build_cases(sources: list[hs.Source]) -> tuple[list[cm.Case], list[Label], dict[hs.Source, str]]:
    """Cases (calibrate_media's shape), a label per case, and a note per source (its size,
    or why it was skipped). A source whose base cannot be fingerprinted is skipped."""
    from ledger.errors import FingerprintError
    from ledger.fingerprint import fingerprint

    cases: list[cm.Case] = []
    labels: list[Label] = []
    notes: dict[hs.Source, str] = {}
    bases: dict[str, list[tuple[hs.Source, Callable[[], bytes]]]] = {}
    for src in sources:
        try:
            base, changes, note = _prepare(src)
            fingerprint(base(), src.modality)
        except (ValueError, OSError, FingerprintError, IndexError, KeyError) as exc:
            notes[src] = f"skipped: {exc}".replace("\n", " ")[:120]
            continue
        notes[src] = note
        bases.setdefault(src.modality, []).append((src, base))
        for change, (expected, make) in changes.items():
            cases.append((src.modality, change, expected, base, make))
            labels.append((src.modality, change, src.name))
    for modality, group in bases.items():  # every file against every other: bases are cached
        for a, base_a in group:
            for b, base_b in group:
                if a is b:
                    continue
                if a.same is not None and a.same == b.same:
                    change, expected = "shipped-other-encoding", "identical/near-identical"
                elif a.related is not None and a.related == b.related:
                    change, expected = "related-unscored", UNSCORED
                else:
                    change, expected = "other-content", "different"
                cases.append((modality, change, expected, base_a, base_b))
                labels.append((modality, change, f"{a.name} vs {b.name}"))
    return cases, labels, notes


def class_of(expected: str) -> str:
    allowed = expected.split("/")
    if expected == UNSCORED:
        return "unscored"
    if expected == "identical":
        return "lossless"
    if "near-identical" in allowed:
        return "re-encode"
    return "heavy noise" if expected == "similar" else "other content"


def render_matrix(table: dict[cm.Key, Counter[str]]) -> list[str]:
    """Per modality: expected class × verdict counts, and the errors per class."""
    lines = ["| modality | expected class \\ verdict | " + " | ".join(VERDICTS) + " | pairs | errors |"]
    lines.append("|---|---|" + "---|" * (len(VERDICTS) + 2))
    false_identical: Counter[str] = Counter()
    for modality in ("video", "audio", "3d"):
        rows: dict[str, Counter[str]] = {}
        wrong: Counter[str] = Counter()
        for (mod, _, expected), got in table.items():
            if mod != modality:
                continue
            cls = class_of(expected)
            rows.setdefault(cls, Counter()).update(got)
            wrong[cls] += sum(n for v, n in got.items() if v not in expected.split("/"))
            if "identical" not in expected.split("/"):
                false_identical[modality] += got["identical"]
        for cls in ("lossless", "re-encode", "heavy noise", "other content", "unscored"):
            if cls in rows:
                cells = " | ".join(str(rows[cls][v]) for v in VERDICTS)
                errs = "–" if cls == "unscored" else str(wrong[cls])
                lines.append(f"| {modality} | {cls} | {cells} | {sum(rows[cls].values())} | {errs} |")
    lines += [
        "",
        "False `identical`: " + ", ".join(f"{m} {false_identical[m]}" for m in ("video", "audio", "3d")),
    ]
    return lines


def render_misses(misses: list[cm.Miss], cases: list[cm.Case], labels: list[Label]) -> list[str]:
    lines = [f"Misses ({len(misses)}; a pair of other content is listed in both orders):", ""]
    for index, got, raw in misses:
        modality, change, who = labels[index]
        names = [*cm.DISTANCES[modality], *(("vertices_a", "vertices_b") if modality == "3d" else ())]
        dist = ", ".join(
            f"{n} {raw[n]:.4g}" if isinstance(raw.get(n), float) else f"{n} {raw.get(n)}" for n in names
        )
        why = raw.get("reason")
        lines.append(f"- {modality} {change} `{who}`: {got} (expected {cases[index][2]}); {dist}; {why}")
    return lines


def evaluate(sources: list[hs.Source]) -> tuple[str, dict[cm.Key, Counter[str]], Counter[str]]:
    """The rendered evaluation, the confusion table and the error counts by kind."""
    cases, labels, notes = build_cases(sources)
    distances: dict[cm.Key, dict[str, list[float]]] = {}
    misses: list[cm.Miss] = []
    table, errors = cm.run(iter(cases), distances, misses)
    out = io.StringIO()
    used = sum(not n.startswith("skipped") for n in notes.values())
    print(f"Sources: {len(notes)} files, {used} used.", file=out)
    print(
        "\n| package | version | path | modality | license (as the package states it) | used as |", file=out
    )
    print("|---|---|---|---|---|---|", file=out)
    for src, note in notes.items():
        extra = f"; same: {src.same}" if src.same else f"; related: {src.related}" if src.related else ""
        cells = (src.package, src.version, src.path, src.modality, src.license, note + extra)
        print("| " + " | ".join(cells) + " |", file=out)
    print("", file=out)
    print("\n".join(render_matrix(table)), file=out)
    print("", file=out)
    print("\n".join(cm.render_tables(table, errors, distances)), file=out)
    print("", file=out)
    print("\n".join(render_misses(misses, cases, labels)), file=out)
    return out.getvalue(), table, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "seedledger-heldout")
    parser.add_argument("--packages", nargs="*", default=list(hs.PACKAGES), help="Debian packages to fetch")
    parser.add_argument("--files", type=Path, default=None, help="a folder of media files instead")
    args = parser.parse_args(argv)
    if args.files is not None:
        if not args.files.is_dir():
            print(f"not a folder: {args.files}", file=sys.stderr)
            return 2
        sources = hs.folder_sources(args.files)
    else:
        unknown = [p for p in args.packages if p not in hs.PACKAGES]
        if unknown:
            print(
                f"no file selection for {', '.join(unknown)}; known: {', '.join(hs.PACKAGES)}",
                file=sys.stderr,
            )
            return 2
        sources = [s for p in args.packages for s in hs.package_sources(p, args.cache)]
    if not sources:
        print("no media files found", file=sys.stderr)
        return 2
    text, _, _ = evaluate(sources)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
