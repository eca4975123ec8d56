"""httpx transports that record Runware generations without changing a byte.

``httpx.Client(transport=RecordingTransport(httpx.HTTPTransport(), recorder=...))`` or
simply ``recording_client(spool=..., db=...)``. The wrapped transport's response is
returned as is (same object: status, headers, extensions); only its byte stream is
wrapped by a tee that copies the chunks as they pass. When the body is complete the
request and response are paired and spooled before the last read returns to the
caller, so a response the caller has fully read is in the spool. A body that cannot
be parsed is logged (without secrets) and counted; the caller never sees an error
from that. Records that nothing can keep (the spool is full and, with the default
``on_spool_full="direct"``, the ledger cannot be written either) raise
:class:`~ledger.capture.spool.SpoolFullError` from the read that completes the body.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx

from ledger.capture.pairing import CaptureParseError, secrets_from_headers
from ledger.capture.recorder import Recorder

log = logging.getLogger(__name__)

#: Bodies larger than this are passed through but not recorded (logged, counted).
MAX_CAPTURE_BYTES = 256 * 1024 * 1024


class _Buffer:
    __slots__ = ("chunks", "overflow", "size")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.overflow = False

    def add(self, chunk: bytes) -> None:
        if self.overflow:
            return
        self.size += len(chunk)
        if self.size > MAX_CAPTURE_BYTES:
            self.overflow = True
            self.chunks.clear()
        else:
            self.chunks.append(chunk)

    def value(self) -> bytes:
        return b"".join(self.chunks)


def _already_read(response: httpx.Response, buffer: _Buffer) -> bool:
    try:
        content = response.content
    except httpx.ResponseNotRead:
        return False
    # Raw bytes as sent: re-encoding is not possible, so a read body is taken decoded.
    buffer.add(content)
    return True


class _SyncTee(httpx.SyncByteStream):
    def __init__(self, inner: Any, buffer: _Buffer, on_complete: Callable[[], None] | None = None) -> None:
        self._inner = inner
        self._buffer = buffer
        self._on_complete = on_complete

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._buffer.add(chunk)
            yield chunk
        if self._on_complete is not None:
            done, self._on_complete = self._on_complete, None
            done()

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


class _AsyncTee(httpx.AsyncByteStream):
    def __init__(self, inner: Any, buffer: _Buffer, on_complete: Callable[[], None] | None = None) -> None:
        self._inner = inner
        self._buffer = buffer
        self._on_complete = on_complete

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._buffer.add(chunk)
            yield chunk
        if self._on_complete is not None:
            done, self._on_complete = self._on_complete, None
            done()

    async def aclose(self) -> None:
        aclose = getattr(self._inner, "aclose", None)
        if aclose is not None:
            await aclose()


class _Base:
    def __init__(self, recorder: Recorder | None, owns: bool, recorder_options: dict[str, Any]) -> None:
        if recorder is None:
            recorder = Recorder(**recorder_options)
            owns = True
        self.recorder = recorder
        self._owns_recorder = owns

    @staticmethod
    def _wants(request: httpx.Request) -> bool:
        return request.method == "POST"

    def _request_body(self, request: httpx.Request, *, is_async: bool) -> _Buffer:
        buffer = _Buffer()
        try:
            buffer.add(request.content)
        except httpx.RequestNotRead:
            # A streamed request body: copy it as the wrapped transport sends it.
            request.stream = (_AsyncTee if is_async else _SyncTee)(request.stream, buffer)
        return buffer

    def _completer(
        self, request: httpx.Request, response: httpx.Response, req: _Buffer, resp: _Buffer, *, decoded: bool
    ) -> Callable[[], None]:
        def complete() -> None:
            if req.overflow or resp.overflow:
                self.recorder.note_failure(CaptureParseError(f"body larger than {MAX_CAPTURE_BYTES} bytes"))
                return
            self.recorder.record_exchange(
                req.value(),
                resp.value(),
                content_encoding=None if decoded else response.headers.get("content-encoding"),
                known_secrets=secrets_from_headers(request.headers.multi_items()),
                strict=True,  # a record nothing could keep fails the read: never a silent loss
            )

        return complete

    def _close_recorder(self) -> None:
        if self._owns_recorder:
            self.recorder.close()


class RecordingTransport(_Base, httpx.BaseTransport):
    """Wraps any sync httpx transport and records the Runware tasks that pass."""

    def __init__(
        self,
        wrapped: httpx.BaseTransport | None = None,
        *,
        recorder: Recorder | None = None,
        **recorder_options: Any,
    ) -> None:
        _Base.__init__(self, recorder, False, recorder_options)
        self.wrapped = wrapped or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not self._wants(request):
            return self.wrapped.handle_request(request)
        req = self._request_body(request, is_async=False)
        response = self.wrapped.handle_request(request)
        resp = _Buffer()
        read = _already_read(response, resp)
        complete = self._completer(request, response, req, resp, decoded=read)
        if read:
            complete()  # e.g. MockTransport: the body was read before we saw it
        else:
            response.stream = _SyncTee(response.stream, resp, complete)
        return response

    def close(self) -> None:
        try:
            self.wrapped.close()
        finally:
            self._close_recorder()


class AsyncRecordingTransport(_Base, httpx.AsyncBaseTransport):
    """Wraps any async httpx transport and records the Runware tasks that pass.

    Recording runs on the event loop after the body completes (a JSON parse and one
    append to the page cache); fsync happens on the spool's own thread."""

    def __init__(
        self,
        wrapped: httpx.AsyncBaseTransport | None = None,
        *,
        recorder: Recorder | None = None,
        **recorder_options: Any,
    ) -> None:
        _Base.__init__(self, recorder, False, recorder_options)
        self.wrapped = wrapped or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self._wants(request):
            return await self.wrapped.handle_async_request(request)
        req = self._request_body(request, is_async=True)
        response = await self.wrapped.handle_async_request(request)
        resp = _Buffer()
        read = _already_read(response, resp)
        complete = self._completer(request, response, req, resp, decoded=read)
        if read:
            complete()
        else:
            response.stream = _AsyncTee(response.stream, resp, complete)
        return response

    async def aclose(self) -> None:
        try:
            await self.wrapped.aclose()
        finally:
            self._close_recorder()


def recording_client(
    *,
    spool: str | None = None,
    db: str | None = None,
    recorder: Recorder | None = None,
    transport: httpx.BaseTransport | None = None,
    recorder_options: dict[str, Any] | None = None,
    **client_options: Any,
) -> httpx.Client:
    """An ``httpx.Client`` that records every Runware generation it makes.

    ``recording_client(spool="/var/spool/seedledger", db="postgresql://…",
    base_url="https://api.runware.ai")``. Closing the client drains the spool into the
    ledger (bounded wait; anything left lands on the next start).
    """
    # Without a recorder, the transport makes one and owns it (closed with the client).
    options = {} if recorder is not None else {"spool": spool, "db": db, **(recorder_options or {})}
    owned = RecordingTransport(transport, recorder=recorder, **options)
    return httpx.Client(transport=owned, **client_options)


def async_recording_client(
    *,
    spool: str | None = None,
    db: str | None = None,
    recorder: Recorder | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    recorder_options: dict[str, Any] | None = None,
    **client_options: Any,
) -> httpx.AsyncClient:
    """The async twin of :func:`recording_client`."""
    # Without a recorder, the transport makes one and owns it (closed with the client).
    options = {} if recorder is not None else {"spool": spool, "db": db, **(recorder_options or {})}
    owned = AsyncRecordingTransport(transport, recorder=recorder, **options)
    return httpx.AsyncClient(transport=owned, **client_options)
