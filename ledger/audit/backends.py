"""The backends an audit run replays on: opened with the run's timeout, retries and URL,
paced per backend, closed when the run ends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from ledger.audit.plan import AuditOptions
from ledger.backends import AsyncBackend, RetryPolicy, open_backend
from ledger.backends.base import protocol_of
from ledger.errors import BackendError

log = logging.getLogger("ledger.audit")

__all__ = ["RateLimiter", "close_all", "open_backend_for"]


class RateLimiter:
    """At most ``rate`` starts per second: each start takes the next free slot."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


def open_backend_for(name: str, options: AuditOptions) -> AsyncBackend:
    """Open backend ``name`` with the run's timeout, retries and URL."""
    extra: dict[str, Any] = {}
    if _protocol(name) == "runware":
        # The auditor needs the bytes, not a URL: one round trip per replay, and no
        # dependence on how long the provider keeps output URLs alive.
        extra["output_type"] = "base64Data"
    return open_backend(
        name,
        options.backend_url,
        timeout=options.timeout,
        retry=RetryPolicy(max_attempts=options.attempts),
        **extra,
    )


def _protocol(name: str) -> str | None:
    try:
        return protocol_of(name)
    except BackendError:
        return None


async def close_all(backends: Mapping[str, AsyncBackend]) -> None:
    for backend in backends.values():
        try:
            await backend.aclose()
        except Exception:  # pragma: no cover - closing is best effort
            log.debug("closing %s failed", backend.name, exc_info=True)
