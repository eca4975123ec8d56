"""The reference server's WebSocket API on ``/v1`` (Runware's default transport).

Same semantics as the REST app, over one long-lived socket (reference/runware.md):

- The first message must be ``[{"taskType": "authentication", "apiKey": ...}]``; the
  reply is ``{"data": [{"taskType": "authentication", "connectionSessionUUID": ...}]}``.
  A bad key gets ``{"errors": [{"code": "invalidApiKey", "taskType": "authentication"}]}``
  and the socket stays open for another attempt, as Runware's does.
- Each later text frame is a JSON array of tasks. Every task runs concurrently; its
  results (or its per-task errors) are sent as one frame when it finishes, or one frame
  per result with ``ws_split_results``. ``{"taskType": "ping", "ping": true}`` is
  answered with ``pong: true``. Async tasks are acknowledged and delivered through
  ``getResponse`` polled over the same socket.
- ``ws_idle_seconds`` (120 s) without a client message closes the socket (code 1000).
- Results (and errors) that could not be delivered because the socket went away are
  buffered for ``ws_buffer_seconds`` (120 s): a client that authenticates again with its
  ``connectionSessionUUID`` receives them, in order, right after the auth reply.
  Acknowledgements, "processing" answers and pongs are not buffered.
- ``legacy_errors`` sends errors in the older ``error`` field (one object, or a list),
  to exercise clients and recorders that must accept every shape.

API keys are checked, never logged, echoed or stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ledger.backends.reference.engine import TaskEngine
from ledger.backends.reference.knobs import error_envelope
from ledger.backends.reference.params import error_item

log = logging.getLogger(__name__)

MAX_BUFFERED_FRAMES = 10_000  # per session; the oldest are dropped beyond it


@dataclass
class _Session:
    uuid: str
    socket: WebSocket | None = None
    buffer: deque[str] = field(default_factory=deque)
    detached_at: float | None = None


@dataclass
class WebSocketStats:
    connections: int = 0
    tasks_received: int = 0
    resumed: int = 0
    buffered_frames: int = 0
    replayed_frames: int = 0
    idle_closed: int = 0


class WebSocketApp:
    """Sessions and the ``/v1`` socket endpoint over one :class:`TaskEngine`."""

    def __init__(self, engine: TaskEngine, public_url: Callable[[], str | None]) -> None:
        self.engine = engine
        self.public_url = public_url
        self.stats = WebSocketStats()
        self._sessions: dict[str, _Session] = {}

    def routes(self) -> list[WebSocketRoute]:
        return [WebSocketRoute("/v1", self.endpoint), WebSocketRoute("/", self.endpoint)]

    # -- sessions ------------------------------------------------------------------------

    def _expire(self) -> None:
        horizon = time.monotonic() - self.engine.knobs.ws_buffer_seconds
        old = [
            key
            for key, s in self._sessions.items()
            if s.socket is None and s.detached_at is not None and s.detached_at < horizon
        ]
        for key in old:
            del self._sessions[key]

    async def _deliver(self, session: _Session, frame: str, *, keep: bool = True) -> None:
        """Send a frame on the session's socket; without one, buffer it if ``keep``."""
        socket = session.socket
        if socket is not None:
            try:
                await socket.send_text(frame)
                return
            except Exception:  # the socket went away under us: keep the frame for a resume
                if session.socket is socket:
                    session.socket, session.detached_at = None, time.monotonic()
        if not keep:
            return
        session.buffer.append(frame)
        self.stats.buffered_frames += 1
        while len(session.buffer) > MAX_BUFFERED_FRAMES:
            session.buffer.popleft()

    # -- the endpoint --------------------------------------------------------------------

    async def endpoint(self, websocket: WebSocket) -> None:
        await websocket.accept()
        self.stats.connections += 1
        base = self.public_url() or _http_base(websocket)
        session: _Session | None = None
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                try:
                    text = await asyncio.wait_for(
                        websocket.receive_text(), timeout=self.engine.knobs.ws_idle_seconds
                    )
                except TimeoutError:
                    self.stats.idle_closed += 1
                    await websocket.close(code=1000, reason="idle timeout")
                    return
                tasks = _parse(text)
                if tasks is None:
                    await websocket.send_text(
                        _frame([], [error_item("invalidPayload", "a message must be a JSON array of tasks")])
                    )
                    continue
                auth = [t for t in tasks if t.get("taskType") == "authentication"]
                rest = [t for t in tasks if t.get("taskType") != "authentication"]
                if auth:
                    session = await self._authenticate(websocket, auth[-1], session)
                if session is None:
                    if rest:
                        await websocket.send_text(
                            _frame(
                                [],
                                [
                                    error_item(
                                        "unauthenticated",
                                        "authenticate first: send an authentication task with your apiKey",
                                        task=t,
                                    )
                                    for t in rest
                                ],
                            )
                        )
                    continue
                self.stats.tasks_received += len(rest)
                for task in rest:
                    job = asyncio.ensure_future(self._run(session, task, base))
                    running.add(job)
                    job.add_done_callback(running.discard)
        except (WebSocketDisconnect, RuntimeError):
            pass  # the client went away; running tasks still finish and buffer their results
        finally:
            if session is not None and session.socket is websocket:
                session.socket, session.detached_at = None, time.monotonic()

    async def _authenticate(
        self, websocket: WebSocket, task: dict[str, Any], current: _Session | None
    ) -> _Session | None:
        self.engine.stats.requests += 1
        if not self.engine.authorized([task.get("apiKey")]):
            self.engine.stats.unauthorized += 1
            error = error_item("invalidApiKey", "missing or invalid API key", task=task)
            error["taskType"] = "authentication"
            await websocket.send_text(self._errors_frame([error]))
            return current
        self._expire()
        wanted = task.get("connectionSessionUUID")
        session = self._sessions.get(wanted) if isinstance(wanted, str) else None
        if session is None:
            session = _Session(str(uuid.uuid4()))
            self._sessions[session.uuid] = session
        else:
            self.stats.resumed += 1
        session.socket, session.detached_at = websocket, None
        reply = {"taskType": "authentication", "connectionSessionUUID": session.uuid}
        await websocket.send_text(json.dumps({"data": [reply]}, separators=(",", ":")))
        while session.buffer and session.socket is websocket:
            frame = session.buffer.popleft()
            self.stats.replayed_frames += 1
            await self._deliver(session, frame)
        return session

    async def _run(self, session: _Session, task: dict[str, Any], base: str) -> None:
        knobs = self.engine.knobs
        if task.get("taskType") == "ping":
            await self._deliver(session, _frame([{"taskType": "ping", "pong": True}], []), keep=False)
            return
        if knobs.latency_ms:
            await asyncio.sleep(knobs.latency_ms / 1000)
        self.engine.sync_revision()
        try:
            results, errors = await self.engine.run_task(task, base)
        except Exception as exc:  # never kill the socket over one task
            log.warning("reference server: websocket task failed: %s", type(exc).__name__)
            results, errors = [], [error_item("internalServerError", "the task failed", task=task)]
        if errors:
            await self._deliver(session, self._errors_frame(errors))
        if knobs.ws_split_results and len(results) > 1:
            for result in results:
                await self._deliver(session, _frame([result], []))
        elif results:
            # Acknowledgements and "processing" answers are not results: a resumed client
            # re-sends its async tasks (answered conflictTaskUUID) and polls again.
            await self._deliver(session, _frame(results, []), keep=any(map(_is_result, results)))

    def _errors_frame(self, errors: list[dict[str, Any]]) -> str:
        if self.engine.knobs.legacy_errors:
            return json.dumps(error_envelope(self.engine.knobs, errors), separators=(",", ":"))
        return _frame([], errors)


def _is_result(item: dict[str, Any]) -> bool:
    return item.get("status") != "processing" and bool(set(item) - {"taskType", "taskUUID", "status"})


def _frame(data: list[dict[str, Any]], errors: list[dict[str, Any]]) -> str:
    envelope: dict[str, Any] = {}
    if data or not errors:
        envelope["data"] = data
    if errors:
        envelope["errors"] = errors
    return json.dumps(envelope, separators=(",", ":"))


def _parse(text: str) -> list[dict[str, Any]] | None:
    with contextlib.suppress(ValueError):
        value = json.loads(text)
        if isinstance(value, dict):
            value = [value]
        if isinstance(value, list) and value and all(isinstance(t, dict) for t in value):
            return value
    return None


def _http_base(websocket: WebSocket) -> str:
    """``http(s)://host:port`` of the socket's own server, for output URLs."""
    scheme = "https" if websocket.url.scheme == "wss" else "http"
    host = websocket.headers.get("host") or f"{websocket.url.hostname}:{websocket.url.port}"
    return f"{scheme}://{host}"
