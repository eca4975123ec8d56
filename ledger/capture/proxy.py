"""The recording proxy: `seedledger proxy --upstream URL --listen HOST:PORT`.

A plain ASGI application (served by uvicorn) that forwards every request to the one
configured upstream (method, path, query, headers including Authorization, body) and
relays the response unchanged (status, headers, body bytes as sent, streamed chunk by
chunk). It records through the same :class:`~ledger.capture.recorder.Recorder` and
pairing code as the httpx transport.

It is a reverse proxy for one origin, never a relay: only origin-form targets are
forwarded, to the configured origin (``proxy_targets.py``); hop-by-hop headers, and
those the ``Connection`` header names, are dropped both ways. Request bodies are read
under size, time and concurrency bounds (``proxy_limits.py``); clients and webhooks are
authenticated by shared secrets (``proxy_auth.py``). Every refusal is one log line and a
4xx/503 answer (or a quiet close for a client that went away), never a 500.

Ordering guarantee: the last chunk of a response is held back until the exchange has
been appended to the spool, so a client that received a complete response is sure
its records are in the spool (a ``kill -9`` of the proxy after that loses nothing).

Own endpoints, under a prefix no Runware path uses:

* ``GET /_seedledger/health``: ``{"status": "ok", ...counters, "websocket": {...}}``
  (open sockets, frames relayed each way, tasks submitted and paired, records queued,
  resumes, upstream errors: ``ws_pairing.SocketCounters``); the spool path and the
  database error text only for a loopback peer. No authentication.
* ``POST /_seedledger/webhook/<secret>``: a webhook receiver. Design: the proxy rewrites
  nothing. A client that wants webhook results recorded sets ``webhookURL`` to this
  endpoint itself; the request goes through the proxy, whose acknowledgement makes the
  task pending, and each POST the backend makes is paired with it by ``taskUUID``. Any
  other webhook path answers 404 and records nothing. With ``--forward-webhooks URL``
  each delivery is passed on unchanged to the application's own receiver after it is
  recorded.

Graceful shutdown (SIGINT/SIGTERM): uvicorn stops accepting, finishes in-flight
requests, then the writer lands what the spool holds (bounded wait) and exits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx

from ledger.capture.pairing import CaptureParseError, secrets_from_headers
from ledger.capture.proxy_auth import (
    CLIENT_TOKEN_HEADER,
    check_token,
    is_loopback,
    same_secret,
)
from ledger.capture.proxy_limits import (
    DEFAULT_LIMITS,
    BodyReader,
    BodyRefused,
    InflightBodies,
    ProxyLimits,
    check_depth,
    declared_length,
)
from ledger.capture.proxy_targets import BadTarget, Origin, check_target, forwarded_headers
from ledger.capture.recorder import Recorder
from ledger.capture.spool import SpoolError
from ledger.capture.transport import MAX_CAPTURE_BYTES
from ledger.capture.ws_relay import WebSocketRelay, ws_upstream_for
from ledger.core.redaction import redact_url

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PREFIX = "/_seedledger"
_OFFLOAD_BYTES = 256 * 1024  # bigger bodies are parsed on a worker thread
_SMALL_BODY = 1024 * 1024
_REASONS = {400: "bad request", 401: "unauthorized", 408: "timeout", 413: "too large", 503: "busy"}


class RecordingProxy:
    """The ASGI app. ``recorder`` is closed (drained) at lifespan shutdown when owned.

    ``webhook_token`` None disables the webhook receiver (``serve`` always passes one);
    ``client_token`` None lets any client use the proxy (loopback only, see ``serve``)."""

    def __init__(
        self,
        upstream: str,
        recorder: Recorder,
        *,
        owns_recorder: bool = True,
        webhook_token: str | None = None,
        forward_webhooks: str | None = None,
        client_token: str | None = None,
        limits: ProxyLimits = DEFAULT_LIMITS,
        timeout: float = 600.0,
        drain_timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        ws_upstream: str | None = None,
    ) -> None:
        self.origin = Origin.parse(upstream)
        check_token("--webhook-token", webhook_token)
        check_token("--client-token", client_token)
        self.upstream = upstream.rstrip("/")
        self.recorder = recorder
        self.owns_recorder = owns_recorder
        self.webhook_token = webhook_token
        self.forward_webhooks = forward_webhooks
        self.client_token = client_token
        self.limits = limits
        self.drain_timeout = drain_timeout
        # Cut out of anything recorded: a webhookURL names the webhook secret.
        self._secrets = tuple(t for t in (webhook_token, client_token) if t)
        self._inflight = InflightBodies(limits.max_inflight_bodies)
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
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            raw_path = scope.get("raw_path") or scope["path"].encode()
            url = self.origin.target(scope["method"], raw_path, scope.get("query_string", b""))
            if scope["path"].startswith(PREFIX + "/"):
                await self._own(scope, receive, tracked)
            else:
                await self._forward(scope, url, receive, tracked)
        except (BadTarget, BodyRefused) as exc:
            status = exc.status if isinstance(exc, BodyRefused) else 400
            client = (scope.get("client") or ("?", 0))[0]
            log.warning("refused %s request from %s: %s", scope["method"], client, exc)
            if status and not started:
                retry = ((b"retry-after", b"1"),) if status == 503 else ()
                await _json(send, status, {"error": _REASONS.get(status, "refused")}, close=True, extra=retry)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The same target and client-token checks as for HTTP; a refusal closes the
        handshake (uvicorn answers 403) with one log line."""
        raw_path = scope.get("raw_path") or scope["path"].encode()
        try:
            check_target("GET", raw_path, scope.get("query_string", b""))
            if not self._authorised(scope):
                raise BadTarget("missing or wrong client token")
        except BadTarget as exc:
            client = (scope.get("client") or ("?", 0))[0]
            log.warning("refused websocket from %s: %s", client, exc)
            await send({"type": "websocket.close", "code": 1008})
            return
        await self.ws_relay(scope, receive, send)

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
            await _json(send, 200, self._health(scope))
            return
        if path.startswith("/webhook/") and self.webhook_token is not None:
            if not same_secret(path[len("/webhook/") :], self.webhook_token):
                raise BodyRefused(404, "webhook delivery with a wrong secret")
            if method != "POST":
                await _json(send, 405, {"error": "POST only"})
                return
            body = await self._read(scope, receive, self.limits.max_webhook_body)
            await check_depth(body, self.limits.max_json_depth)
            recorded = await self._record(
                lambda: self.recorder.record_webhook(body, known_secrets=self._secrets), len(body)
            )
            if self.forward_webhooks:
                await self._forward_webhook(scope, body)
            await _json(send, 200, {"recorded": recorded})
            return
        await _json(send, 404, {"error": "not found"})

    def _health(self, scope: Scope) -> dict[str, Any]:
        status = {"status": "ok", **self.recorder.status(), "websocket": self.ws_relay.counters.snapshot()}
        if is_loopback((scope.get("client") or ("", 0))[0]):
            return status
        # Remote peers see counts and states, not paths or database details: each problem
        # keeps its label ("database unreachable"), not the text after it.
        error = status.pop("database_error", None)
        status.pop("spool", None)
        status.pop("archive", None)
        if status.get("archive_error"):
            status["archive_error"] = "failing"
        problems = [str(p).split(":", 1)[0] for p in status.get("problems", ())]
        return {**status, "problems": problems, "database": "unavailable" if error else "ok"}

    async def _forward_webhook(self, scope: Scope, body: bytes) -> None:
        assert self.forward_webhooks is not None
        headers = forwarded_headers(list(scope["headers"]), frozenset({b"content-length"}))
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

    def _authorised(self, scope: Scope) -> bool:
        if self.client_token is None:
            return True
        given = next((v for k, v in scope["headers"] if k.lower() == CLIENT_TOKEN_HEADER), None)
        return same_secret(given, self.client_token)

    def _reader(self, scope: Scope, receive: Receive, limit: int) -> BodyReader:
        length = declared_length(list(scope["headers"]))
        if length is not None and length > limit:  # refused before a byte is read
            raise BodyRefused(413, f"declared body of {length} bytes is larger than {limit}")
        return BodyReader(receive, limit, time.monotonic() + self.limits.body_timeout)

    async def _read(self, scope: Scope, receive: Receive, limit: int) -> bytes:
        reader = self._reader(scope, receive, limit)
        self._inflight.enter()
        try:
            return await reader.read()
        finally:
            self._inflight.leave()

    async def _forward(self, scope: Scope, url: httpx.URL, receive: Receive, send: Send) -> None:
        if not self._authorised(scope):
            raise BodyRefused(401, "missing or wrong client token")
        headers = forwarded_headers(list(scope["headers"]), frozenset({CLIENT_TOKEN_HEADER}))
        record = scope["method"] == "POST"
        if record and not self.recorder.accepting():
            await _spool_full(send)  # refused before forwarding: nothing generated unrecorded
            return
        length = declared_length(list(scope["headers"]))
        chunked = any(k.lower() == b"transfer-encoding" for k, _ in scope["headers"])
        request_body = b""
        content: Any = None
        streaming = False
        if record or (length is not None and length <= _SMALL_BODY and not chunked):
            # Task requests are recorded, so read whole (capped); other small bodies too.
            request_body = await self._read(scope, receive, self.limits.max_body)
            if record:
                await check_depth(request_body, self.limits.max_json_depth)
            content = request_body if (length is not None or chunked or request_body) else None
        elif length is not None or chunked:
            reader = self._reader(scope, receive, self.limits.max_body)
            self._inflight.enter()
            streaming = True
            content = reader.chunks()  # relayed as it arrives, never held
        request = httpx.Request(
            scope["method"], url, headers=headers, content=content, extensions={"timeout": self._timeout}
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
        finally:
            if streaming:
                self._inflight.leave()
        try:
            await self._relay(scope, response, send, request_body if record else None)
        finally:
            await response.aclose()

    async def _relay(
        self, scope: Scope, response: httpx.Response, send: Send, request_body: bytes | None
    ) -> None:
        record = request_body is not None
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": forwarded_headers(list(response.headers.raw)),
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
                    too_big = CaptureParseError(f"body larger than {MAX_CAPTURE_BYTES} bytes")
                    self.recorder.note_failure(too_big)
                else:
                    captured.append(chunk)
            if held is not None:
                await send({"type": "http.response.body", "body": held, "more_body": True})
            held = chunk
        if record and request_body is not None:
            # Spool before the client can hold the complete response.
            response_body = b"".join(captured)
            secrets = self._secrets + secrets_from_headers(
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


async def _json(
    send: Send, status: int, value: Any, *, close: bool = False, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = json.dumps(value, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    if close:  # the rest of a refused body is never read: this connection cannot be reused
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
