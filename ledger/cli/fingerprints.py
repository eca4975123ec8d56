"""`seedledger fingerprint`, `compare` and `find`."""

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
FIND_COLUMNS = ("record_id", "verdict", "phash", "dhash", "thumb_psnr_db", "thumb_mad")


def _fingerprint_dict(fp: Fingerprint) -> dict[str, Any]:
    data = fp.to_dict()
    data["phash_chunks"] = list(fp.phash_chunks)
    return data


@main.command()
@click.argument("record_id", type=int)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--replace", is_flag=True, help="Overwrite a fingerprint of other pixels.")
@_MAX_PIXELS
def fingerprint(record_id: int, file: Path, replace: bool, max_pixels: int) -> None:
    """Fingerprint FILE (the output image) and attach it to record RECORD_ID."""
    from ledger.fingerprint import fingerprint_file

    ctx = app()
    fp = fingerprint_file(file, max_pixels=max_pixels)
    changed = ctx.ledger().attach_fingerprint(record_id, fp, replace=replace)
    data = {"record_id": record_id, "attached": changed, **_fingerprint_dict(fp)}
    emit_mapping(data, as_json=ctx.json)
    info(
        f"record {record_id}: " + ("fingerprint attached" if changed else "same fingerprint already attached")
    )


def _resolve(ctx: AppContext, ref: str, max_pixels: int) -> Fingerprint:
    """An image file if the path exists, otherwise a record id."""
    from ledger.fingerprint import fingerprint_file

    path = Path(ref)
    if path.exists():
        return fingerprint_file(path, max_pixels=max_pixels)
    if ref.isdigit():
        return ctx.ledger().fingerprint_of(int(ref))
    raise InvalidInputError(f"{ref!r} is neither an image file nor a record id")


@main.command(name="compare")
@click.argument("a")
@click.argument("b")
@_MAX_PIXELS
def compare_(a: str, b: str, max_pixels: int) -> None:
    """Compare two outputs, each an image FILE or a record ID: the verdict and every distance."""
    from ledger.fingerprint import compare

    ctx = app()
    result = compare(_resolve(ctx, a, max_pixels), _resolve(ctx, b, max_pixels))
    data = result.to_dict()
    if not ctx.json and data.get("thumb_psnr_db") is None:
        data["thumb_psnr_db"] = "inf"  # equal thumbnails, as `find` and `audit show` print it
    emit_mapping(data, as_json=ctx.json)
    if not result.same_version:
        info("warning: the fingerprints were made by different hashing versions; distances may be off")


@main.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--radius",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Hamming radius on the 64-bit phash, at most 16 (10 covers the `similar` band).",
)
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True, help="0: no limit.")
@_MAX_PIXELS
def find(image: Path, radius: int, limit: int, max_pixels: int) -> None:
    """Find the records whose output matches IMAGE, best first, with their verdicts."""
    from ledger.fingerprint import fingerprint_file

    ctx = app()
    fp = fingerprint_file(image, max_pixels=max_pixels)
    matches = ctx.ledger().find_image(fp, radius, limit=limit or None)
    if ctx.json:
        for m in matches:
            emit_json({"record_id": m.record_id, **m.comparison.to_dict()})
    else:
        rows = [
            {
                "record_id": m.record_id,
                "verdict": str(m.verdict),
                "phash": m.comparison.phash_distance,
                "dhash": m.comparison.dhash_distance,
                "thumb_psnr_db": "inf" if m.comparison.thumb_psnr_db is None else m.comparison.thumb_psnr_db,
                "thumb_mad": m.comparison.thumb_mean_abs_diff,
            }
            for m in matches
        ]
        emit_rows(rows, FIND_COLUMNS, as_json=False)
    info(f"{len(matches)} match(es) within phash radius {radius}")
