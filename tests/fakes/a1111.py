"""A loopback AUTOMATIC1111 WebUI API (shapes from reference/a1111-comfyui.md §2).

``POST /sdapi/v1/txt2img|img2img`` answers ``{"images": [base64…], "parameters": {…},
"info": "<JSON string>"}``; ``info`` carries ``all_seeds``/``all_subseeds`` by A1111's
rules (-1 draws below 4294967294; ``seed + i`` without variation, the same seed and
``subseed + i`` with it). Each image depends on its own seed, subseed, sampler,
scheduler and checkpoint, like A1111's per-image generators. Knobs: basic auth, a
grid image first, an extension's extra image last, 422 validation, 500 errors, and
bodies that are not the documented shape.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.fakes.runware import tiny_png

_INT_FIELDS = ("steps", "width", "height", "batch_size", "n_iter")
DEFAULT_CHECKPOINT = "v1-5-pruned-emaonly.safetensors [6ce0161689]"


def a1111_image(
    seed: int, subseed: int | None, prompt: str, sampler: str, scheduler: str | None, checkpoint: str
) -> bytes:
    return tiny_png("a1111", seed, subseed, prompt, sampler, scheduler, checkpoint)


@dataclass
class FakeA1111:
    basic_auth: tuple[str, str] | None = None
    grid: bool = False
    extra_image: bool = False
    #: "ok", "not-json", "info-not-json", "no-images", "oom", "no-api"
    mode: str = "ok"
    payloads: list[dict[str, Any]] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=list)
    checkpoint: str = DEFAULT_CHECKPOINT
    #: What ``GET /internal/sysinfo`` answers (A1111 1.6+ sysinfo.get(): JSON text);
    #: None: 404, as before 1.6.
    sysinfo: dict[str, Any] | None = None
    sysinfo_requests: int = 0
    #: When set, /internal/sysinfo answers only once this event is set (a slow server).
    sysinfo_gate: threading.Event | None = None

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/sdapi/v1/txt2img", self.txt2img, methods=["POST"]),
                Route("/sdapi/v1/img2img", self.img2img, methods=["POST"]),
                Route("/internal/sysinfo", self.get_sysinfo, methods=["GET"]),
            ]
        )

    async def get_sysinfo(self, request: Request) -> Response:
        self.sysinfo_requests += 1
        if self.sysinfo_gate is not None:
            await asyncio.to_thread(self.sysinfo_gate.wait, 10)
        if self.sysinfo is None:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        return PlainTextResponse(json.dumps(self.sysinfo, indent=4))

    async def txt2img(self, request: Request) -> Response:
        return await self.generate(request, "txt2img")

    async def img2img(self, request: Request) -> Response:
        return await self.generate(request, "img2img")

    async def generate(self, request: Request, endpoint: str) -> Response:
        if self.mode == "no-api":
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        if self.basic_auth is not None:
            token = base64.b64encode(":".join(self.basic_auth).encode()).decode()
            if request.headers.get("authorization") != f"Basic {token}":
                return JSONResponse({"detail": "Incorrect username or password"}, status_code=401)
        payload = await request.json()
        self.payloads.append(payload)
        self.endpoints.append(endpoint)
        problems = [
            {"loc": ["body", name], "msg": "value is not a valid integer", "type": "type_error.integer"}
            for name in _INT_FIELDS
            if name in payload and not isinstance(payload[name], int)
        ]
        if problems:
            return JSONResponse({"detail": problems}, status_code=422)
        if self.mode == "oom":
            return JSONResponse(
                {
                    "error": "OutOfMemoryError",
                    "detail": "",
                    "body": "",
                    "errors": "CUDA out of memory. Tried to allocate 2.00 GiB",
                },
                status_code=500,
            )
        if self.mode == "not-json":
            return PlainTextResponse("Internal Server Error", status_code=200)
        prompt = str(payload.get("prompt", ""))
        sampler = str(payload.get("sampler_name") or payload.get("sampler_index") or "Euler")
        scheduler = payload.get("scheduler")
        settings = payload.get("override_settings") or {}
        checkpoint = str(settings.get("sd_model_checkpoint") or self.checkpoint)
        seed = int(payload.get("seed", -1))
        if seed == -1:
            seed = random.randrange(4294967294)
        subseed = int(payload.get("subseed", -1))
        if subseed == -1:
            subseed = random.randrange(4294967294)
        strength = float(payload.get("subseed_strength", 0) or 0)
        count = int(payload.get("batch_size", 1)) * int(payload.get("n_iter", 1))
        all_seeds = [seed + i for i in range(count)] if strength == 0 else [seed] * count
        all_subseeds = [subseed + i for i in range(count)]
        images = [
            a1111_image(s, sub if strength else None, prompt, sampler, scheduler, checkpoint)
            for s, sub in zip(all_seeds, all_subseeds, strict=True)
        ]
        first = 0
        if self.grid and count > 1:
            images.insert(0, tiny_png("grid", tuple(all_seeds)))
            first = 1
        if self.extra_image:
            images.append(tiny_png("controlnet-detectmap"))
        infotexts = [
            f"{prompt}\nSteps: {payload.get('steps', 20)}, Sampler: {sampler}, Seed: {s}, Model: {checkpoint}"
            for s in all_seeds
        ]
        if first:
            infotexts.insert(0, infotexts[0])
        info = {
            "prompt": prompt,
            "all_prompts": [prompt] * count,
            "negative_prompt": payload.get("negative_prompt", ""),
            "seed": all_seeds[0],
            "all_seeds": all_seeds,
            "subseed": all_subseeds[0],
            "all_subseeds": all_subseeds,
            "subseed_strength": strength,
            "width": payload.get("width", 512),
            "height": payload.get("height", 512),
            "sampler_name": sampler,
            "cfg_scale": payload.get("cfg_scale", 7.0),
            "steps": payload.get("steps", 20),
            "batch_size": payload.get("batch_size", 1),
            "sd_model_name": checkpoint.split(" ")[0].rsplit(".", 1)[0],
            "sd_model_hash": "6ce0161689",
            "index_of_first_image": first,
            "infotexts": infotexts,
            "job_timestamp": "20261125170000",
            "version": "v1.10.1",
        }
        if scheduler:
            info["scheduler"] = scheduler
        body: dict[str, Any] = {
            "images": [base64.b64encode(i).decode() for i in images],
            "parameters": payload,
            "info": json.dumps(info),
        }
        if self.mode == "info-not-json":
            body["info"] = "{not json"
        if self.mode == "no-images":
            body["images"] = "nope"
        return JSONResponse(body)
