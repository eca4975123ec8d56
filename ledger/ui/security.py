"""Access control and response headers, as one ASGI middleware around the app.

* A token, when configured, is required on every request: ``?token=``, an
  ``Authorization: Bearer`` header or ``X-Seedledger-Token``; a valid query token also
  sets an HttpOnly, SameSite=Strict cookie so the links on the page keep working.
  Anything else gets 401.
* Without a token (loopback only) the Host header must name a loopback host, so a
  web page elsewhere cannot reach the UI through DNS rebinding.
* POST (the Verify action, /find) must come from the UI's own pages (Fetch metadata,
  else the Origin header).
* Every response carries a strict Content-Security-Policy: no script at all, images,
  styles and forms from the app only, no framing.
"""

from __future__ import annotations

import hmac
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.ui.config import UIConfig, is_loopback

COOKIE = "seedledger_ui_token"
CSP = (
    "default-src 'none'; img-src 'self' data:; style-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make form posts Origin: null
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


class Guard:
    def __init__(self, app: ASGIApp, config: UIConfig) -> None:
        self.app = app
        self.token = config.token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        set_cookie = False
        if self.token:
            presented, from_query = self._presented(scope, headers)
            if presented is None or not hmac.compare_digest(presented.encode(), self.token.encode()):
                await _plain(send, 401, "401 Unauthorized: this seedledger UI needs its token\n")
                return
            set_cookie = from_query
        else:
            if not is_loopback(urlsplit("//" + headers.get("host", "")).hostname or ""):
                await _plain(send, 421, "421 Misdirected Request: the UI answers loopback host names only\n")
                return
        if scope["method"] not in ("GET", "HEAD") and not _same_origin(headers):
            await _plain(send, 403, "403 Forbidden: cross-origin form submission\n")
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = list(HEADERS)
                if set_cookie:
                    cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                    extra.append((b"set-cookie", cookie.encode()))
                # The app's own header wins (an archived original has a stricter CSP).
                own = list(message.get("headers", []))
                names = {k.lower() for k, _ in own}
                message["headers"] = own + [(k, v) for k, v in extra if k not in names]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    @staticmethod
    def _presented(scope: Scope, headers: dict[str, str]) -> tuple[str | None, bool]:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if query.get("token"):
            return query["token"][0], True
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip(), False
        if headers.get("x-seedledger-token"):
            return headers["x-seedledger-token"], False
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header is no token
            return None, False
        morsel = cookie.get(COOKIE)
        return (morsel.value if morsel else None), False


def _same_origin(headers: dict[str, str]) -> bool:
    site = headers.get("sec-fetch-site")
    if site is not None:  # browsers that send Fetch metadata say it outright
        return site in ("same-origin", "none")
    origin = headers.get("origin")
    if origin is None:  # not a browser form post (curl, tests); the token still applies
        return True
    return urlsplit(origin).netloc == headers.get("host")


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    headers: list[tuple[bytes, Any]] = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *HEADERS,
    ]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="seedledger"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
