"""Byte-level metadata of image files: PNG text chunks, JPEG APP1/XMP, EXIF comments.

PNG chunks are read and written here directly (not through a Pillow re-encode) so a
stamp adds its chunks and leaves every other byte of the file as it was, and reading
metadata never decodes pixels.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Final

from ledger.errors import InvalidInputError

PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
JPEG_SOI: Final = b"\xff\xd8"
XMP_KEYWORD: Final = "XML:com.adobe.xmp"
JPEG_XMP_HEADER: Final = b"http://ns.adobe.com/xap/1.0/\x00"
# Text chunks above this are refused, not inflated (decompression bombs).
MAX_TEXT_BYTES: Final = 32 * 1024 * 1024


def sniff(data: bytes) -> str | None:
    """``png``, ``jpeg``, ``webp`` or None, from the magic bytes."""
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data.startswith(JPEG_SOI):
        return "jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


# -- PNG ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    type: bytes
    data: bytes
    start: int  # offset of the length field
    end: int  # offset after the CRC


def png_chunks(data: bytes) -> list[Chunk]:
    """Split a PNG into chunks; raise InvalidInputError on a truncated or bad file."""
    if not data.startswith(PNG_SIGNATURE):
        raise InvalidInputError("not a PNG file (bad signature)")
    chunks: list[Chunk] = []
    pos = len(PNG_SIGNATURE)
    while pos < len(data):
        if pos + 8 > len(data):
            raise InvalidInputError("truncated PNG: chunk header cut off")
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if end > len(data):
            raise InvalidInputError(f"truncated PNG: {ctype.decode('latin-1')!r} chunk cut off")
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : end])
        if zlib.crc32(ctype + body) & 0xFFFFFFFF != crc:
            raise InvalidInputError(f"corrupt PNG: bad CRC in {ctype.decode('latin-1')!r} chunk")
        chunks.append(Chunk(ctype, body, pos, end))
        pos = end
        if ctype == b"IEND":
            break
    if not chunks or chunks[0].type != b"IHDR" or chunks[-1].type != b"IEND":
        raise InvalidInputError("truncated PNG: no IHDR/IEND")
    return chunks


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, MAX_TEXT_BYTES + 1)
    if len(out) > MAX_TEXT_BYTES or inflater.unconsumed_tail:
        raise InvalidInputError("PNG text chunk inflates beyond 32 MiB; refused")
    return out


def decode_text_chunk(chunk: Chunk) -> tuple[str, str] | None:
    """(keyword, text) of a tEXt/zTXt/iTXt chunk, or None for other chunks."""
    try:
        if chunk.type == b"tEXt":
            key, _, value = chunk.data.partition(b"\x00")
            return key.decode("latin-1"), value.decode("latin-1")
        if chunk.type == b"zTXt":
            key, _, rest = chunk.data.partition(b"\x00")
            return key.decode("latin-1"), _inflate(rest[1:]).decode("latin-1")
        if chunk.type == b"iTXt":
            key, _, rest = chunk.data.partition(b"\x00")
            if len(rest) < 2:
                raise InvalidInputError("corrupt PNG: short iTXt chunk")
            compressed, _method, rest = rest[0], rest[1], rest[2:]
            _language, _, rest = rest.partition(b"\x00")
            _translated, _, text = rest.partition(b"\x00")
            raw = _inflate(text) if compressed else text
            return key.decode("latin-1"), raw.decode("utf-8")
    except (UnicodeDecodeError, zlib.error) as exc:
        raise InvalidInputError(f"corrupt PNG {chunk.type.decode()} chunk: {exc}") from None
    return None


def png_text(data: bytes) -> dict[str, str]:
    """Every text chunk of a PNG by keyword (the first one wins, as in Pillow)."""
    out: dict[str, str] = {}
    for chunk in png_chunks(data):
        decoded = decode_text_chunk(chunk)
        if decoded is not None and decoded[0] not in out:
            out[decoded[0]] = decoded[1]
    return out


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return (
        struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)
    )


def itxt_chunk(keyword: str, text: str) -> bytes:
    """An uncompressed iTXt chunk (UTF-8 text, no language tag)."""
    key = keyword.encode("latin-1")
    if not 1 <= len(key) <= 79:
        raise InvalidInputError("PNG keyword must be 1-79 bytes")
    return _chunk(b"iTXt", key + b"\x00\x00\x00" + b"\x00" + b"\x00" + text.encode("utf-8"))


def png_replace_text(data: bytes, entries: dict[str, str]) -> bytes:
    """The PNG with iTXt ``entries`` set: existing text chunks with those keywords are
    dropped, the new ones go before the first IDAT (where readers that stop at the
    image data still find them, as ExifTool places them), every other byte is kept."""
    chunks = png_chunks(data)
    out = [data[: len(PNG_SIGNATURE)]]
    placed = False
    for chunk in chunks:
        decoded = decode_text_chunk(chunk)
        if decoded is not None and decoded[0] in entries:
            continue
        if not placed and chunk.type in (b"IDAT", b"IEND"):
            out.extend(itxt_chunk(k, v) for k, v in entries.items())
            placed = True
        out.append(data[chunk.start : chunk.end])
    return b"".join(out)


# -- JPEG ---------------------------------------------------------------------------


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) for each marker segment before the scan data."""
    if not data.startswith(JPEG_SOI):
        raise InvalidInputError("not a JPEG file (no SOI marker)")
    segments: list[tuple[int, int, int]] = []
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise InvalidInputError("corrupt JPEG: expected a marker")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA or marker == 0xD9:  # start of scan / end of image
            segments.append((marker, pos, pos))
            return segments
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        end = pos + 2 + length
        if length < 2 or end > len(data):
            raise InvalidInputError("truncated JPEG: a marker segment is cut off")
        segments.append((marker, pos, end))
        pos = end
    raise InvalidInputError("truncated JPEG: no image data")


def jpeg_xmp(data: bytes) -> str | None:
    for marker, start, end in jpeg_segments(data):
        body = data[start + 4 : end]
        if marker == 0xE1 and body.startswith(JPEG_XMP_HEADER):
            return body[len(JPEG_XMP_HEADER) :].decode("utf-8", errors="replace")
    return None


def jpeg_replace_xmp(data: bytes, xmp: str) -> bytes:
    """The JPEG with its XMP APP1 segment replaced (or added after SOI/APP0/Exif)."""
    payload = JPEG_XMP_HEADER + xmp.encode("utf-8")
    if len(payload) + 2 > 0xFFFF:
        raise InvalidInputError("XMP packet too large for one JPEG APP1 segment")
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    out = [data[:2]]
    cursor = 2
    for marker, start, end in jpeg_segments(data):
        if marker == 0xE1 and data[start + 4 : end].startswith(JPEG_XMP_HEADER):
            out.append(data[cursor:start])
            cursor = end
    rebuilt = b"".join(out) + data[cursor:]
    # After the leading APP0 (JFIF) / APP1 (Exif) segments, before anything else.
    position = _leading_app_end(rebuilt)
    return rebuilt[:position] + segment + rebuilt[position:]


def _leading_app_end(data: bytes) -> int:
    position = 2
    for marker, start, end in jpeg_segments(data):
        if start != position or marker not in (0xE0, 0xE1):
            break
        position = end
    return position


# -- EXIF UserComment (JPEG / WEBP) ---------------------------------------------------

_EXIF_IFD: Final = 0x8769
_USER_COMMENT: Final = 0x9286


def decode_user_comment(raw: bytes | str) -> str:
    """EXIF UserComment: an 8-byte charset prefix, then the text."""
    if isinstance(raw, str):
        return raw
    prefix, body = raw[:8], raw[8:]
    if prefix == b"UNICODE\x00":
        if body[:2] in (b"\xfe\xff", b"\xff\xfe"):
            return body.decode("utf-16")
        # piexif (A1111) writes big-endian; guess the order from where the zeros sit.
        even = body[0::2].count(0)
        odd = body[1::2].count(0)
        return body.decode("utf-16-le" if odd > even else "utf-16-be", errors="replace")
    if prefix == b"ASCII\x00\x00\x00":
        return body.decode("utf-8", errors="replace")
    if prefix == b"JIS\x00\x00\x00\x00\x00":
        return body.decode("shift_jis", errors="replace")
    return (body if prefix == b"\x00" * 8 else raw).decode("utf-8", errors="replace")


def encode_user_comment(text: str, *, unicode: bool = True) -> bytes:
    if unicode:
        return b"UNICODE\x00" + text.encode("utf-16-be")
    return b"ASCII\x00\x00\x00" + text.encode("ascii")


@dataclass(frozen=True)
class ImageMeta:
    user_comment: str | None
    xmp: str | None


# Byte sizes of TIFF field types (TIFF 6.0 + IFD type 13).
_TIFF_TYPE_SIZES: Final = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_MAX_IFD_ENTRIES: Final = 4096
_EXIF_PREFIX: Final = b"Exif\x00\x00"


def _ifd(tiff: bytes, offset: int, order: str) -> dict[int, tuple[int, int, bytes]]:
    """One IFD: tag -> (type, count, value bytes), every offset bounds-checked."""
    if not 8 <= offset <= len(tiff) - 2:
        raise InvalidInputError("corrupt EXIF: IFD offset out of range")
    (count,) = struct.unpack(order + "H", tiff[offset : offset + 2])
    if count > _MAX_IFD_ENTRIES or offset + 2 + 12 * count > len(tiff):
        raise InvalidInputError("corrupt EXIF: IFD runs past the end of the data")
    entries: dict[int, tuple[int, int, bytes]] = {}
    for index in range(count):
        at = offset + 2 + 12 * index
        tag, kind, n = struct.unpack(order + "HHI", tiff[at : at + 8])
        size = _TIFF_TYPE_SIZES.get(kind, 1) * n
        if size <= 4:
            value = tiff[at + 8 : at + 8 + size]
        else:
            (pointer,) = struct.unpack(order + "I", tiff[at + 8 : at + 12])
            if pointer + size > len(tiff):
                raise InvalidInputError(f"corrupt EXIF: tag 0x{tag:04x} points past the end of the data")
            value = tiff[pointer : pointer + size]
        entries.setdefault(tag, (kind, n, value))
    return entries


def exif_user_comment(exif: bytes) -> bytes | None:
    """The raw UserComment (0x9286) of EXIF data (a TIFF structure, optionally after the
    ``Exif\\0\\0`` prefix), from the Exif IFD or, as some writers put it, IFD0."""
    return exif_tags(exif).get(_USER_COMMENT)


def exif_tags(exif: bytes) -> dict[int, bytes]:
    """Raw values of IFD0 and Exif IFD tags (Exif IFD first where both hold a tag)."""
    tiff = exif[len(_EXIF_PREFIX) :] if exif.startswith(_EXIF_PREFIX) else exif
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        raise InvalidInputError("corrupt EXIF: no TIFF header")
    order = "<" if tiff[:2] == b"II" else ">"
    magic, first = struct.unpack(order + "HI", tiff[2:8])
    if magic != 42:
        raise InvalidInputError("corrupt EXIF: bad TIFF magic number")
    ifd0 = _ifd(tiff, first, order)
    pointer = ifd0.get(_EXIF_IFD)
    if pointer is not None:
        kind, n, value = pointer
        if kind not in (4, 13) or n != 1 or len(value) != 4:
            raise InvalidInputError("corrupt EXIF: bad Exif IFD pointer")
        sub = _ifd(tiff, struct.unpack(order + "I", value)[0], order)
        return {tag: v[2] for tag, v in (ifd0 | sub).items()}
    return {tag: v[2] for tag, v in ifd0.items()}


def _riff_chunks(data: bytes) -> dict[bytes, bytes]:
    """Top-level chunks of a WEBP (RIFF) file by FourCC (first one wins)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise InvalidInputError("not a WEBP file")
    end = min(len(data), 8 + struct.unpack("<I", data[4:8])[0])
    chunks: dict[bytes, bytes] = {}
    pos = 12
    while pos + 8 <= end:
        fourcc, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if pos + 8 + size > end:
            raise InvalidInputError(f"truncated WEBP: {fourcc.decode('latin-1')!r} chunk cut off")
        chunks.setdefault(fourcc, data[pos + 8 : pos + 8 + size])
        pos += 8 + size + (size & 1)
    return chunks


def exif_and_xmp(data: bytes) -> tuple[bytes | None, bytes | None]:
    """The raw EXIF (TIFF, maybe ``Exif\\0\\0``-prefixed) and XMP packet of a JPEG,
    WEBP or PNG (``eXIf`` chunk; XMP from the ``XML:com.adobe.xmp`` iTXt), read from the
    container's own structure (no pixel decode, no Pillow: its EXIF reader only warns
    on corrupt data, and catching warnings is not thread-safe)."""
    kind = sniff(data)
    exif: bytes | None = None
    xmp_raw: bytes | None = None
    if kind == "jpeg":
        for marker, start, end in jpeg_segments(data):
            body = data[start + 4 : end]
            if marker == 0xE1 and body.startswith(_EXIF_PREFIX) and exif is None:
                exif = body
            elif marker == 0xE1 and body.startswith(JPEG_XMP_HEADER) and xmp_raw is None:
                xmp_raw = body[len(JPEG_XMP_HEADER) :]
    elif kind == "webp":
        chunks = _riff_chunks(data)
        exif, xmp_raw = chunks.get(b"EXIF"), chunks.get(b"XMP ")
    elif kind == "png":
        exif = next((c.data for c in png_chunks(data) if c.type == b"eXIf"), None)
    else:
        raise InvalidInputError("not a PNG, JPEG or WEBP file")
    return exif, xmp_raw


def image_meta(data: bytes) -> ImageMeta:
    """EXIF UserComment and XMP of a JPEG or WEBP (see :func:`exif_and_xmp`)."""
    if sniff(data) not in ("jpeg", "webp"):
        raise InvalidInputError("not a JPEG or WEBP file")
    exif, xmp_raw = exif_and_xmp(data)
    raw = exif_user_comment(exif) if exif else None
    comment = decode_user_comment(raw) if raw else None
    xmp = xmp_raw.decode("utf-8", errors="replace") if xmp_raw else None
    return ImageMeta(comment.rstrip("\x00") if comment else None, xmp)


# -- pixel size from the headers -------------------------------------------------------

_JPEG_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def pixel_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the file's header (PNG IHDR, JPEG SOF, WEBP VP8X/VP8/VP8L),
    or None when the header does not say."""
    kind = sniff(data)
    if kind == "png" and len(data) >= 24 and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    if kind == "jpeg":
        for marker, start, end in jpeg_segments(data):
            if marker in _JPEG_SOF and end - start >= 9:
                height, width = struct.unpack(">HH", data[start + 5 : start + 9])
                return width, height
        return None
    if kind == "webp":
        chunks = _riff_chunks(data)
        if len(vp8x := chunks.get(b"VP8X", b"")) >= 10:
            return int.from_bytes(vp8x[4:7], "little") + 1, int.from_bytes(vp8x[7:10], "little") + 1
        if len(vp8 := chunks.get(b"VP8 ", b"")) >= 10:
            width, height = struct.unpack("<HH", vp8[6:10])
            return width & 0x3FFF, height & 0x3FFF
        if len(vp8l := chunks.get(b"VP8L", b"")) >= 5 and vp8l[0] == 0x2F:
            bits = int.from_bytes(vp8l[1:5], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def is_animated(data: bytes) -> bool:
    """An animated PNG (``acTL`` before the image data) or WEBP (``ANIM`` chunk)."""
    kind = sniff(data)
    try:
        if kind == "png":  # chunk headers only, up to the image data (no CRC pass)
            pos = len(PNG_SIGNATURE)
            while pos + 8 <= len(data):
                length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
                if ctype == b"acTL":
                    return True
                if ctype in (b"IDAT", b"IEND"):
                    return False
                pos += 12 + length
        elif kind == "webp":
            return b"ANIM" in _riff_chunks(data)
    except InvalidInputError:
        return False
    return False
