"""Body limits for the recording proxy: size caps, read deadlines, bodies in flight.

A request body is read under three bounds, so that no client can hold the proxy's memory
or its event loop: at most ``max_body`` bytes (413 above; a declared Content-Length is
refused before a byte is read), all of it within ``body_timeout`` seconds of the request
(408 for a trickle), and at most ``max_inflight_bodies`` bodies being read at once (503
with Retry-After beyond). Webhook deliveries have their own, smaller cap. A client that
disconnects mid-body gets nothing back; the request is dropped with one log line. A body
that is recorded (a task request, a webhook delivery) nesting its JSON deeper than
``max_json_depth`` is refused with 400 before anything parses it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from ledger.core.jsonsafe import DEFAULT_MAX_DEPTH, json_depth
from ledger.errors import UsageError

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]

MIB = 1024 * 1024


@dataclass(frozen=True)
class ProxyLimits:
    """Configurable bounds (``seedledger proxy --max-body …``)."""

    max_body: int = 16 * MIB  # any request body; POST bodies are held for recording
    max_webhook_body: int = 4 * MIB
    body_timeout: float = 60.0  # seconds for a whole request body to arrive
    max_inflight_bodies: int = 128
    max_json_depth: int = DEFAULT_MAX_DEPTH  # recorded bodies nested deeper are refused (400)

    def __post_init__(self) -> None:
        if self.max_body < 1 or self.max_webhook_body < 1:
            raise UsageError("body limits must be at least 1 byte")
        if self.body_timeout <= 0:
            raise UsageError("--body-timeout must be positive")
        if self.max_inflight_bodies < 1:
            raise UsageError("--max-inflight-bodies must be at least 1")


DEFAULT_LIMITS = ProxyLimits()


class BodyRefused(Exception):
    """A request body the proxy will not take; ``status`` 0 means close quietly."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The Content-Length, None when absent; a malformed one is refused (400)."""
    values = {v.strip() for k, v in headers if k.lower() == b"content-length"}
    if not values:
        return None
    if len(values) > 1 or not next(iter(values)).isdigit():
        raise BodyRefused(400, "malformed Content-Length")
    return int(next(iter(values)))


class BodyReader:
    """Reads one request body under the limits (see module docstring)."""

    def __init__(self, receive: Receive, limit: int, deadline: float) -> None:
        self._receive = receive
        self.limit = limit
        self.deadline = deadline  # time.monotonic() value
        self.size = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise BodyRefused(408, "request body not received in time")
            try:
                # asyncio.timeout, not wait_for: no task per chunk, and a body already
                # received is read without yielding (the in-flight count stays low).
                async with asyncio.timeout(remaining):
                    message = await self._receive()
            except TimeoutError:
                raise BodyRefused(408, "request body not received in time") from None
            if message["type"] == "http.disconnect":
                raise BodyRefused(0, "client disconnected mid-body")
            chunk = message.get("body", b"")
            if chunk:
                self.size += len(chunk)
                if self.size > self.limit:
                    raise BodyRefused(413, f"request body larger than {self.limit} bytes")
                yield chunk
            if not message.get("more_body", False):
                return

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])


async def check_depth(body: bytes, max_depth: int) -> None:
    """Refuse (400) a body to be recorded whose JSON nests deeper than ``max_depth``,
    before the pairing code parses it; large bodies are measured off the event loop."""
    text = body.decode("utf-8", "replace")
    depth = await asyncio.to_thread(json_depth, text) if len(body) > 256 * 1024 else json_depth(text)
    if depth > max_depth:
        raise BodyRefused(400, f"JSON nested {depth} levels deep; at most {max_depth} are recorded")


class InflightBodies:
    """Counts bodies being read; refuses (503) rather than queueing beyond the bound."""

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self.current = 0

    def enter(self) -> None:
        if self.current >= self.bound:
            raise BodyRefused(503, f"{self.bound} request bodies already in flight")
        self.current += 1

    def leave(self) -> None:
        self.current -= 1
