"""Record over the socket in process: a ``ws_connect`` for ``runware-sdk``.

The new Runware SDK opens its WebSocket through ``RuntimeDependencies(ws_connect=…)``;
hand it :func:`recording_ws_connect` and every task it sends and every frame it
receives goes through the same pairing as the proxy's relay (``ws_pairing.py``), with
no proxy to run::

    from runware import Runware, RuntimeDependencies
    from ledger.capture.ws_hook import recording_ws_connect

    deps = RuntimeDependencies(ws_connect=recording_ws_connect(db="seedledger.db"))
    client = Runware(api_key=KEY, dependencies=deps)

The connection handed back is the `websockets` connection itself behind a thin wrapper
that sees ``send``/``recv``/iteration; everything else (``close``, ``ping``, state) is
the real connection's. A server frame is spooled before the SDK reads it.
"""

from __future__ import annotations

import atexit
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from ledger.capture.api import default_recorder
from ledger.capture.recorder import Recorder
from ledger.capture.ws_pairing import SocketPairing


class RecordingConnection:
    """A `websockets` client connection whose text frames are recorded both ways."""

    def __init__(self, connection: ClientConnection, pairing: SocketPairing) -> None:
        self._connection = connection
        self._pairing = pairing

    async def send(self, message: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(message, str):
            self._pairing.client_frame(message)
        await self._connection.send(message, *args, **kwargs)

    async def recv(self, *args: Any, **kwargs: Any) -> Any:
        message = await self._connection.recv(*args, **kwargs)
        if isinstance(message, str):
            await self._pairing.server_frame(message)
        return message

    async def __aiter__(self) -> AsyncIterator[Any]:
        async for message in self._connection:
            if isinstance(message, str):
                await self._pairing.server_frame(message)
            yield message

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


def recording_ws_connect(
    recorder: Recorder | None = None,
    *,
    db: str | None = None,
    spool: str | None = None,
    connect_options: Mapping[str, Any] | None = None,
) -> Callable[[str], Awaitable[RecordingConnection]]:
    """A ``ws_connect`` factory for ``RuntimeDependencies``.

    Records through ``recorder``; or, with ``db``/``spool``, through a new Recorder that
    lands what it holds at interpreter exit; else through the process-wide one.
    ``connect_options`` go to ``websockets.connect`` (no message size limit unless given).
    """
    if recorder is None and (db is not None or spool is not None):
        recorder = Recorder(spool, db)
        atexit.register(recorder.close)
    options = {"max_size": None, **(connect_options or {})}

    async def ws_connect(url: str) -> RecordingConnection:
        connection = await connect(url, **options)
        return RecordingConnection(connection, SocketPairing(recorder or default_recorder()))

    return ws_connect
