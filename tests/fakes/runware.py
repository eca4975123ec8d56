"""A small Runware-protocol server for adapter tests (shapes from reference/runware.md).

It answers the documented envelopes: a JSON array of tasks in, ``{"data": [...]}``
and ``{"errors": [...]}`` out, per-task errors beside successes, results in reverse
order (so position matching would fail), URL/base64Data/dataURI outputs, async
video/audio answered through ``getResponse``, and ``getTaskDetails``. Knobs make it
misbehave: 429 on every n-th request, slow answers, bodies that are not JSON or not
the documented shape, oversized or mistyped downloads.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import random
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route


def tiny_png(*parts: object) -> bytes:
    """A 16×16 PNG whose pixels depend only on ``parts`` (seed, model, prompt…)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    image = Image.frombytes("RGB", (16, 16), (digest * 25)[: 16 * 16 * 3])
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@dataclass
class FakeRunware:
    api_key: str | None = None
    #: Answer 429 to every n-th POST (2 = half of them); 0 = never.
    rate_limit_every: int = 0
    retry_after: str | None = "0"
    #: Answer 503 to every n-th POST; 0 = never.
    unavailable_every: int = 0
    #: "ok", "not-json", "wrong-shape", "empty-data", "bare-list", "error-no-uuid"
    mode: str = "ok"
    delay: float = 0.0
    async_polls: int = 2
    #: Put the caller's Authorization header into error messages (a careless server).
    echo_auth: bool = False
    file_content_type: str | None = None
    download_bytes: int | None = None  # serve outputs of this many bytes instead
    url_override: str | None = None  # hand out this URL for every output
    posts: int = 0
    auth_seen: list[str] = field(default_factory=list)
    rate_limited: int = 0
    polls: int = 0
    tasks_seen: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    base_url: str = ""

    # -- app -----------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1", self.post, methods=["POST"]),
                Route("/files/{name}", self.file, methods=["GET"]),
                Route("/big", self.big, methods=["GET"]),
                Route("/redirect/{n:int}", self.redirect, methods=["GET"]),
            ]
        )

    async def file(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.files:
            return PlainTextResponse("not found", status_code=404)
        data, media = self.files[name]
        if self.download_bytes is not None:
            return await self.big(request)
        return Response(data, media_type=self.file_content_type or media)

    async def big(self, request: Request) -> Response:
        """Streams ``download_bytes`` bytes with no Content-Length."""
        size = self.download_bytes or 10_000_000

        async def body() -> AsyncIterator[bytes]:
            sent = 0
            chunk = b"\x89PNG\r\n\x1a\n" + b"\0" * 65528
            while sent < size:
                piece = chunk[: size - sent]
                sent += len(piece)
                yield piece

        return StreamingResponse(body(), media_type=self.file_content_type or "image/png")

    async def redirect(self, request: Request) -> Response:
        n = request.path_params["n"]
        if n <= 0:
            return Response(tiny_png("redirected"), media_type="image/png")
        return RedirectResponse(f"/redirect/{n - 1}", status_code=302)

    # -- POST /v1 --------------------------------------------------------------------

    async def post(self, request: Request) -> Response:
        with self.lock:
            self.posts += 1
            count = self.posts
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.rate_limit_every and count % self.rate_limit_every == 0:
            with self.lock:
                self.rate_limited += 1
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
            return JSONResponse(
                {"errors": [{"code": "rateLimitExceeded", "message": "slow down"}]},
                status_code=429,
                headers=headers,
            )
        if self.unavailable_every and count % self.unavailable_every == 0:
            return PlainTextResponse("<html>busy</html>", status_code=503)
        auth = request.headers.get("authorization", "")
        self.auth_seen.append(auth)
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            message = "Invalid API key" + (f" (got {auth})" if self.echo_auth else "")
            return JSONResponse({"errors": [{"code": "invalidApiKey", "message": message}]}, status_code=401)
        if self.mode == "not-json":
            return PlainTextResponse("<html>upstream exploded</html>", status_code=200)
        if self.mode == "wrong-shape":
            return JSONResponse({"data": "not a list"})
        try:
            tasks = await request.json()
        except ValueError:
            return JSONResponse({"errors": [{"code": "invalidJSON", "message": "bad body"}]}, status_code=400)
        if not isinstance(tasks, list):
            return JSONResponse({"errors": [{"code": "invalidPayload", "message": "array"}]}, status_code=400)
        data: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for task in tasks:
            self.tasks_seen.append(task)
            d, e = self.handle(task, auth)
            data.extend(d)
            errors.extend(e)
        if self.mode == "empty-data":
            data = []
        if self.mode == "error-no-uuid":
            return JSONResponse(
                {"errors": [{"code": "insufficientCredits", "message": "top up"}]}, status_code=402
            )
        data.reverse()  # results arrive as they complete, not in task order
        envelope: dict[str, Any] = {}
        if data:
            envelope["data"] = data
        if errors:
            envelope["errors"] = errors
        if self.mode == "bare-list":
            return JSONResponse(data)
        status = 400 if errors and not data else 200
        return JSONResponse(envelope, status_code=status)

    def handle(self, task: dict[str, Any], auth: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        kind = task.get("taskType")
        task_uuid = task.get("taskUUID")
        if kind == "getResponse":
            return self.get_response(task_uuid)
        if kind == "getTaskDetails":
            past = self.history.get(task_uuid)
            if past is None:
                return [], [_error("taskNotFound", "no such task", task_uuid, kind)]
            return [{"taskType": kind, "taskUUID": task_uuid, **past}], []
        if kind not in ("imageInference", "videoInference", "audioInference"):
            return [], [_error("unsupportedTaskType", f"unknown {kind}", task_uuid, kind)]
        model = str(task.get("model", ""))
        if model.startswith("fail:"):
            errors = [
                _error(
                    "invalidModel",
                    "model not found" + (f" {auth}" if self.echo_auth else ""),
                    task_uuid,
                    kind,
                    parameter="model",
                )
            ]
            self.history[task_uuid] = {"request": [task], "response": {"errors": errors}}
            return [], errors
        results = self.results(task)
        delivery = task.get("deliveryMethod", "async" if kind == "videoInference" else "sync")
        if delivery == "async":
            self.jobs[task_uuid] = {"polls_left": self.async_polls, "results": results, "task": task}
            return [{"taskType": kind, "taskUUID": task_uuid}], []
        self.history[task_uuid] = {"request": [task], "response": {"data": results}}
        return results, []

    def results(self, task: dict[str, Any]) -> list[dict[str, Any]]:
        kind = task["taskType"]
        prefix = {"imageInference": "image", "videoInference": "video", "audioInference": "audio"}[kind]
        media = {"image": "image/png", "video": "video/mp4", "audio": "audio/wav"}[prefix]
        rng = random.Random()
        seed = task.get("seed")
        out = []
        for index in range(int(task.get("numberResults") or 1)):
            this_seed = seed if (seed is not None and index == 0) else rng.randrange(1, 2**63)
            data = tiny_png(this_seed, task.get("model"), task.get("positivePrompt"), prefix)
            output_uuid = str(uuid.uuid4())
            result: dict[str, Any] = {
                "taskType": kind,
                "taskUUID": task["taskUUID"],
                f"{prefix}UUID": output_uuid,
                "seed": this_seed,
            }
            if task.get("includeCost"):
                result["cost"] = 0.0013
            output_type = task.get("outputType", "URL")
            if output_type == "base64Data":
                result[f"{prefix}Base64Data"] = base64.b64encode(data).decode()
            elif output_type == "dataURI":
                result[f"{prefix}DataURI"] = f"data:{media};base64," + base64.b64encode(data).decode()
            else:
                self.files[f"{output_uuid}.png"] = (data, media)
                url = self.url_override or f"{self.base_url}/files/{output_uuid}.png"
                result[f"{prefix}URL"] = url
            out.append(result)
        return out

    def get_response(self, task_uuid: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        with self.lock:
            self.polls += 1
        job = self.jobs.get(task_uuid)
        if job is None:
            return [], [_error("taskNotFound", "no such task", task_uuid, "getResponse")]
        kind = job["task"]["taskType"]
        if str(job["task"].get("model", "")).startswith("fail-async:"):
            return [], [
                {**_error("timeoutProvider", "provider timed out", task_uuid, kind), "status": "error"}
            ]
        if job["polls_left"] > 0:
            job["polls_left"] -= 1
            return [{"taskType": kind, "taskUUID": task_uuid, "status": "processing"}], []
        self.history[task_uuid] = {"request": [job["task"]], "response": {"data": job["results"]}}
        return [{**r, "status": "success"} for r in job["results"]], []


def _error(code: str, message: str, task_uuid: Any, task_type: Any, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, "taskUUID": task_uuid, "taskType": task_type, **extra}
