"""Recording one WebSocket conversation with Runware: client frames → pending tasks,
server frames → records.

The pairing itself is the REST path's (:class:`~ledger.capture.pairing.Pairer`): a
client frame's inference tasks become *pending* (journaled in the spool directory, so
keyed by task, not by socket: a result delivered on a resumed session, a new socket or
after a proxy restart still pairs); each server frame's results and task-scoped errors
are paired with them by ``taskUUID``. One frame may carry several tasks' items, one
task's results may arrive over several frames, and async tasks are acknowledged first
and delivered by ``getResponse``: all of that is what pending tasks already handle. A
result seen again (a poll answered twice, buffered results replayed on resume) lands
once, by its idempotency key.

The ``authentication`` task's ``apiKey`` is only ever held here, in memory, to cut it
out of anything recorded or logged.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from ledger.capture.pairing import secrets_from_headers
from ledger.capture.recorder import Recorder

_OFFLOAD_BYTES = 256 * 1024  # bigger server frames are paired on a worker thread


@dataclass
class SocketCounters:
    """WebSocket counts for the proxy's health endpoint (updated on its event loop)."""

    open_sockets: int = 0
    sockets_opened: int = 0
    frames_from_clients: int = 0  # relayed client -> upstream
    frames_to_clients: int = 0  # relayed upstream -> client
    tasks_submitted: int = 0  # inference tasks made pending
    tasks_paired: int = 0  # of those, fully delivered (every output, or an error)
    records_queued: int = 0  # records spooled from server frames
    resumes: int = 0  # reconnects whose connectionSessionUUID the upstream took back
    upstream_errors: int = 0  # upstream refused, unreachable or lost mid-conversation

    def snapshot(self) -> dict[str, int]:
        return asdict(self)


class SocketPairing:
    """The recording side of one relayed WebSocket connection."""

    def __init__(
        self,
        recorder: Recorder,
        headers: Iterable[tuple[str, str]] = (),
        counters: SocketCounters | None = None,
    ) -> None:
        self.recorder = recorder
        self._secrets: list[str] = list(secrets_from_headers(headers))
        self.session: str | None = None
        self._resuming: str | None = None  # the session an authentication asked back
        self.recorded = 0
        self.counters = counters or SocketCounters()

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(self._secrets)

    def client_frame(self, text: str) -> None:
        """Before a client frame is forwarded: learn its key, make its tasks pending."""
        if "taskType" not in text:
            return
        tasks = _tasks(text)
        if not tasks:
            return
        for task in tasks:
            if task.get("taskType") == "authentication":
                key = task.get("apiKey")
                if isinstance(key, str) and len(key) >= 4 and key not in self._secrets:
                    self._secrets.append(key)
                wanted = task.get("connectionSessionUUID")
                self._resuming = wanted if isinstance(wanted, str) and wanted else None
        self.counters.tasks_submitted += self.recorder.record_socket_tasks(tasks, known_secrets=self.secrets)

    async def server_frame(self, text: str) -> int:
        """Before a server frame is forwarded: spool the records it completes."""
        if "taskUUID" not in text:
            self._note_session(text)
            return 0
        body = text.encode("utf-8")
        if len(body) > _OFFLOAD_BYTES:
            done = await asyncio.to_thread(
                self.recorder.record_socket_frame, body, known_secrets=self.secrets
            )
        else:
            done = self.recorder.record_socket_frame(body, known_secrets=self.secrets)
        self.recorded += done.records
        self.counters.records_queued += done.records
        self.counters.tasks_paired += done.tasks
        return done.records

    def _note_session(self, text: str) -> None:
        if "connectionSessionUUID" not in text:
            return
        try:
            value = json.loads(text)
        except ValueError:
            return
        for item in value.get("data") or [] if isinstance(value, dict) else []:
            if isinstance(item, dict) and isinstance(item.get("connectionSessionUUID"), str):
                self.session = item["connectionSessionUUID"]
                if self.session == self._resuming:
                    self.counters.resumes += 1
                self._resuming = None


def _tasks(text: str) -> list[dict[str, Any]] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return None
    return [t for t in value if isinstance(t, dict)]
