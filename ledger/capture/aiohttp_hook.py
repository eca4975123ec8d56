"""Record REST calls in process: an aiohttp session for ``runware-sdk``'s REST transport.

``runware-sdk`` with ``transport="rest"`` posts its tasks through the aiohttp session
given as ``RuntimeDependencies(session=…)`` (it never closes a session it was given).
:func:`recording_session` is an ordinary ``aiohttp.ClientSession`` with one client
middleware, :func:`recording_middleware`, that pairs each task request with its
response through the same code as the httpx transport and the proxy (``pairing.py``):
``getResponse`` polls of async tasks included, one record per output, the
``Authorization`` key cut out of everything kept::

    recorder = Recorder(spool, db)
    async with recording_session(recorder) as session:
        deps = RuntimeDependencies(session=session, ws_connect=recording_ws_connect(recorder))
        async with Runware(api_key=KEY, transport="rest", dependencies=deps) as client: ...

Only POSTs whose body is a Runware task list are read; anything else the SDK sends
through the session (schema and registry GETs, serverless calls, server-sent event
streams) passes untouched. A recorded response is read whole before the SDK sees it
(aiohttp keeps the bytes: the SDK's ``response.json()`` reads the same ones), and it is
in the spool by then. Bodies are taken as aiohttp decoded them (``auto_decompress``,
on by default, must stay on in a session this middleware is added to).
"""

from __future__ import annotations

import asyncio
import atexit
from typing import Any

import aiohttp
from aiohttp.client_middlewares import ClientHandlerType, ClientMiddlewareType
from aiohttp.payload import BytesPayload

from ledger.capture.api import default_recorder
from ledger.capture.pairing import CaptureParseError, parse_tasks, secrets_from_headers
from ledger.capture.recorder import Recorder
from ledger.capture.transport import MAX_CAPTURE_BYTES
from ledger.core.runware import is_inference_task

_OFFLOAD_BYTES = 256 * 1024  # bigger bodies are paired on a worker thread


def recording_middleware(recorder: Recorder | None = None) -> ClientMiddlewareType:
    """An aiohttp client middleware recording through ``recorder`` (default: the
    process-wide one)."""

    async def middleware(
        request: aiohttp.ClientRequest, handler: ClientHandlerType
    ) -> aiohttp.ClientResponse:
        body = await _task_body(request)
        if body is None or _streaming(request.headers.get("Accept")):
            return await handler(request)
        response = await handler(request)
        if _streaming(response.headers.get("Content-Type")):
            return response
        if (response.content_length or 0) > MAX_CAPTURE_BYTES:
            target = recorder or default_recorder()
            target.note_failure(CaptureParseError(f"body larger than {MAX_CAPTURE_BYTES} bytes"))
            return response
        raw = await response.read()  # kept by the response: the SDK reads these bytes
        target = recorder or default_recorder()
        secrets = secrets_from_headers(request.headers.items())

        def record() -> int:
            # strict: a record that nothing could keep fails the call, never a silent loss
            return target.record_exchange(body, raw, known_secrets=secrets, strict=True)

        if len(raw) + len(body) > _OFFLOAD_BYTES:
            await asyncio.to_thread(record)
        else:
            record()
        return response

    return middleware


def recording_session(
    recorder: Recorder | None = None,
    *,
    db: str | None = None,
    spool: str | None = None,
    **session_options: Any,
) -> aiohttp.ClientSession:
    """An ``aiohttp.ClientSession`` that records the Runware tasks it posts; create it
    inside the event loop that uses it, and close it (``async with``) when done.

    Records through ``recorder``; or, with ``db``/``spool``, through a new Recorder that
    lands what it holds at interpreter exit; else through the process-wide one.
    ``session_options`` go to ``aiohttp.ClientSession`` (its own ``middlewares`` run
    after this one's, so they see what is sent and received as recorded)."""
    if session_options.get("auto_decompress") is False:
        raise ValueError("recording_session needs auto_decompress on: bodies are recorded decoded")
    if recorder is None and (db is not None or spool is not None):
        recorder = Recorder(spool, db)
        atexit.register(recorder.close)
    extra = tuple(session_options.pop("middlewares", ()) or ())
    return aiohttp.ClientSession(middlewares=(recording_middleware(recorder), *extra), **session_options)


async def _task_body(request: aiohttp.ClientRequest) -> bytes | None:
    """The request's bytes when it is a POST of Runware tasks worth pairing (bodies
    held in memory only: a streamed upload is never read here)."""
    if request.method != "POST" or not isinstance(request.body, BytesPayload):
        return None
    body = await request.body.as_bytes()
    tasks = parse_tasks(body)
    if not tasks or not any(is_inference_task(t) or t.get("taskType") == "getResponse" for t in tasks):
        return None
    return body


def _streaming(content_type: str | None) -> bool:
    return bool(content_type) and "text/event-stream" in str(content_type).lower()
