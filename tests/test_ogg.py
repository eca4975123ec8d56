"""The Ogg page walk that tells a cut OGG/Opus file from a complete one (``_ogg.py``)."""

from __future__ import annotations

import struct

import pytest

from ledger.errors import FingerprintError
from ledger.fingerprint import _ogg, fingerprint
from ledger.fingerprint._ogg import check_ogg
from tests import media


def page(serial: int, body: bytes = b"x" * 300, *, last: bool = False) -> bytes:
    """One Ogg page (CRC left zero: the walk does not check it, FFmpeg does)."""
    lacing = [255] * (len(body) // 255) + [len(body) % 255]
    header = b"OggS" + bytes([0, 0x04 if last else 0]) + b"\0" * 8 + struct.pack("<I", serial)
    return header + b"\0" * 8 + bytes([len(lacing)]) + bytes(lacing) + body


def stream(serial: int, pages: int = 3) -> list[bytes]:
    return [page(serial, last=i == pages - 1) for i in range(pages)]


def test_whole_files_pass_single_multiplexed_chained_and_with_a_tag_after_them() -> None:
    a, b = stream(1), stream(2)
    check_ogg(b"".join(a))
    check_ogg(b"".join(x for pair in zip(a, b, strict=True) for x in pair))  # two streams at once
    check_ogg(b"".join(a + b))  # chained: one stream after another
    check_ogg(b"".join(a) + b"TAG" + b"\0" * 125)  # an ID3v1 tag some tool appended


def test_cut_files_are_refused() -> None:
    a = b"".join(stream(1))
    whole = len(page(1))
    with pytest.raises(FingerprintError, match=r"the page at byte \d+ needs \d+ bytes, \d+ are left"):
        check_ogg(a[: whole + 100])
    with pytest.raises(FingerprintError, match="page at byte 0 is cut off in its header"):
        check_ogg(a[:20])
    with pytest.raises(FingerprintError, match="ends before its end-of-stream page"):
        check_ogg(a[: 2 * whole])  # at a page boundary
    with pytest.raises(FingerprintError, match="ends before its end-of-stream page"):
        check_ogg(a[: 2 * whole] + b"\0" * 4000)  # cut, then something appended
    two = b"".join(x for pair in zip(stream(1), stream(2), strict=True) for x in pair)
    with pytest.raises(FingerprintError, match="ends before its end-of-stream page"):
        check_ogg(two[:-whole])  # one of two streams lost its end


def test_the_walk_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FingerprintError, match="more than 64 logical streams open at once"):
        check_ogg(b"".join(page(i) for i in range(65)))
    monkeypatch.setattr(_ogg, "MAX_PAGES", 10)
    with pytest.raises(FingerprintError, match="more than 10 pages"):
        check_ogg(b"".join(stream(1, pages=11)))
    check_ogg(b"".join(stream(1, pages=10)))


def test_a_real_opus_file_with_a_tag_after_it_still_fingerprints() -> None:
    ogg = media.sound(media.chord(), "ogg")
    tagged = ogg + b"TAG" + b"\0" * 125
    assert fingerprint(tagged, "audio").pixel_sha256 == fingerprint(ogg, "audio").pixel_sha256
