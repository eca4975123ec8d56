"""Request targets and headers for the recording proxy: what may be forwarded, and where.

The proxy is a reverse proxy for one configured origin, never an open relay. The
upstream URL is the configured origin (scheme, host, port, path prefix) with the
request's path and query appended as bytes: nothing in a request target can change the
host. Only origin-form targets (RFC 9112 §3.2.1: ``/path?query``) are forwarded;
absolute-form (``http://host/…``), authority-form (``host:port``, ``@host:port/…``,
``:port/…``), asterisk-form (``OPTIONS *``), dot segments (``..`` and ``.``, also
percent-encoded), backslashes and fragments are refused, and so is CONNECT.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_to_bytes, urlsplit

import httpx

from ledger.core.redaction import redact_url
from ledger.errors import UsageError

# Hop-by-hop headers (RFC 9110 §7.6.1; RFC 2616 §13.5.1 adds the Proxy-* pair) belong to
# one connection, not to the message. Host is set from the upstream URL.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"host",
    }
)


class BadTarget(ValueError):
    """A request target the proxy refuses to forward (answered with 400)."""


@dataclass(frozen=True)
class Origin:
    """The configured upstream: ``http(s)://host[:port][/prefix]``."""

    url: httpx.URL
    prefix: bytes  # the upstream's path prefix, without a trailing slash

    @classmethod
    def parse(cls, upstream: str) -> Origin:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"--upstream must be an http(s) URL, got {redact_url(upstream)!r}")
        if parts.query or parts.fragment:
            shown = redact_url(upstream)
            raise UsageError(f"--upstream must be an origin with an optional path, got {shown!r}")
        try:
            url = httpx.URL(upstream)
        except httpx.InvalidURL as exc:
            raise UsageError(f"--upstream is not a valid URL: {exc}") from None
        return cls(url=url, prefix=url.raw_path.rstrip(b"/"))

    def target(self, method: str, raw_path: bytes, query: bytes) -> httpx.URL:
        """The upstream URL for one request; raises :class:`BadTarget`."""
        check_target(method, raw_path, query)
        raw = self.prefix + raw_path + (b"?" + query if query else b"")
        return self.url.copy_with(raw_path=raw)


def check_target(method: str, raw_path: bytes, query: bytes) -> None:
    """Refuse everything but an origin-form target with a normalised path."""
    if method == "CONNECT":
        raise BadTarget("CONNECT is not proxied")
    if not raw_path.startswith(b"/"):
        if raw_path == b"*":
            raise BadTarget("asterisk-form target")
        if b"://" in raw_path:
            raise BadTarget("absolute-form target")
        raise BadTarget("target is not origin-form")
    if raw_path.startswith(b"//"):
        raise BadTarget("target starts with '//'")
    for part in (raw_path, query):
        if b"#" in part:
            raise BadTarget("fragment in target")
        if b"\\" in part or b"%5c" in part.lower():
            raise BadTarget("backslash in target")
    # Decode once (what an upstream does) and once more (what a careless one does).
    decoded = unquote_to_bytes(raw_path)
    for path in (decoded, unquote_to_bytes(decoded)):
        if any(segment in (b".", b"..") for segment in path.split(b"/")):
            raise BadTarget("dot segment in target")
        if b"\\" in path or any(byte < 0x20 or byte == 0x7F for byte in path):
            raise BadTarget("control character or backslash in target")


def forwarded_headers(
    headers: list[tuple[bytes, bytes]], drop: frozenset[bytes] = frozenset()
) -> list[tuple[bytes, bytes]]:
    """Headers without the hop-by-hop set, those the ``Connection`` header names, and ``drop``."""
    named = {
        token.strip().lower()
        for key, value in headers
        if key.lower() == b"connection"
        for token in value.split(b",")
        if token.strip()
    }
    excluded = HOP_BY_HOP | named | drop
    return [(k, v) for k, v in headers if k.lower() not in excluded]
