"""The metadata carriers of one image file, decoded once for every reader.

PNG text chunks (tEXt/zTXt/iTXt), EXIF (the ``eXIf`` chunk of a PNG, APP1 of a JPEG,
the ``EXIF`` chunk of a WEBP: UserComment, ImageDescription, Make, Model, Software),
XMP, and the pixel size from the header. A carrier that is corrupt is recorded in
``problems`` (its reason) and the others are still read: a file is refused for what it
lacks, with every reason, never for a traceback. Stealth info in the alpha channel
needs the pixels and is read only when nothing else is found (``stealth.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from ledger.errors import InvalidInputError
from ledger.workflows import _media

_TAGS: Final = {0x9286: "UserComment", 0x010E: "ImageDescription", 0x010F: "Make", 0x0110: "Model",
                0x0131: "Software"}  # fmt: skip


@dataclass(frozen=True)
class Carriers:
    kind: str  # png, jpeg, webp
    text: Mapping[str, str] = field(default_factory=dict)
    exif: Mapping[str, str] = field(default_factory=dict)
    xmp: str | None = None
    pixels: tuple[int, int] | None = None
    has_alpha: bool = False
    problems: tuple[str, ...] = ()

    def describe(self) -> str:
        """What the file carries, for a reason that says why nothing was read."""
        parts = []
        if self.kind == "png":
            keys = ", ".join(sorted(self.text)[:8]) or "none"
            parts.append(f"PNG text chunks: {keys}")
        parts.append(f"EXIF tags: {', '.join(sorted(self.exif)) or 'none'}")
        parts.append("XMP: yes" if self.xmp else "XMP: none")
        return "; ".join(parts + list(self.problems))


def _decode_exif_value(tag: int, raw: bytes) -> str:
    if tag == 0x9286:
        return _media.decode_user_comment(raw).rstrip("\x00")
    return raw.decode("utf-8", errors="replace").rstrip("\x00")


def extract(data: bytes) -> Carriers:
    """Every carrier of a PNG/JPEG/WEBP; raises InvalidInputError only when the
    container itself cannot be read (not an image, truncated PNG…)."""
    kind = _media.sniff(data)
    if kind is None:
        raise InvalidInputError("not a PNG/JPEG/WEBP image")
    problems: list[str] = []
    text: dict[str, str] = {}
    has_alpha = False
    if kind == "png":
        chunks = _media.png_chunks(data)  # a broken container is refused whole
        has_alpha = len(chunks[0].data) >= 10 and chunks[0].data[9] in (4, 6)
        for chunk in chunks:
            try:
                decoded = _media.decode_text_chunk(chunk)
            except InvalidInputError as exc:
                problems.append(exc.message)
                continue
            if decoded is not None and decoded[0] not in text:
                text[decoded[0]] = decoded[1]
    exif: dict[str, str] = {}
    xmp: str | None = text.get(_media.XMP_KEYWORD)
    raw_exif: bytes | None = None
    raw_xmp: bytes | None = None
    if kind == "png":  # the chunks are already split: no second walk (and CRC pass)
        raw_exif = next((c.data for c in chunks if c.type == b"eXIf"), None)
    else:
        try:
            raw_exif, raw_xmp = _media.exif_and_xmp(data)
        except InvalidInputError as exc:
            problems.append(exc.message)
    if raw_xmp:
        xmp = raw_xmp.decode("utf-8", errors="replace")
    if raw_exif:
        try:
            tags = _media.exif_tags(raw_exif)
        except InvalidInputError as exc:
            problems.append(exc.message)
            tags = {}
        for tag, name in _TAGS.items():
            if tag in tags and (value := _decode_exif_value(tag, tags[tag])).strip():
                exif[name] = value
    try:
        pixels = _media.pixel_size(data)
    except InvalidInputError:
        pixels = None
    return Carriers(kind, text, exif, xmp, pixels, has_alpha, tuple(problems))
