"""The recording proxy: `seedledger proxy --upstream URL --listen HOST:PORT`.

A plain ASGI application (served by uvicorn) that forwards every request unchanged
to the upstream (method, path, query, headers including Authorization, body) and
relays the response unchanged (status, headers, body bytes as sent, streamed chunk by
chunk). It records through the same :class:`~ledger.capture.recorder.Recorder` and
pairing code as the httpx transport.

Ordering guarantee: the last chunk of a response is held back until the exchange has
been appended to the spool, so a client that received a complete response is sure
its records are in the spool (a ``kill -9`` of the proxy after that loses nothing).

Own endpoints, under a prefix no Runware path uses:

* ``GET /_seedledger/health``: ``{"status": "ok", ...counters}``.
* ``POST /_seedledger/webhook`` (or ``/_seedledger/webhook/<token>``): a webhook
  receiver. Design: the proxy rewrites nothing. A client that wants webhook results
  recorded sets ``webhookURL`` to this endpoint itself; the request goes through the
  proxy, whose acknowledgement makes the task pending, and each POST the backend makes
  is paired with it by ``taskUUID``. With ``--webhook-token`` only that token's path is
  accepted; with ``--forward-webhooks URL`` each delivery is passed on unchanged to the
  application's own receiver after it is recorded.

Graceful shutdown (SIGINT/SIGTERM): uvicorn stops accepting, finishes in-flight
requests, then the writer lands what the spool holds (bounded wait) and exits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from ledger.capture.pairing import CaptureParseError, secrets_from_headers
from ledger.capture.recorder import Recorder
from ledger.capture.spool import SpoolError
from ledger.capture.transport import MAX_CAPTURE_BYTES
from ledger.capture.ws_relay import WebSocketRelay, ws_upstream_for
from ledger.core.records import Source
from ledger.core.redaction import redact_url
from ledger.errors import UsageError

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PREFIX = "/_seedledger"
# Hop-by-hop headers (RFC 9110 §7.6.1) are the connection's, not the message's.
_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"host",
    }
)
_OFFLOAD_BYTES = 256 * 1024  # bigger bodies are parsed on a worker thread
_SMALL_BODY = 1024 * 1024


def _clean(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in headers if k.lower() not in _HOP]


class RecordingProxy:
    """The ASGI app. ``recorder`` is closed (drained) at lifespan shutdown when owned."""

    def __init__(
        self,
        upstream: str,
        recorder: Recorder,
        *,
        owns_recorder: bool = True,
        webhook_token: str | None = None,
        forward_webhooks: str | None = None,
        timeout: float = 600.0,
        drain_timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        ws_upstream: str | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(f"--upstream must be an http(s) URL, got {redact_url(upstream)!r}")
        self.upstream = upstream.rstrip("/")
        self.recorder = recorder
        self.owns_recorder = owns_recorder
        self.webhook_token = webhook_token
        self.forward_webhooks = forward_webhooks
        self.drain_timeout = drain_timeout
        # The proxy talks to the transport directly: no client-level defaults (User-Agent,
        # Accept-Encoding, cookies, redirects) may change what is forwarded, and the
        # per-request overhead stays small.
        # Idle upstream connections are dropped after 2 s, before common server keep-alive
        # timeouts (uvicorn and Node: 5 s; httpx's default is also 5 s): reusing one the
        # server is closing at that moment failed a relayed request with a 502.
        self._transport = transport or httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200, keepalive_expiry=2.0),
            trust_env=False,
        )
        self._timeout = {"connect": 30.0, "read": timeout, "write": timeout, "pool": timeout}
        self.ws_relay = WebSocketRelay(ws_upstream_for(upstream, ws_upstream), recorder)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] == "websocket":  # see ws_relay.py
            await self.ws_relay(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path.startswith(PREFIX + "/"):
            await self._own(scope, receive, send)
        else:
            await self._forward(scope, receive, send)

    # -- lifespan ----------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        await self._transport.aclose()
        if self.owns_recorder:
            drained = await asyncio.to_thread(self.recorder.close, drain_timeout=self.drain_timeout)
            if not drained:
                log.warning("shutdown: records left in the spool land on the next start or `spool drain`")

    # -- own endpoints -----------------------------------------------------------------

    async def _own(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"][len(PREFIX) :]
        method = scope["method"]
        if path == "/health" and method in ("GET", "HEAD"):
            await _json(send, 200, {"status": "ok", **self.recorder.status()})
            return
        if path == "/webhook" or path.startswith("/webhook/"):
            token = path[len("/webhook/") :] if path.startswith("/webhook/") else None
            if self.webhook_token is not None and token != self.webhook_token:
                await _json(send, 404, {"error": "not found"})
                return
            if method != "POST":
                await _json(send, 405, {"error": "POST only"})
                return
            body = await _read_body(receive)
            recorded = await self._record(lambda: self.recorder.record_webhook(body), len(body))
            if self.forward_webhooks:
                await self._forward_webhook(scope, body)
            await _json(send, 200, {"recorded": recorded})
            return
        await _json(send, 404, {"error": "not found"})

    async def _forward_webhook(self, scope: Scope, body: bytes) -> None:
        assert self.forward_webhooks is not None
        headers = [(k, v) for k, v in _clean(list(scope["headers"])) if k.lower() != b"content-length"]
        request = httpx.Request(
            "POST",
            self.forward_webhooks,
            content=body,
            headers=headers,
            extensions={"timeout": self._timeout},
        )
        try:
            response = await self._transport.handle_async_request(request)
            await response.aread()
            await response.aclose()
        except httpx.HTTPError as exc:
            log.warning(
                "webhook forward to %s failed: %s", redact_url(self.forward_webhooks), type(exc).__name__
            )

    # -- forwarding --------------------------------------------------------------------

    def _target(self, scope: Scope) -> str:
        raw_path = scope.get("raw_path") or scope["path"].encode()
        url = self.upstream + raw_path.decode("latin-1")
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        return url

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _clean(list(scope["headers"]))
        record = scope["method"] == "POST"
        if record and not self.recorder.accepting():
            await _spool_full(send)  # refused before forwarding: nothing generated unrecorded
            return
        captured_request: list[bytes] = []

        async def body() -> Any:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                if chunk:
                    if record:
                        captured_request.append(chunk)
                    yield chunk
                if not message.get("more_body", False):
                    return

        length = next((v for k, v in scope["headers"] if k.lower() == b"content-length"), None)
        chunked = any(k.lower() == b"transfer-encoding" for k, _ in scope["headers"])
        content: Any = None
        if length is not None and length.isdigit() and int(length) <= _SMALL_BODY and not chunked:
            # A small body (every Runware task request) is read whole: cheaper to send.
            content = b"".join([chunk async for chunk in body()])
        elif length is not None or chunked:
            content = body()  # streamed through as it arrives
        request = httpx.Request(
            scope["method"],
            self._target(scope),
            headers=headers,
            content=content,
            extensions={"timeout": self._timeout},
        )
        try:
            response = await self._transport.handle_async_request(request)
        except httpx.HTTPError as exc:
            log.warning("upstream %s unreachable: %s", redact_url(self.upstream), type(exc).__name__)
            await _json(
                send,
                502,
                {
                    "errors": [
                        {
                            "code": "proxyUpstreamUnavailable",
                            "message": f"upstream unreachable ({type(exc).__name__})",
                        }
                    ]
                },
            )
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": _clean(list(response.headers.raw)),
                }
            )
            captured: list[bytes] = []
            size = 0
            held: bytes | None = None
            async for chunk in response.stream:  # type: ignore[union-attr]
                if not chunk:
                    continue
                if record:
                    size += len(chunk)
                    if size > MAX_CAPTURE_BYTES:  # relayed, but too big to record
                        record = False
                        captured.clear()
                        self.recorder.note_failure(
                            CaptureParseError(f"body larger than {MAX_CAPTURE_BYTES} bytes")
                        )
                    else:
                        captured.append(chunk)
                if held is not None:
                    await send({"type": "http.response.body", "body": held, "more_body": True})
                held = chunk
            if record:
                # Spool before the client can hold the complete response.
                request_body = b"".join(captured_request)
                response_body = b"".join(captured)
                secrets = secrets_from_headers(
                    [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
                )
                encoding = response.headers.get("content-encoding")
                try:
                    await self._record(
                        lambda: self.recorder.record_exchange(
                            request_body,
                            response_body,
                            content_encoding=encoding,
                            known_secrets=secrets,
                            strict=True,
                        ),
                        len(response_body),
                    )
                except SpoolError:  # counted and logged: the client never gets the last chunk
                    return
            await send({"type": "http.response.body", "body": held or b"", "more_body": False})
        finally:
            await response.aclose()

    async def _record(self, work: Callable[[], int], size: int) -> int:
        if size > _OFFLOAD_BYTES:
            return await asyncio.to_thread(work)
        return work()


async def _spool_full(send: Send) -> None:
    """503 with Retry-After: the spool cannot take records (see Recorder.accepting)."""
    error = {"code": "proxySpoolFull", "message": "recording spool is full; retry later"}
    body = json.dumps({"errors": [error]}, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"retry-after", b"1")]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _json(send: Send, status: int, value: Any) -> None:
    body = json.dumps(value, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen must be HOST:PORT, got {value!r}")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def serve(
    upstream: str,
    listen: str,
    *,
    spool: str | None = None,
    db: str | None = None,
    webhook_token: str | None = None,
    forward_webhooks: str | None = None,
    drain_timeout: float = 30.0,
    fingerprint: bool = True,
    announce: Callable[[str], None] | None = None,
    ws_upstream: str | None = None,
) -> None:
    """Run the proxy until SIGINT/SIGTERM, then drain (see module docstring)."""
    import uvicorn

    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections; without
    # it each response waits for a delayed ACK (~40 ms: headers and body are two writes).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    # Result URLs on the upstream's own host may be fetched for fingerprints.
    upstream_host = urlsplit(upstream).hostname or ""
    recorder = Recorder(
        spool,
        db,
        source=Source.PROXY,
        fingerprint=fingerprint,
        trusted_hosts=(upstream_host,) if upstream_host else (),
    )
    try:
        app = RecordingProxy(
            upstream,
            recorder,
            webhook_token=webhook_token,
            forward_webhooks=forward_webhooks,
            drain_timeout=drain_timeout,
            ws_upstream=ws_upstream,
        )
    except BaseException:
        recorder.close(drain_timeout=0)
        sock.close()
        raise
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    (announce or (lambda m: print(m, file=sys.stderr, flush=True)))(
        f"seedledger proxy: listening on http://{shown}:{bound_port} -> {redact_url(upstream)} "
        f"(spool {recorder.spool.directory}; websocket -> {redact_url(app.ws_relay.ws_upstream)})"
    )
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level="warning",
        access_log=False,
        server_header=False,  # relay the upstream's Server and Date headers unchanged
        date_header=False,
        timeout_graceful_shutdown=60,
        ws="websockets-sansio",
        ws_max_size=None,  # type: ignore[arg-type]  # Runware frames have no size limit
    )
    uvicorn.Server(config).run(sockets=[sock])
