"""The reference server's REST app: ``POST /v1`` task arrays, outputs and health.

HTTP-level fault knobs (latency, 500s, 429s, stalls) apply here; the tasks themselves
run on the shared :class:`~ledger.backends.reference.engine.TaskEngine`. New task types
are added to the engine, not here.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ledger.backends.reference.engine import TaskEngine
from ledger.backends.reference.generator import SOFTWARE_TAG
from ledger.backends.reference.knobs import error_envelope
from ledger.backends.reference.params import envelope_error

SERVER_NAME: Final = "seedledger-reference"


class RestApp:
    """HTTP handlers over one engine. ``public_url`` returns the configured base URL or None."""

    def __init__(self, engine: TaskEngine, public_url: Callable[[], str | None]) -> None:
        self.engine = engine
        self.public_url = public_url

    def routes(self) -> list[Route]:
        return [
            Route("/v1", self.tasks, methods=["POST"]),
            Route("/", self.tasks, methods=["POST"]),
            Route("/outputs/{name}", self.output, methods=["GET", "HEAD"]),
            Route("/health", self.health, methods=["GET"]),
        ]

    async def health(self, request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "server": SERVER_NAME,
                "note": SOFTWARE_TAG,
                "modelRevision": None
                if self.engine.knobs.model_revision is None
                else str(self.engine.knobs.model_revision),
            }
        )

    async def output(self, request: Request) -> Response:
        name = request.path_params["name"]
        stem, _, ext = name.partition(".")
        stored = self.engine.output(stem)
        if stored is None or ext != stored.extension:
            return JSONResponse(envelope_error("notFound", f"no output {name}"), status_code=404)
        self.engine.stats.outputs_served += 1
        body = b"" if request.method == "HEAD" else stored.data
        headers = {"content-length": str(len(stored.data))}
        return Response(body, media_type=stored.content_type, headers=headers)

    async def tasks(self, request: Request) -> Response:
        self.engine.stats.requests += 1
        knobs = self.engine.knobs
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return JSONResponse(
                envelope_error("invalidPayload", "the body must be a JSON array of tasks"), 400
            )
        if not isinstance(body, list) or not body or not all(isinstance(t, dict) for t in body):
            return JSONResponse(
                envelope_error("invalidPayload", "the body must be a JSON array of task objects"), 400
            )

        auth_tasks = [t for t in body if t.get("taskType") == "authentication"]
        tasks = [t for t in body if t.get("taskType") != "authentication"]
        if not self._authorized(request, auth_tasks):
            self.engine.stats.unauthorized += 1
            return JSONResponse(
                envelope_error("invalidApiKey", "missing or invalid API key", task_type="authentication"),
                401,
            )

        if knobs.latency_ms:
            await asyncio.sleep(knobs.latency_ms / 1000)
        if knobs.stall_rate and self.engine.rng.random() < knobs.stall_rate:
            self.engine.stats.stalled += 1
            await self.engine.sleep_unless_closing(knobs.stall_seconds)
            return JSONResponse(envelope_error("timeout", "the request stalled (stall_rate knob)"), 504)
        if knobs.rate_limit_rate and self.engine.rng.random() < knobs.rate_limit_rate:
            self.engine.stats.rate_limited += 1
            return JSONResponse(
                envelope_error("rateLimitExceeded", "too many requests (rate_limit_rate knob)"),
                429,
                headers={"Retry-After": str(int(knobs.retry_after))},
            )
        if knobs.error_rate and self.engine.rng.random() < knobs.error_rate:
            self.engine.stats.server_errors += 1
            return JSONResponse(
                envelope_error("internalServerError", "injected failure (error_rate knob)"), 500
            )

        # knobs.model_revision may have been changed directly while running.
        self.engine.sync_revision()
        base = self.public_url() or str(request.base_url).rstrip("/")
        outcomes = await asyncio.gather(*(self.engine.run_task(task, base) for task in tasks))
        data: list[dict[str, Any]] = [
            {"taskType": "authentication", "connectionSessionUUID": str(uuid.uuid4())} for _ in auth_tasks
        ]
        errors: list[dict[str, Any]] = []
        for results, errs in outcomes:
            data.extend(results)
            errors.extend(errs)
        if knobs.shuffle_results:
            self.engine.rng.shuffle(data)
        envelope: dict[str, Any] = {}
        if data or not errors:
            envelope["data"] = data
        envelope.update(error_envelope(knobs, errors))
        return JSONResponse(envelope, status_code=200 if data or not errors else 400)

    def _authorized(self, request: Request, auth_tasks: list[dict[str, Any]]) -> bool:
        keys: list[object] = [t.get("apiKey") for t in auth_tasks]
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            keys.append(token.strip() if scheme.lower() == "bearer" else None)
        return self.engine.authorized(keys)
