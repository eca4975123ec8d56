"""The bundled reference server: Runware's REST API in front of the reference generator.

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

import asyncio
import base64
import contextlib
import hmac
import json
import logging
import math
import os
import random
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ledger.backends.reference.generator import SOFTWARE_TAG, ImageRequest, Output, ReferenceGenerator
from ledger.backends.reference.media import mesh_result, render_media
from ledger.core.models import ModelCatalog
from ledger.core.redaction import redact
from ledger.core.seeds import SEED_RANGES
from ledger.errors import BackendError, InvalidInputError

log = logging.getLogger(__name__)

SERVER_NAME: Final = "seedledger-reference"
_SEED_RANGE: Final = SEED_RANGES["reference"]
_OUTPUT_TYPES: Final = {"url": "URL", "base64data": "base64Data", "datauri": "dataURI"}
_INFERENCE: Final = {
    "imageInference": "image",
    "videoInference": "video",
    "audioInference": "audio",
    "3dInference": "3d",
}


@dataclass
class ServerKnobs:
    """Fault injection and behaviour switches. Rates are probabilities per HTTP request."""

    latency_ms: float = 0.0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    #: Seconds sent in ``Retry-After`` with each 429 (whole seconds, as HTTP wants).
    retry_after: int = 1
    stall_rate: float = 0.0
    #: How long a stalled request sleeps before answering 504 (should exceed the client timeout).
    stall_seconds: float = 30.0
    #: Silent model update: None/0 = original; a value (or {AIR: value, "*": value}) moves outputs.
    model_revision: int | str | dict[str, int | str] | None = None
    #: Return ``data`` items in random order, to exercise matching by ``taskUUID``.
    shuffle_results: bool = False
    #: getResponse polls answered "processing" before results are handed out.
    async_polls: int = 1
    #: Share of async tasks that end in a ``timeoutProvider`` error (``status: "error"``).
    async_error_rate: float = 0.0
    #: Seed for the knobs' random draws (429/500/stall/shuffle); None = unpredictable.
    knob_seed: int | None = None

    def check(self) -> None:
        for name in ("error_rate", "rate_limit_rate", "stall_rate", "async_error_rate"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise InvalidInputError(f"{name} must be between 0 and 1, got {value!r}")
        for name in ("latency_ms", "stall_seconds", "retry_after", "async_polls"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and value >= 0 and math.isfinite(value)):
                raise InvalidInputError(f"{name} must be a non-negative number, got {value!r}")


@dataclass
class ServerStats:
    """Counters, updated on the server's event loop; read them from tests."""

    requests: int = 0
    unauthorized: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    stalled: int = 0
    tasks: int = 0
    task_errors: int = 0
    images: int = 0
    videos: int = 0
    audios: int = 0
    meshes: int = 0
    outputs_served: int = 0


class _TaskError(Exception):
    def __init__(self, code: str, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.parameter = code, message, parameter


@dataclass
class _Job:
    task_type: str
    future: asyncio.Future[tuple[list[dict[str, Any]], list[dict[str, Any]]]]
    polls_left: int


@dataclass
class _Stored:
    data: bytes = field(repr=False)
    content_type: str
    extension: str


def _error(
    code: str,
    message: str,
    *,
    task: Mapping[str, Any] | None = None,
    parameter: str | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if parameter:
        err["parameter"] = parameter
    if task is not None:
        if isinstance(task.get("taskType"), str):
            err["taskType"] = task["taskType"]
        if isinstance(task.get("taskUUID"), str):
            err["taskUUID"] = task["taskUUID"]
    if status:
        err["status"] = status
    err["documentation"] = "seedledger reference server: a reference backend for demos and tests, not a model"
    return err


# --- parameter checks -------------------------------------------------------------
def _int(task: Mapping[str, Any], key: str, low: int, high: int, default: int | None) -> int | None:
    value = task.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _TaskError("invalidParameter", f"{key} must be an integer", key)
    if not low <= value <= high:
        raise _TaskError("invalidParameter", f"{key} must be between {low} and {high}", key)
    return value


def _num(task: Mapping[str, Any], key: str, low: float, high: float, default: float) -> float:
    value = task.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _TaskError("invalidParameter", f"{key} must be a number", key)
    if not low <= value <= high:
        raise _TaskError("invalidParameter", f"{key} must be between {low:g} and {high:g}", key)
    return float(value)


def _str(
    task: Mapping[str, Any], key: str, *, required: bool = False, default: str | None = None
) -> str | None:
    value = task.get(key)
    if value is None:
        if required:
            raise _TaskError("missingParameter", f"{key} is required", key)
        return default
    if not isinstance(value, str):
        raise _TaskError("invalidParameter", f"{key} must be a string", key)
    if required and not value.strip():
        raise _TaskError("invalidParameter", f"{key} must not be empty", key)
    return value


def _bool(task: Mapping[str, Any], key: str) -> bool:
    value = task.get(key, False)
    if not isinstance(value, bool):
        raise _TaskError("invalidParameter", f"{key} must be true or false", key)
    return value


def _choice(task: Mapping[str, Any], key: str, choices: Mapping[str, str], default: str) -> str:
    value = _str(task, key, default=default)
    assert value is not None
    canon = choices.get(value.lower())
    if canon is None:
        raise _TaskError("invalidParameter", f"{key} must be one of {', '.join(choices.values())}", key)
    return canon


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
        self._api_key = api_key
        self.generator = ReferenceGenerator(model_revision=self.knobs.model_revision, catalog=catalog)
        self.public_url = public_url.rstrip("/") if public_url else None
        self.stats = ServerStats()
        self._rng = random.Random(self.knobs.knob_seed)
        self._pool = ThreadPoolExecutor(
            max_workers=workers or min(16, (os.cpu_count() or 1) + 2), thread_name_prefix="reference-gen"
        )
        self._outputs: OrderedDict[str, _Stored] = OrderedDict()
        self._output_bytes = 0
        self._max_outputs = max_outputs
        self._max_output_bytes = max_output_bytes
        self._details: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._jobs: OrderedDict[str, _Job] = OrderedDict()
        self._lock = threading.Lock()  # guards the stores; handlers and tests may read them
        self._closing = False
        self._base_url: str | None = None
        self.app = Starlette(
            routes=[
                Route("/v1", self._handle_tasks, methods=["POST"]),
                Route("/", self._handle_tasks, methods=["POST"]),
                Route("/outputs/{name}", self._handle_output, methods=["GET", "HEAD"]),
                Route("/health", self._handle_health, methods=["GET"]),
            ]
        )

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
            ws="none",
            timeout_graceful_shutdown=2,
            backlog=2048,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"reference-server-{bound}", daemon=True
        )
        self._closing = False
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
            self._closing = True  # ends stalled requests early
            server.should_exit = True
            thread.join(15)
            sock.close()
            self._base_url = None
            self.close()

    def close(self) -> None:
        """Release the generator threads (the app cannot generate afterwards)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- HTTP handlers -----------------------------------------------------------------
    async def _handle_health(self, request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "server": SERVER_NAME,
                "note": SOFTWARE_TAG,
                "modelRevision": None
                if self.knobs.model_revision is None
                else str(self.knobs.model_revision),
            }
        )

    async def _handle_output(self, request: Request) -> Response:
        name = request.path_params["name"]
        stem, _, ext = name.partition(".")
        with self._lock:
            stored = self._outputs.get(stem)
        if stored is None or ext != stored.extension:
            return JSONResponse(_envelope_error("notFound", f"no output {name}"), status_code=404)
        self.stats.outputs_served += 1
        body = b"" if request.method == "HEAD" else stored.data
        headers = {"content-length": str(len(stored.data))}
        return Response(body, media_type=stored.content_type, headers=headers)

    async def _handle_tasks(self, request: Request) -> Response:
        self.stats.requests += 1
        knobs = self.knobs
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return JSONResponse(
                _envelope_error("invalidPayload", "the body must be a JSON array of tasks"), 400
            )
        if not isinstance(body, list) or not body or not all(isinstance(t, dict) for t in body):
            return JSONResponse(
                _envelope_error("invalidPayload", "the body must be a JSON array of task objects"), 400
            )

        auth_tasks = [t for t in body if t.get("taskType") == "authentication"]
        tasks = [t for t in body if t.get("taskType") != "authentication"]
        if not self._authorized(request, auth_tasks):
            self.stats.unauthorized += 1
            return JSONResponse(
                _envelope_error("invalidApiKey", "missing or invalid API key", task_type="authentication"),
                401,
            )

        if knobs.latency_ms:
            await asyncio.sleep(knobs.latency_ms / 1000)
        if knobs.stall_rate and self._rng.random() < knobs.stall_rate:
            self.stats.stalled += 1
            await self._sleep_unless_closing(knobs.stall_seconds)
            return JSONResponse(_envelope_error("timeout", "the request stalled (stall_rate knob)"), 504)
        if knobs.rate_limit_rate and self._rng.random() < knobs.rate_limit_rate:
            self.stats.rate_limited += 1
            return JSONResponse(
                _envelope_error("rateLimitExceeded", "too many requests (rate_limit_rate knob)"),
                429,
                headers={"Retry-After": str(int(knobs.retry_after))},
            )
        if knobs.error_rate and self._rng.random() < knobs.error_rate:
            self.stats.server_errors += 1
            return JSONResponse(
                _envelope_error("internalServerError", "injected failure (error_rate knob)"), 500
            )

        # knobs.model_revision may have been changed directly while running.
        self.generator.model_revision = knobs.model_revision
        base = self.public_url or str(request.base_url).rstrip("/")
        outcomes = await asyncio.gather(*(self._run_task(task, base) for task in tasks))
        data: list[dict[str, Any]] = [
            {"taskType": "authentication", "connectionSessionUUID": str(uuid.uuid4())} for _ in auth_tasks
        ]
        errors: list[dict[str, Any]] = []
        for results, errs in outcomes:
            data.extend(results)
            errors.extend(errs)
        if knobs.shuffle_results:
            self._rng.shuffle(data)
        envelope: dict[str, Any] = {}
        if data or not errors:
            envelope["data"] = data
        if errors:
            envelope["errors"] = errors
        return JSONResponse(envelope, status_code=200 if data or not errors else 400)

    def _authorized(self, request: Request, auth_tasks: list[dict[str, Any]]) -> bool:
        keys: list[object] = [t.get("apiKey") for t in auth_tasks]
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            keys.append(token.strip() if scheme.lower() == "bearer" else None)
        if any(not isinstance(k, str) or not k for k in keys):
            return False  # an empty or malformed key is refused even in open mode
        if self._api_key is None:
            return True
        return bool(keys) and all(hmac.compare_digest(k.encode(), self._api_key.encode()) for k in keys)  # type: ignore[union-attr]

    async def _sleep_unless_closing(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._closing and (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(0.05, left))

    # -- tasks ---------------------------------------------------------------------------
    async def _run_task(
        self, task: dict[str, Any], base: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        self.stats.tasks += 1
        task_type = task.get("taskType")
        try:
            if task_type in _INFERENCE:
                results, errors = await self._inference(task, base)
            elif task_type == "getResponse":
                return self._get_response(task)
            elif task_type == "getTaskDetails":
                return self._get_task_details(task)
            elif task_type == "ping":
                return [{"taskType": "ping", "pong": True}], []
            else:
                raise _TaskError(
                    "unsupportedTaskType", f"taskType {task_type!r} is not supported", "taskType"
                )
        except _TaskError as exc:
            self.stats.task_errors += 1
            results, errors = [], [_error(exc.code, exc.message, task=task, parameter=exc.parameter)]
        if task_type in _INFERENCE and isinstance(task.get("taskUUID"), str):
            self._remember(task, results, errors)
        return results, errors

    async def _inference(
        self, task: dict[str, Any], base: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        kind = _INFERENCE[task["taskType"]]
        task_uuid = _str(task, "taskUUID", required=True)
        assert task_uuid is not None
        try:
            uuid.UUID(task_uuid)
        except ValueError:
            raise _TaskError("invalidParameter", "taskUUID must be a UUID", "taskUUID") from None
        model = _str(task, "model", required=True)
        assert model is not None
        if not self.generator.catalog.is_known(model):
            raise _TaskError(
                "invalidModel", f"model {model[:80]!r} is unknown to the reference server", "model"
            )
        plan = self._plan(kind, task)
        default_delivery = "async" if kind == "video" else "sync"
        delivery = _choice(task, "deliveryMethod", {"sync": "sync", "async": "async"}, default_delivery)
        if delivery == "sync":
            return await self._generate(kind, task, plan, base), []
        with self._lock:
            if task_uuid in self._jobs:
                raise _TaskError(
                    "duplicateTaskUUID", "taskUUID was already used for an async task", "taskUUID"
                )
        fail = bool(self.knobs.async_error_rate) and self._rng.random() < self.knobs.async_error_rate
        future = asyncio.ensure_future(self._generate_async(kind, task, plan, base, fail=fail))
        with self._lock:
            self._jobs[task_uuid] = _Job(task["taskType"], future, int(self.knobs.async_polls))
            while len(self._jobs) > 10000:
                self._jobs.popitem(last=False)
        return [{"taskType": task["taskType"], "taskUUID": task_uuid}], []

    def _plan(self, kind: str, task: Mapping[str, Any]) -> dict[str, Any]:
        """Validate everything before any work starts (async tasks fail at once, too)."""
        plan: dict[str, Any] = {
            "prompt": _str(task, "positivePrompt", required=True),
            "seed": _int(task, "seed", _SEED_RANGE.low, _SEED_RANGE.high, None),
            "count": _int(task, "numberResults", 1, 20, 1),
            "output_type": _choice(task, "outputType", _OUTPUT_TYPES, "URL"),
            "include_cost": _bool(task, "includeCost"),
        }
        if kind == "image":
            for key in ("width", "height"):
                if task.get(key) is None:
                    raise _TaskError("missingParameter", f"{key} is required", key)
            plan.update(
                width=_int(task, "width", 16, 2048, None),
                height=_int(task, "height", 16, 2048, None),
                steps=_int(task, "steps", 1, 100, 20),
                cfg=_num(task, "CFGScale", 0, 50, 7.0),
                negative=_str(task, "negativePrompt", default="") or "",
                scheduler=_str(task, "scheduler"),
                output_format=_choice(
                    task, "outputFormat", {"jpg": "JPG", "jpeg": "JPG", "png": "PNG", "webp": "WEBP"}, "JPG"
                ),
                quality=_int(task, "outputQuality", 20, 99, 95),
            )
        elif kind == "video":
            plan.update(
                width=_int(task, "width", 16, 2048, 96),
                height=_int(task, "height", 16, 2048, 96),
                duration=_num(task, "duration", 0.5, 20, 1.0),
                fps=_int(task, "fps", 1, 60, 8),
                scheduler=_str(task, "scheduler"),
            )
        elif kind == "3d":
            plan.update(scheduler=_str(task, "scheduler"), output_format=_str(task, "outputFormat") or "GLB")
        else:
            plan.update(
                duration=_num(task, "duration", 0.1, 30, 1.0),
                scheduler=_str(task, "scheduler"),
                output_format=_str(task, "outputFormat") or "WAV",
            )
        return plan

    async def _generate_async(
        self, kind: str, task: dict[str, Any], plan: dict[str, Any], base: str, *, fail: bool = False
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        if fail:
            self.stats.task_errors += 1
            error = _error(
                "timeoutProvider", "the provider timed out (async_error_rate knob)", task=task, status="error"
            )
            self._remember(task, [], [error])
            return [], [error]
        try:
            results = await self._generate(kind, task, plan, base)
        except Exception as exc:  # reported through getResponse, like a provider failure
            log.warning("reference server: async task failed: %s", type(exc).__name__)
            return [], [
                _error("providerError", f"generation failed: {type(exc).__name__}", task=task, status="error")
            ]
        for r in results:
            r["status"] = "success"
        self._remember(task, results, [])
        return results, []

    async def _generate(
        self, kind: str, task: dict[str, Any], plan: dict[str, Any], base: str
    ) -> list[dict[str, Any]]:
        model = task["model"]
        seeds: list[int | None] = list(self.generator.pick_seeds(plan["seed"], plan["count"]))
        loop = asyncio.get_running_loop()
        outputs = await asyncio.gather(
            *(loop.run_in_executor(self._pool, self._make, kind, model, plan, seed) for seed in seeds)
        )
        results = []
        for output in outputs:
            results.append(self._result(kind, task, plan, output, base))
        return results

    def _make(self, kind: str, model: str, plan: Mapping[str, Any], seed: int | None) -> Output:
        gen = self.generator
        if kind == "image":
            return gen.image(
                ImageRequest(
                    model=model,
                    prompt=plan["prompt"],
                    width=plan["width"],
                    height=plan["height"],
                    seed=seed,
                    negative_prompt=plan["negative"],
                    steps=plan["steps"],
                    cfg_scale=plan["cfg"],
                    scheduler=plan["scheduler"],
                    output_format=plan["output_format"],
                    output_quality=plan["quality"],
                )
            )
        return render_media(gen, kind, model, plan, seed)

    def _result(
        self, kind: str, task: Mapping[str, Any], plan: Mapping[str, Any], output: Output, base: str
    ) -> dict[str, Any]:
        counter = "meshes" if kind == "3d" else kind + "s"
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        out_uuid = str(uuid.uuid4())
        if kind == "3d":
            return mesh_result(task, plan, output, base, out_uuid, self._store, _cost(kind, plan))
        result: dict[str, Any] = {
            "taskType": task["taskType"],
            "taskUUID": task["taskUUID"],
            f"{kind}UUID": out_uuid,
        }
        output_type = plan["output_type"]
        if output_type == "URL":
            self._store(out_uuid, output)
            result[f"{kind}URL"] = f"{base}/outputs/{out_uuid}.{output.extension}"
        elif output_type == "base64Data":
            result[f"{kind}Base64Data"] = base64.b64encode(output.data).decode("ascii")
        else:
            encoded = base64.b64encode(output.data).decode("ascii")
            result[f"{kind}DataURI"] = f"data:{output.content_type};base64,{encoded}"
        if output.seed is not None:
            result["seed"] = output.seed
        if plan["include_cost"]:
            result["cost"] = _cost(kind, plan)
        if kind == "image" and isinstance(task.get("safety"), dict) and task["safety"].get("checkContent"):
            result["NSFWContent"] = False
        return result

    def _store(self, out_uuid: str, output: Output) -> None:
        with self._lock:
            self._outputs[out_uuid] = _Stored(output.data, output.content_type, output.extension)
            self._output_bytes += len(output.data)
            while self._outputs and (
                len(self._outputs) > self._max_outputs or self._output_bytes > self._max_output_bytes
            ):
                _, old = self._outputs.popitem(last=False)
                self._output_bytes -= len(old.data)

    def _remember(
        self, task: Mapping[str, Any], results: list[dict[str, Any]], errors: list[dict[str, Any]]
    ) -> None:
        response: dict[str, Any] = {}
        if results:
            response["data"] = [
                {
                    k: (f"<{len(v)} characters>" if k.endswith(("Base64Data", "DataURI")) else v)
                    for k, v in r.items()
                }
                for r in results
            ]
        if errors:
            response["errors"] = errors
        with self._lock:
            self._details[task["taskUUID"]] = {"request": redact(dict(task)), "response": response}
            while len(self._details) > 20000:
                self._details.popitem(last=False)

    def _get_response(self, task: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        task_uuid = task.get("taskUUID")
        with self._lock:
            job = self._jobs.get(task_uuid) if isinstance(task_uuid, str) else None
        if job is None:
            self.stats.task_errors += 1
            return [], [
                _error("taskNotFound", "no async task with this taskUUID", task=task, parameter="taskUUID")
            ]
        if job.future.cancelled():
            return [], [_error("providerError", "the task was cancelled", task=task, status="error")]
        if job.polls_left > 0 or not job.future.done():
            job.polls_left = max(0, job.polls_left - 1)
            return [{"taskType": job.task_type, "taskUUID": task_uuid, "status": "processing"}], []
        results, errors = job.future.result()
        return [dict(r) for r in results], [dict(e) for e in errors]

    def _get_task_details(self, task: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        task_uuid = task.get("taskUUID")
        with self._lock:
            details = self._details.get(task_uuid) if isinstance(task_uuid, str) else None
        if details is None:
            self.stats.task_errors += 1
            return [], [
                _error("taskNotFound", "no past task with this taskUUID", task=task, parameter="taskUUID")
            ]
        return [{"taskType": "getTaskDetails", "taskUUID": task_uuid, **details}], []


def _cost(kind: str, plan: Mapping[str, Any]) -> float:
    """A made-up but stable price, so cost reporting has numbers to add up."""
    if kind == "image":
        megapixels = plan["width"] * plan["height"] / 1_048_576
        return round(0.0013 * megapixels * plan["steps"] / 20, 6)
    if kind == "video":
        return round(0.05 * plan["duration"], 6)
    if kind == "3d":
        return 0.04
    return round(0.002 * plan["duration"], 6)


def _envelope_error(code: str, message: str, *, task_type: str | None = None) -> dict[str, Any]:
    err = _error(code, message)
    if task_type:
        err["taskType"] = task_type
    return {"errors": [err]}


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
    if announce is not None:
        announce(f"http://{_host_in_url(host)}:{bound}/v1")
    config = uvicorn.Config(
        server.app,
        log_level="info",
        lifespan="off",
        ws="none",
        timeout_graceful_shutdown=2,
        backlog=2048,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
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


__all__ = ["SERVER_NAME", "ReferenceServer", "ServerKnobs", "ServerStats", "serve_forever"]
