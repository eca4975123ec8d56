"""What adapters show of URLs, errors and credentials: redacted, always.

httpx logs every request URL at INFO and signed download URLs carry credentials, so a
log filter redacts them; :class:`Secret` keeps a key out of repr, str and pickles.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from ledger.core.redaction import redact_text, redact_url

__all__ = ["Secret", "describe_error", "safe_url"]


def safe_url(url: str | httpx.URL) -> str:
    """A URL fit for messages and logs: no userinfo, no query, no fragment."""
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return "<invalid url>"
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class _RedactHttpxUrls(logging.Filter):
    """httpx logs every request URL at INFO; signed download URLs carry credentials."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_url(str(arg)) if isinstance(arg, httpx.URL) else arg for arg in record.args
            )
        return True


_httpx_logger = logging.getLogger("httpx")
if not any(isinstance(f, _RedactHttpxUrls) for f in _httpx_logger.filters):
    _httpx_logger.addFilter(_RedactHttpxUrls())


def describe_error(value: Any, secrets: tuple[str, ...] = (), limit: int = 200) -> str:
    """The human part of a JSON error body: ``error``/``message``/``detail`` fields,
    or the first of an ``errors`` list; redacted and shortened."""
    if isinstance(value, dict):
        errors = value.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            value = errors[0]
        parts = []
        for key in ("code", "error", "message", "detail", "errors"):
            item = value.get(key)
            if isinstance(item, str | int) and str(item).strip() and str(item) not in parts:
                parts.append(str(item).strip())
        text = ": ".join(parts)
    elif isinstance(value, str):
        text = value
    else:
        return ""
    text = " ".join(redact_text(text, secrets).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Secret:
    """Holds a credential; repr, str and pickling never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("a secret cannot be pickled")
