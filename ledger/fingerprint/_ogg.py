"""Ogg page structure (RFC 3533), checked before FFmpeg decodes: its demuxer stops
quietly at a cut-off page, so a truncated OGG/Opus file would otherwise fingerprint as
a shorter, complete one (an Ogg file declares no total length to compare with).
"""

from __future__ import annotations

from ledger.errors import FingerprintError

_CAPTURE = b"OggS"
_HEADER = 27  # capture, version, type, granule (8), serial (4), sequence (4), CRC (4), segments
_END_OF_STREAM = 0x04


def is_ogg(data: bytes) -> bool:
    return data[:4] == _CAPTURE


def check_ogg(data: bytes) -> None:
    """Every page whole, and every logical stream ended by its end-of-stream page."""
    offset, open_streams = 0, set()
    while offset < len(data):
        if data[offset : offset + 4] != _CAPTURE:
            return  # not a page boundary: FFmpeg resynchronises or reports it itself
        if offset + _HEADER > len(data):
            raise FingerprintError(f"OGG is truncated: the page at byte {offset} is cut off in its header")
        segments = data[offset + 26]
        body_at = offset + _HEADER + segments
        if body_at > len(data):
            raise FingerprintError(f"OGG is truncated: the page at byte {offset} is cut off in its header")
        end = body_at + sum(data[offset + _HEADER : body_at])
        if end > len(data):
            raise FingerprintError(
                f"OGG is truncated: the page at byte {offset} needs {end - offset} bytes, "
                f"{len(data) - offset} are left"
            )
        serial = data[offset + 14 : offset + 18]
        if data[offset + 5] & _END_OF_STREAM:
            open_streams.discard(serial)
        else:
            open_streams.add(serial)
        offset = end
    if open_streams:
        raise FingerprintError("OGG is truncated: it ends before its end-of-stream page")
