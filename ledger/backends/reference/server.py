"""The bundled reference server: Runware's REST and WebSocket APIs in front of the reference generator.

A **reference backend for demos and tests, not a model**: the images are procedural
(see :mod:`ledger.backends.reference.generator`), and every answer says so in
``GET /health``. It lets the demo and the test suite run end to end with no API key.

Protocol (the parts of Runware's REST API seedledger uses, reference/runware.md):

- ``POST /v1`` (and ``POST /``): a JSON array of tasks; answers ``{"data": [...]}``
  and/or ``{"errors": [...]}``. Errors are per task: an unknown model fails its task
  only and the others succeed (HTTP 200 when anything succeeded, 400 when nothing did).
- Auth: ``Authorization: Bearer <key>`` or an ``{"taskType": "authentication",
  "apiKey": ...}`` task. Without ``api_key`` configured any non-empty key is
  accepted, and so is a request with no key at all; an empty key is refused. With
  ``api_key`` configured, the key must match, else HTTP 401 in the error envelope.
  Keys are never logged, echoed or stored.
- ``imageInference``: ``outputType`` ``URL`` (default; served at
  ``GET /outputs/<uuid>.<ext>``), ``base64Data`` or ``dataURI``; ``outputFormat``
  ``JPG`` (default, as Runware), ``PNG`` or ``WEBP``; ``numberResults`` 1–20 with a
  distinct seed per result; ``includeCost``; ``deliveryMethod`` ``sync``/``async``.
- ``videoInference`` (async by default), ``audioInference`` and ``3dInference`` (sync
  by default): an H.264 MP4, a WAV (``outputFormat: MP3`` an MP3) and a GLB (or
  ``OBJ``/``PLY``/``STL``) in ``outputs.files`` (generators: ``video``, ``audio``,
  ``mesh`` modules). Async tasks are acknowledged with
  ``{"taskType", "taskUUID"}``; ``getResponse`` answers ``status: "processing"`` for
  the first ``async_polls`` polls and until generation has finished, then the
  results with ``status: "success"``.
- ``getTaskDetails``: the original task (secrets removed) and its response.
- ``ping`` → ``pong``; ``GET /health``.
- WebSocket on ``/v1`` (and ``/``): the same tasks over one socket, with
  authentication sessions, idle close and buffered results on resume (``ws.py``).

The package is split by concept: ``engine.py`` runs tasks (shared by both transports),
``rest.py`` and ``ws.py`` are the two front ends, ``knobs.py`` and ``params.py`` hold
the knobs and the parameter checks; this module composes them and runs the server.

Knobs (constructor keywords and CLI flags; :attr:`ReferenceServer.knobs` may be changed
while running): latency, error rate (HTTP 500), 429 rate (with ``Retry-After``), stall
rate (sleeps past a client timeout), async task failures (``timeoutProvider``), model
revision, result shuffling, required API key, and a seed for the knobs' random draws.

For tests and the demo, run it in-process on an ephemeral loopback port::

    with ReferenceServer.running(rate_limit_rate=0.5, knob_seed=1) as server:
        backend = open_backend("reference", url=server.url)   # server.url ends in /v1
        ...
        server.stats.rate_limited                             # how many 429s were sent
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from starlette.applications import Starlette

from ledger.backends.reference.engine import TaskEngine
from ledger.backends.reference.knobs import ServerKnobs, ServerStats
from ledger.backends.reference.rest import SERVER_NAME, RestApp
from ledger.backends.reference.ws import WebSocketApp
from ledger.core.models import ModelCatalog
from ledger.core.redaction import redact_url
from ledger.errors import BackendError, InvalidInputError

log = logging.getLogger(__name__)


class ReferenceServer:
    """The reference server's ASGI app, state and knobs; see the module docstring.

    Keyword arguments are the fields of :class:`ServerKnobs`, plus ``api_key``
    (require this key), ``catalog`` (a :class:`ModelCatalog`), ``public_url`` (the base
    URL written into ``imageURL``; default: from the request's Host), ``workers``
    (generator threads) and ``max_outputs`` (outputs kept for download, oldest evicted).
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        catalog: ModelCatalog | None = None,
        public_url: str | None = None,
        workers: int | None = None,
        max_outputs: int = 2000,
        max_output_bytes: int = 512 * 1024 * 1024,
        **knobs: Any,
    ) -> None:
        unknown = set(knobs) - set(ServerKnobs.__dataclass_fields__)
        if unknown:
            raise InvalidInputError(f"unknown reference server option(s): {', '.join(sorted(unknown))}")
        self.knobs = ServerKnobs(**knobs)
        self.knobs.check()
        if api_key is not None and not api_key:
            raise InvalidInputError("api_key must be non-empty when given")
        self.engine = TaskEngine(
            self.knobs,
            api_key=api_key,
            catalog=catalog,
            workers=workers,
            max_outputs=max_outputs,
            max_output_bytes=max_output_bytes,
        )
        self.generator = self.engine.generator
        self.stats: ServerStats = self.engine.stats
        self.public_url = public_url.rstrip("/") if public_url else None
        self._base_url: str | None = None
        self.rest = RestApp(self.engine, lambda: self.public_url)
        self.ws = WebSocketApp(self.engine, lambda: self.public_url)
        self.app = Starlette(routes=[*self.rest.routes(), *self.ws.routes()])

    def __repr__(self) -> str:  # never shows the key
        return f"ReferenceServer(url={self._base_url!r}, knobs={self.knobs!r})"

    # -- in-process running ------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """``http://host:port`` of a server started with :meth:`running`/:meth:`serve`."""
        if self._base_url is None:
            raise BackendError("the reference server is not running in-process")
        return self._base_url

    @property
    def url(self) -> str:
        """The API endpoint, ``http://host:port/v1``: give this to the Runware adapter."""
        return self.base_url + "/v1"

    @property
    def ws_url(self) -> str:
        """The WebSocket endpoint, ``ws://host:port/v1``: give this to a Runware SDK."""
        return "ws" + self.url[len("http") :]

    def set_model_revision(self, revision: int | str | dict[str, int | str] | None) -> None:
        """Silently "update" models while running (the demo's drift scenario)."""
        self.knobs.model_revision = revision
        self.generator.model_revision = revision

    @classmethod
    @contextlib.contextmanager
    def running(cls, host: str = "127.0.0.1", port: int = 0, **options: Any) -> Iterator[ReferenceServer]:
        """Start a server in a background thread; stop it cleanly on exit.

        ``port=0`` picks a free ephemeral port; read it back from ``server.url``.
        Options are the constructor's keywords.
        """
        server = cls(**options)
        with server.serve(host, port):
            yield server

    @contextlib.contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[ReferenceServer]:
        import uvicorn

        sock = _bind(host, port)
        bound = sock.getsockname()[1]
        shown = _host_in_url(host)
        config = uvicorn.Config(
            self.app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="websockets-sansio",
            ws_max_size=_WS_MAX_SIZE,
            timeout_graceful_shutdown=2,
            backlog=2048,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"reference-server-{bound}", daemon=True
        )
        self.engine.closing = False
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(5)
                sock.close()
                raise BackendError(f"reference server did not start on {host}:{bound}")
            time.sleep(0.01)
        self._base_url = f"http://{shown}:{bound}"
        try:
            yield self
        finally:
            self.engine.closing = True  # ends stalled requests early
            server.should_exit = True
            thread.join(15)
            sock.close()
            self._base_url = None
            self.close()

    def close(self) -> None:
        """Release the generator threads (the app cannot generate afterwards)."""
        self.engine.close()


def serve_forever(
    host: str = "127.0.0.1",
    port: int = 8787,
    *,
    announce: Callable[[str], None] | None = None,
    **options: Any,
) -> None:
    """Run the server in the foreground (the CLI's ``reference-server``) until interrupted.

    ``announce`` receives the endpoint URL (``http://host:port/v1``) once the port is bound.
    """
    import uvicorn

    server = ReferenceServer(**options)
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    sock.listen(2048)  # connectable from the announcement on (uvicorn accepts once it runs)
    if announce is not None:
        announce(f"http://{_host_in_url(host)}:{bound}/v1")
    config = uvicorn.Config(
        server.app,
        log_level="info",
        lifespan="off",
        ws="websockets-sansio",
        ws_max_size=_WS_MAX_SIZE,
        timeout_graceful_shutdown=2,
        backlog=2048,
    )
    access = logging.getLogger("uvicorn.access")
    access.addFilter(_redact_access)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        access.removeFilter(_redact_access)
        sock.close()
        server.close()


def _host_in_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections; without it
    # every response waits ~40 ms for a delayed ACK (headers and body are separate writes).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise BackendError(
            f"reference server cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    return sock


# Runware's messages have no size limit; 1 GiB keeps a bound on one frame.
_WS_MAX_SIZE = 1 << 30


def _redact_access(record: logging.LogRecord) -> bool:
    """uvicorn's access line shows the request target: cut secret query values
    (``?apiKey=``, tokens) out of it, as everywhere else."""
    args = record.args
    if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
        target = redact_url("http://h" + args[2])[len("http://h") :]
        record.args = (*args[:2], target, *args[3:])
    return True


__all__ = ["SERVER_NAME", "ReferenceServer", "ServerKnobs", "ServerStats", "serve_forever"]
