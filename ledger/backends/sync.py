"""A synchronous face for an async backend, for plain scripts and sync callers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from ledger.backends.base import AsyncBackend, GenerationRequest, GenerationResult
from ledger.core.records import Record
from ledger.errors import BackendError, UsageError

T = TypeVar("T")

__all__ = ["SyncBackend"]


class SyncBackend:
    """A synchronous face for an async backend.

    The backend runs on a private event loop in a daemon thread, so this works from
    plain scripts and from code that already runs inside an event loop.
    """

    def __init__(self, backend: AsyncBackend) -> None:
        self.backend = backend
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"seedledger-{backend.name}", daemon=True
        )
        self._thread.start()
        self._closed = False

    @property
    def name(self) -> str:
        return self.backend.name

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run one coroutine on the backend's loop and wait for it."""
        if self._closed:
            coroutine.close()
            raise UsageError("this backend is closed")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def call(self, method: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        async def _call() -> T:
            return await method(*args, **kwargs)

        return self.run(_call())

    def generate(self, request: GenerationRequest) -> GenerationResult:
        return self.run(self.backend.generate(request))

    def replay(self, record: Record, **options: Any) -> GenerationResult:
        return self.run(self.backend.replay(record, **options))

    def generate_many(
        self, requests: Sequence[GenerationRequest], *, concurrency: int = 4
    ) -> list[GenerationResult | BackendError]:
        return self.run(self.backend.generate_many(requests, concurrency=concurrency))

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.run(self.backend.aclose())
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def __enter__(self) -> SyncBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SyncBackend({self.backend!r})"
