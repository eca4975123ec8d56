"""Contact sheets: one labelled cell per sweep output, as PNG and as one HTML file."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ledger.core.files import atomic_write
from ledger.core.markup import Safe, csp, el
from ledger.errors import FingerprintError
from ledger.fingerprint._decode import decode

__all__ = ["ContactCell", "write_contact_sheet"]

CELL = 256
CSS = (
    "body{font:14px system-ui,sans-serif;margin:24px;color:#222}"
    "main{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:12px}"
    "figure{margin:0}figcaption{font-size:12px;padding-top:4px;word-break:break-word}"
    "img{display:block;background:#333}@media print{main{gap:6px}}"
)
LABEL_HEIGHT = 34


@dataclass(frozen=True)
class ContactCell:
    label: str  # e.g. "seed 42 · CFGScale 7.5"
    record_id: int
    data: bytes | None  # None: the cell failed


def _thumb(data: bytes | None) -> Image.Image:
    canvas = Image.new("RGB", (CELL, CELL), (40, 40, 40))
    if data is None:
        ImageDraw.Draw(canvas).text((CELL // 2 - 20, CELL // 2 - 6), "failed", fill=(230, 80, 80))
        return canvas
    try:
        image = decode(data).image
    except FingerprintError:  # an undecodable output is shown as such, never aborts the sheet
        ImageDraw.Draw(canvas).text((10, CELL // 2 - 6), "not an image", fill=(230, 80, 80))
        return canvas
    image.thumbnail((CELL, CELL))
    canvas.paste(image, ((CELL - image.width) // 2, (CELL - image.height) // 2))
    return canvas


def write_contact_sheet(
    cells: Sequence[ContactCell], out_dir: Path, *, title: str, stem: str = "contact-sheet"
) -> tuple[Path, Path]:
    """Write ``<stem>.png`` and ``<stem>.html`` into ``out_dir``; return both paths."""
    columns = max(1, min(8, math.ceil(math.sqrt(len(cells) or 1))))
    rows = max(1, math.ceil(len(cells) / columns))
    sheet = Image.new("RGB", (columns * CELL, rows * (CELL + LABEL_HEIGHT)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    figures: list[str] = []
    for i, cell in enumerate(cells):
        x, y = (i % columns) * CELL, (i // columns) * (CELL + LABEL_HEIGHT)
        thumb = _thumb(cell.data)
        sheet.paste(thumb, (x, y))
        # PIL draws text literally: no markup or terminal sequences are interpreted.
        label = f"#{cell.record_id} {cell.label}"
        draw.text((x + 4, y + CELL + 3), label[:44], fill=(0, 0, 0), font=font)
        draw.text((x + 4, y + CELL + 17), label[44:88], fill=(0, 0, 0), font=font)
        buffer = io.BytesIO()
        thumb.save(buffer, "PNG", optimize=True)
        uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
        figures.append(
            el(
                "figure",
                el("img", src=uri, alt=cell.label, width=CELL, height=CELL),
                el("figcaption", el("b", f"#{cell.record_id}"), " ", cell.label),
            )
        )
    png = io.BytesIO()
    sheet.save(png, "PNG", optimize=True)
    page = "<!doctype html>" + el(
        "html",
        el(
            "head",
            el("meta", charset="utf-8"),
            el("meta", http_equiv="Content-Security-Policy", content=csp(CSS)),
            el("title", title),
            el("style", Safe(CSS)),
        ),
        el("body", el("h1", title), el("main", figures)),
        lang="en",
    )
    png_path, html_path = out_dir / f"{stem}.png", out_dir / f"{stem}.html"
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(png_path, png.getvalue())
    atomic_write(html_path, page)
    return png_path, html_path
