"""Ogg page structure (RFC 3533), checked before FFmpeg decodes: its demuxer stops
quietly at a cut-off page, so a truncated OGG/Opus file would otherwise fingerprint as
a shorter, complete one (an Ogg file declares no total length to compare with).

Pages are walked from the start; bytes between pages (a tag some tool appended, say)
are skipped to the next capture pattern, as demuxers resynchronise. A page running past
the end, or a logical stream with no end-of-stream page, means the file was cut.
"""

from __future__ import annotations

from ledger.errors import FingerprintError

_CAPTURE = b"OggS"
_HEADER = 27  # capture, version, type, granule (8), serial (4), sequence (4), CRC (4), segments
_END_OF_STREAM = 0x04
#: Bounds on the walk, far above real files (a 256 MB Opus file at ~4 KB pages has ~65,000
#: pages; chained streams end before the next begins): crafted input stays ~1 s of work.
MAX_PAGES = 1_000_000
MAX_OPEN_STREAMS = 64


def is_ogg(data: bytes) -> bool:
    return data[:4] == _CAPTURE


def check_ogg(data: bytes) -> None:
    """Every page whole, and every logical stream ended by its end-of-stream page."""
    view = memoryview(data)
    size, offset, pages = len(data), 0, 0
    open_streams: set[bytes] = set()
    while True:
        offset = data.find(_CAPTURE, offset)
        if offset < 0:
            break
        pages += 1
        if pages > MAX_PAGES:
            raise FingerprintError(f"OGG has more than {MAX_PAGES} pages; refusing to read further")
        body_at = offset + _HEADER + (view[offset + 26] if offset + _HEADER <= size else 0)
        if offset + _HEADER > size or body_at > size:
            raise FingerprintError(f"OGG is truncated: the page at byte {offset} is cut off in its header")
        end = body_at + sum(view[offset + _HEADER : body_at])
        if end > size:
            raise FingerprintError(
                f"OGG is truncated: the page at byte {offset} needs {end - offset} bytes, "
                f"{size - offset} are left"
            )
        serial = bytes(view[offset + 14 : offset + 18])
        if view[offset + 5] & _END_OF_STREAM:
            open_streams.discard(serial)
        else:
            open_streams.add(serial)
            if len(open_streams) > MAX_OPEN_STREAMS:
                raise FingerprintError(f"OGG has more than {MAX_OPEN_STREAMS} logical streams open at once")
        offset = end
    if open_streams:
        raise FingerprintError("OGG is truncated: it ends before its end-of-stream page")
