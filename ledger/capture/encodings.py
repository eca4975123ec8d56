"""Undo a response's Content-Encoding, as the client saw it, within a size bound.

The transport and the proxy see a body as it was sent, so pairing must remove every
encoding the client may have negotiated: httpx asks for ``br`` and ``zstd`` whenever
brotli or zstandard is installed (both are dependencies of seedledger, so it always
can), and other clients behind the proxy may too. Decoding stops past
``max_bytes`` so a compression bomb costs no more memory than an honest body.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import brotli
import zstandard

from ledger.errors import LedgerError

__all__ = ["MAX_DECODED_BYTES", "SUPPORTED_ENCODINGS", "decode_body"]

#: The largest decoded body pairing accepts (JSON answers carry base64 images).
MAX_DECODED_BYTES = 256 * 1024 * 1024
_CHUNK = 64 * 1024


class _TooLarge(Exception):
    pass


def _zlib(data: bytes, wbits: int, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=wbits)
    out = bytearray(inflater.decompress(data, limit + 1))
    while inflater.unconsumed_tail and len(out) <= limit:
        out += inflater.decompress(inflater.unconsumed_tail, limit + 1 - len(out))
    if len(out) > limit:
        raise _TooLarge
    if not inflater.eof:
        raise zlib.error("incomplete or truncated stream")
    return bytes(out)


def _gzip(data: bytes, limit: int) -> bytes:
    return _zlib(data, 31, limit)


def _deflate(data: bytes, limit: int) -> bytes:
    # "deflate" means zlib-wrapped per RFC 9110, but raw deflate is common in the wild.
    try:
        return _zlib(data, 15, limit)
    except zlib.error:
        return _zlib(data, -15, limit)


def _brotli(data: bytes, limit: int) -> bytes:
    decoder = brotli.Decompressor()
    out = bytearray(decoder.process(data, output_buffer_limit=_CHUNK))
    while not decoder.can_accept_more_data() and len(out) <= limit:
        out += decoder.process(b"", output_buffer_limit=_CHUNK)
    if len(out) > limit:
        raise _TooLarge
    if not decoder.is_finished():
        raise brotli.error("incomplete or truncated stream")
    return bytes(out)


def _zstd(data: bytes, limit: int) -> bytes:
    # decompressobj has no output bound, so feed it small input steps (a zstd block
    # expands at most ~128 KiB per few input bytes) and check after each step.
    out = bytearray()
    rest = memoryview(data)
    while rest:
        decoder = zstandard.ZstdDecompressor().decompressobj()
        while rest and not decoder.eof:
            out += decoder.decompress(rest[:1024])
            rest = rest[1024:]
            if len(out) > limit:
                raise _TooLarge
        if not decoder.eof:
            raise zstandard.ZstdError("incomplete or truncated stream")
        if decoder.unused_data:  # the next frame began inside the last input step
            rest = memoryview(decoder.unused_data + bytes(rest))
    return bytes(out)


_DECODERS: dict[str, Callable[[bytes, int], bytes]] = {
    "gzip": _gzip,
    "x-gzip": _gzip,
    "deflate": _deflate,
    "br": _brotli,
    "zstd": _zstd,
}
SUPPORTED_ENCODINGS = frozenset(_DECODERS)


def decode_body(
    raw: bytes,
    content_encoding: str | None,
    *,
    error: type[LedgerError],
    max_bytes: int = MAX_DECODED_BYTES,
) -> bytes:
    """The body with its Content-Encoding removed; ``error`` for anything undecodable."""
    encodings = [e.strip().lower() for e in (content_encoding or "").split(",") if e.strip()]
    data = raw
    for encoding in reversed(encodings):  # the last one applied is undone first
        if encoding == "identity":
            continue
        decoder = _DECODERS.get(encoding)
        if decoder is None:
            raise error(f"cannot decode Content-Encoding {encoding!r}")
        try:
            data = decoder(data, max_bytes)
        except _TooLarge:
            raise error(f"{encoding} body decodes to more than {max_bytes} bytes") from None
        except (zlib.error, brotli.error, zstandard.ZstdError) as exc:
            raise error(f"bad {encoding} body: {exc}") from None
    return data
