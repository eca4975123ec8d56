"""The proxy's WebSocket relay: each client connection ↔ one upstream connection.

Runware's SDKs talk WebSocket by default, so ``seedledger proxy`` accepts upgrades on
the API path and relays them (``--ws-upstream``, default ``wss://ws-api.runware.ai``;
a loopback ``--upstream`` test server gives ``ws://`` on the same host and port).

Transparent, hop by hop:

* the upstream connection is opened first, with the client's path and query string
  (``/v1?sdk=js&version=…``), its own headers (``User-Agent``, ``X-SDK-*``, …; not the
  handshake's hop-by-hop ones) and its subprotocols; a refused handshake is answered
  with the upstream's status and body;
* text frames go through byte for byte (UTF-8 both ways) and in order, binary frames
  too; there is no message size limit on either hop;
* close codes and reasons are passed on (1005 "no status" becomes 1000; an upstream
  that vanished, 1006, closes the client with 1011);
* protocol pings are answered by each hop itself; application pings
  (``{"taskType": "ping"}``) are ordinary frames and reach the upstream, so its idle
  timer really resets.

Recording (``ws_pairing.py``): a client frame's tasks are journaled as pending before
the frame is forwarded, and a server frame's records are spooled before the client
receives it, so a client holding a result knows its record is in the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from urllib.parse import urlsplit

from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from ledger.capture.recorder import Recorder
from ledger.capture.ws_pairing import SocketCounters, SocketPairing
from ledger.core.redaction import redact_url
from ledger.errors import UsageError

log = logging.getLogger(__name__)

DEFAULT_WS_UPSTREAM = "wss://ws-api.runware.ai"
# The handshake's own headers: the upstream connection negotiates its own.
_NOT_FORWARDED = frozenset(
    {
        "host",
        "connection",
        "upgrade",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "transfer-encoding",
        "te",
        "trailer",
        "content-length",
        "user-agent",  # sent as websockets' user_agent_header, unchanged
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
    }
)


def ws_upstream_for(upstream: str, ws_upstream: str | None) -> str:
    """The WebSocket upstream: as given, else ``ws(s)://`` on a loopback ``upstream``,
    else Runware's own."""
    if ws_upstream:
        parts = urlsplit(ws_upstream)
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise UsageError(f"--ws-upstream must be a ws(s) URL, got {redact_url(ws_upstream)!r}")
        return ws_upstream.rstrip("/")
    parts = urlsplit(upstream)
    if parts.hostname and _is_loopback(parts.hostname):
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}".rstrip("/")
    return DEFAULT_WS_UPSTREAM


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _path_ok(path: str) -> bool:
    """Only an origin-form path that stays under the upstream's path prefix."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return False
    return all(segment not in ("..", ".") for segment in path.split("/"))


class WebSocketRelay:
    """The ASGI ``websocket`` handler the proxy routes upgrades to."""

    def __init__(self, ws_upstream: str, recorder: Recorder, *, open_timeout: float = 30.0) -> None:
        self.ws_upstream = ws_upstream.rstrip("/")
        self.recorder = recorder
        self.open_timeout = open_timeout
        self.counters = SocketCounters()  # shown in the proxy's health

    def _target(self, scope: Scope) -> str | None:
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        path = raw.decode("latin-1")
        if not _path_ok(path):
            return None
        url = self.ws_upstream + path
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        return url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        target = self._target(scope)
        if target is None:
            await send({"type": "websocket.close", "code": 1008, "reason": "bad request target"})
            return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        forwarded = [(k, v) for k, v in headers if k.lower() not in _NOT_FORWARDED]
        user_agent = next((v for k, v in headers if k.lower() == "user-agent"), None)
        try:
            upstream = await connect(
                target,
                additional_headers=forwarded,
                user_agent_header=user_agent,
                subprotocols=scope.get("subprotocols") or None,
                max_size=None,
                open_timeout=self.open_timeout,
                proxy=None,
            )
        except InvalidStatus as exc:
            self.counters.upstream_errors += 1
            await self._refuse(scope, send, exc.response.status_code, bytes(exc.response.body or b""))
            return
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            self.counters.upstream_errors += 1
            log.warning(
                "websocket upstream %s unreachable: %s", redact_url(self.ws_upstream), type(exc).__name__
            )
            await self._refuse(scope, send, 502, b'{"errors":[{"code":"proxyUpstreamUnavailable"}]}')
            return
        self.counters.open_sockets += 1
        self.counters.sockets_opened += 1
        try:
            await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
            pairing = SocketPairing(self.recorder, headers, self.counters)
            await self._relay(receive, send, upstream, pairing)
        finally:
            self.counters.open_sockets -= 1
            with contextlib.suppress(Exception):
                await upstream.close()

    async def _refuse(self, scope: Scope, send: Send, status: int, body: bytes) -> None:
        if "websocket.http.response" in (scope.get("extensions") or {}):
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "websocket.http.response.body", "body": body, "more_body": False})
        else:
            await send({"type": "websocket.close", "code": 1011})

    async def _relay(
        self, receive: Receive, send: Send, upstream: ClientConnection, pairing: SocketPairing
    ) -> None:
        up = asyncio.ensure_future(self._upstream_to_client(send, upstream, pairing))
        down = asyncio.ensure_future(self._client_to_upstream(receive, upstream, pairing))
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            if down.done() and not up.done():
                # The client closed: let the upstream's close handshake finish, briefly.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(up), timeout=5)
        finally:
            for task in (up, down):
                task.cancel()
            for task in (up, down):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _client_to_upstream(
        self, receive: Receive, upstream: ClientConnection, pairing: SocketPairing
    ) -> None:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                code = message.get("code") or 1000
                reason = message.get("reason") or ""
                if code in (1005, 1006, 1012):  # no status / gone / our own shutdown
                    code = 1000 if code == 1005 else 1001
                with contextlib.suppress(Exception):
                    await upstream.close(code, reason)
                return
            if kind != "websocket.receive":
                continue
            text = message.get("text")
            try:
                if text is not None:
                    pairing.client_frame(text)
                    await upstream.send(text)
                elif message.get("bytes") is not None:
                    await upstream.send(message["bytes"])
                else:
                    continue
                self.counters.frames_from_clients += 1
            except ConnectionClosed:
                return

    async def _upstream_to_client(
        self, send: Send, upstream: ClientConnection, pairing: SocketPairing
    ) -> None:
        try:
            async for frame in upstream:
                if isinstance(frame, str):
                    await pairing.server_frame(frame)
                    await send({"type": "websocket.send", "text": frame})
                else:
                    await send({"type": "websocket.send", "bytes": frame})
                self.counters.frames_to_clients += 1
        except ConnectionClosed:
            pass
        rcvd = upstream.protocol.close_rcvd
        if rcvd is None:
            self.counters.upstream_errors += 1
            code, reason = 1011, "upstream connection lost"
        else:
            code, reason = (1000 if rcvd.code == 1005 else rcvd.code), rcvd.reason
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": code, "reason": reason})
