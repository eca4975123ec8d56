"""`seedledger fingerprint`, `compare` and `find`, for images, video, audio and 3D files
(the modality is sniffed from the file, or given with ``--modality``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ledger.cli.app import AppContext, app, emit_json, emit_mapping, emit_rows, info, main
from ledger.errors import InvalidInputError

if TYPE_CHECKING:  # numpy, Pillow and scipy load only when a command runs
    from ledger.fingerprint import Fingerprint

_MAX_PIXELS = click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=8192 * 8192,
    show_default=True,
    help="Refuse images with more pixels than this (decompression-bomb guard).",
)
_MODALITY = click.option(
    "--modality",
    type=click.Choice(["image", "video", "audio", "3d"]),
    default=None,
    help="Read FILE as this modality instead of sniffing it from its bytes.",
)
FIND_COLUMNS = ("record_id", "verdict", "phash", "dhash", "thumb_psnr_db", "thumb_mad", "frame_s")


def _fingerprint_dict(fp: Fingerprint) -> dict[str, Any]:
    data = fp.to_dict()
    data["phash_chunks"] = list(fp.phash_chunks)
    return data


@main.command()
@click.argument("record_id", type=int)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--replace", is_flag=True, help="Overwrite a fingerprint of other pixels.")
@_MAX_PIXELS
@_MODALITY
def fingerprint(record_id: int, file: Path, replace: bool, max_pixels: int, modality: str | None) -> None:
    """Fingerprint FILE (the output: image, video, audio or 3D) and attach it to record RECORD_ID."""
    from ledger.fingerprint import fingerprint_file

    ctx = app()
    fp = fingerprint_file(file, modality, max_pixels=max_pixels)
    changed = ctx.ledger().attach_fingerprint(record_id, fp, replace=replace)
    data = {"record_id": record_id, "attached": changed, **_fingerprint_dict(fp)}
    emit_mapping(data, as_json=ctx.json)
    info(
        f"record {record_id}: " + ("fingerprint attached" if changed else "same fingerprint already attached")
    )


def _resolve(
    ctx: AppContext, ref: str, max_pixels: int, modality: str | None, like: Fingerprint | None = None
) -> Fingerprint:
    """A media file if the path exists (fingerprinted ``like`` the other side when that
    is a record), otherwise a record id."""
    from ledger.fingerprint import fingerprint_file

    path = Path(ref)
    if path.exists():
        return fingerprint_file(path, modality, max_pixels=max_pixels, like=like)
    if ref.isdigit():
        return ctx.ledger().fingerprint_of(int(ref))
    raise InvalidInputError(
        f"{ref!r} is neither an image file nor a record id (nor a video, audio or 3D file)"
    )


@main.command(name="compare")
@click.argument("a")
@click.argument("b")
@_MAX_PIXELS
@_MODALITY
def compare_(a: str, b: str, max_pixels: int, modality: str | None) -> None:
    """Compare two outputs of one modality, each a FILE or a record ID: the verdict and every distance."""
    from ledger.fingerprint import compare

    ctx = app()
    # A record's side first: a file then gets the content hash of that stored fingerprint.
    fb = None if Path(b).exists() else _resolve(ctx, b, max_pixels, modality)
    fa = _resolve(ctx, a, max_pixels, modality, like=fb)
    if fb is None:
        fb = _resolve(ctx, b, max_pixels, modality, like=None if Path(a).exists() else fa)
    result = compare(fa, fb)
    data = result.to_dict()
    if not ctx.json and "thumb_psnr_db" in data and data["thumb_psnr_db"] is None:
        data["thumb_psnr_db"] = "inf"  # equal thumbnails, as `find` and `audit show` print it
    emit_mapping(data, as_json=ctx.json)
    if not result.same_version:
        info("warning: the fingerprints were made by different hashing versions; distances may be off")


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--radius",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Hamming radius on the 64-bit phash, at most 16 (10 covers the `similar` band).",
)
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True, help="0: no limit.")
@_MAX_PIXELS
@_MODALITY
def find(file: Path, radius: int, limit: int, max_pixels: int, modality: str | None) -> None:
    """Find the records whose output matches FILE (any modality; a still image also finds
    the videos it is a frame of), best first, with their verdicts."""
    from ledger.workflows.lookup import find_file

    ctx = app()
    _, matches = find_file(
        ctx.ledger(), file, radius=radius, limit=limit or None, modality=modality, max_pixels=max_pixels
    )
    if ctx.json:
        for m in matches:
            frame = {} if m.frame_time_s is None else {"frame_time_s": m.frame_time_s}
            emit_json({"record_id": m.record_id, **frame, **m.comparison.to_dict()})
    else:
        rows = [_find_row(m) for m in matches]
        emit_rows(rows, FIND_COLUMNS, as_json=False)
    info(f"{len(matches)} match(es) within phash radius {radius}")


def _find_row(m: Any) -> dict[str, Any]:
    """One table row; the distance columns mean each modality's own (see `compare --json`)."""
    c = m.comparison
    psnr = getattr(c, "thumb_psnr_db", getattr(c, "min_psnr_db", None))
    return {
        "record_id": m.record_id,
        "verdict": str(m.verdict),
        "phash": c.phash_distance,
        "dhash": c.dhash_distance,
        "thumb_psnr_db": "inf" if psnr is None else psnr,
        "thumb_mad": getattr(c, "thumb_mean_abs_diff", "-"),
        "frame_s": "-" if m.frame_time_s is None else m.frame_time_s,
    }
