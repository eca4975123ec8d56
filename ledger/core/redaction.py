"""Remove secrets before anything is stored, spooled, logged or reported.

Secrets are API keys, bearer tokens, passwords and signed-URL credentials. They are
removed (not masked with a partial value) so no prefix ever leaks.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "[redacted]"

# Keys are compared after lower-casing and dropping "_" and "-".
_SECRET_KEYS = frozenset(
    {
        "apikey",
        "authorization",
        "proxyauthorization",
        "xapikey",
        "token",
        "accesstoken",
        "refreshtoken",
        "idtoken",
        "secret",
        "clientsecret",
        "password",
        "passwd",
        "cookie",
        "setcookie",
        "signature",
        "xamzsignature",
        "xamzcredential",
        "xamzsecuritytoken",
        "xgoogsignature",
        "xgoogcredential",
        "sig",
        "key",
        "privatekey",
        "sessiontoken",
    }
)

_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")


def is_secret_key(key: str) -> bool:
    return key.lower().replace("_", "").replace("-", "") in _SECRET_KEYS


def redact_url(url: str) -> str:
    """Drop userinfo and secret query parameters from a URL."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme or not parts.netloc:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, REDACTED if is_secret_key(k) else v) for k, v in pairs])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str, known_secrets: tuple[str, ...] = ()) -> str:
    """Remove bearer tokens and any known secret values from free text."""
    for secret in known_secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


def redact(value: Any, known_secrets: tuple[str, ...] = ()) -> Any:
    """Return a deep copy of a JSON-like value with every secret removed.

    Keys that name secrets lose their value; strings that look like URLs lose
    credentials; known secret values are cut out wherever they appear.
    """
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and is_secret_key(key):
                out[key] = REDACTED
            else:
                out[key] = redact(item, known_secrets)
        return out
    if isinstance(value, list):
        return [redact(item, known_secrets) for item in value]
    if isinstance(value, str):
        if value.startswith(("http://", "https://")):
            value = redact_url(value)
        return redact_text(value, known_secrets)
    return value
