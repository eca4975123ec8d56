"""A loopback ComfyUI server (shapes from reference/a1111-comfyui.md §3).

``POST /prompt`` validates an API-format graph like ComfyUI's ``validate_prompt``
(unknown node classes, values not in list, no output node → HTTP 400 with ``error`` and
``node_errors``) and answers ``{"prompt_id", "number", "node_errors": {}}``;
``GET /history/{id}`` is ``{}`` until the prompt "ran" (after ``runs_after`` polls),
then carries ``outputs`` (SaveImage → type ``output``, PreviewImage → ``temp``) and
``status``; ``GET /view`` serves the files. A batch's images depend on the sampler's
seed and the batch position, as ComfyUI's one-generator batch noise does.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.fakes.runware import tiny_png

SAMPLERS = ("euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde", "ddim", "uni_pc")
SCHEDULERS = ("simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal")
NODE_CLASSES = {
    "CheckpointLoaderSimple",
    "CLIPTextEncode",
    "EmptyLatentImage",
    "KSampler",
    "KSamplerAdvanced",
    "VAEDecode",
    "SaveImage",
    "PreviewImage",
}
OUTPUT_NODES = {"SaveImage", "PreviewImage"}


def comfy_image(seed: int, batch_index: int, sampler: str, scheduler: str, ckpt: str, text: str) -> bytes:
    return tiny_png("comfy", seed, batch_index, sampler, scheduler, ckpt, text)


def default_graph(seed: int = 156680208700286, batch: int = 1, sampler: str = "euler") -> dict[str, Any]:
    """The default ComfyUI text-to-image workflow in API format."""
    return {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": 20,
                "cfg": 8,
                "sampler_name": sampler,
                "scheduler": "normal",
                "denoise": 1,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
        },
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": batch}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse at dusk", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }


@dataclass
class FakeComfyUI:
    runs_after: int = 2
    #: "ok", "history-not-json", "history-wrong-shape"
    mode: str = "ok"
    view_content_type: str = "image/png"
    prompts: list[dict[str, Any]] = field(default_factory=list)
    history: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)
    files: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    history_polls: int = 0
    #: Queue prompts whose other outputs validated, reporting node_errors (as ComfyUI does).
    partial_validation: bool = False
    queue: dict[str, Any] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    counter: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: What ``GET /system_stats`` answers; None: 404.
    system_stats: dict[str, Any] | None = None
    system_stats_requests: int = 0

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/prompt", self.post_prompt, methods=["POST"]),
                Route("/history/{prompt_id}", self.get_history, methods=["GET"]),
                Route("/view", self.view, methods=["GET"]),
                Route("/queue", self.post_queue, methods=["POST"]),
                Route("/system_stats", self.get_system_stats, methods=["GET"]),
            ]
        )

    async def get_system_stats(self, request: Request) -> Response:
        self.system_stats_requests += 1
        if self.system_stats is None:
            return PlainTextResponse("404: Not Found", status_code=404)
        return JSONResponse(self.system_stats)

    async def post_prompt(self, request: Request) -> Response:
        body = await request.json()
        graph = body.get("prompt") if isinstance(body, dict) else None
        if not isinstance(graph, dict):
            return _invalid("invalid_prompt", "no prompt", {})
        self.prompts.append(body)
        node_errors: dict[str, Any] = {}
        for node_id, node in graph.items():
            kind = node.get("class_type")
            if kind not in NODE_CLASSES:
                return _invalid(
                    "invalid_prompt",
                    f"Cannot execute because node {kind} does not exist.",
                    {},
                    details=f"Node ID '#{node_id}'",
                )
            inputs = node.get("inputs", {})
            errors = []
            if kind in ("KSampler", "KSamplerAdvanced"):
                for name, allowed in (("sampler_name", SAMPLERS), ("scheduler", SCHEDULERS)):
                    if inputs.get(name) not in allowed:
                        errors.append(
                            {
                                "type": "value_not_in_list",
                                "message": "Value not in list",
                                "details": f"{name}: '{inputs.get(name)}' not in {list(allowed)}",
                                "extra_info": {"input_name": name},
                            }
                        )
                seed = inputs.get("seed", inputs.get("noise_seed"))
                if isinstance(seed, int) and not 0 <= seed <= 0xFFFFFFFFFFFFFFFF:
                    errors.append(
                        {
                            "type": "value_bigger_than_max",
                            "message": "Value bigger than max",
                            "details": f"seed: {seed}",
                            "extra_info": {},
                        }
                    )
            if errors:
                node_errors[node_id] = {"errors": errors, "dependent_outputs": ["9"], "class_type": kind}
        if not any(n.get("class_type") in OUTPUT_NODES for n in graph.values()):
            return _invalid("prompt_no_outputs", "Prompt has no outputs", {})
        partial = bool(node_errors) and self.partial_validation
        if node_errors and not partial:
            return _invalid(
                "prompt_outputs_failed_validation", "Prompt outputs failed validation", node_errors
            )
        prompt_id = str(uuid.uuid4())
        with self.lock:
            self.counter += 1
            number = self.counter
        self.pending[prompt_id] = self.runs_after
        if partial:
            self.queue[prompt_id] = graph
            return JSONResponse({"prompt_id": prompt_id, "number": number, "node_errors": node_errors})
        self.history_entry(prompt_id, number, graph)
        return JSONResponse({"prompt_id": prompt_id, "number": number, "node_errors": {}})

    async def post_queue(self, request: Request) -> Response:
        body = await request.json()
        for prompt_id in body.get("delete", []):
            self.queue.pop(prompt_id, None)
            self.deleted.append(prompt_id)
        return Response(status_code=200)

    def history_entry(self, prompt_id: str, number: int, graph: dict[str, Any]) -> None:
        sampler = next(n for n in graph.values() if n["class_type"] in ("KSampler", "KSamplerAdvanced"))
        inputs = sampler["inputs"]
        seed = inputs.get("seed", inputs.get("noise_seed"))
        ckpt = next(
            (n["inputs"]["ckpt_name"] for n in graph.values() if n["class_type"] == "CheckpointLoaderSimple"),
            "",
        )
        text = " | ".join(n["inputs"]["text"] for n in graph.values() if n["class_type"] == "CLIPTextEncode")
        batch = next(
            (
                n["inputs"].get("batch_size", 1)
                for n in graph.values()
                if n["class_type"] == "EmptyLatentImage"
            ),
            1,
        )
        status: dict[str, Any] = {"status_str": "success", "completed": True, "messages": []}
        outputs: dict[str, Any] = {}
        if ckpt == "missing.safetensors":
            status = {
                "status_str": "error",
                "completed": False,
                "messages": [
                    ["execution_start", {"prompt_id": prompt_id}],
                    [
                        "execution_error",
                        {
                            "prompt_id": prompt_id,
                            "node_id": "4",
                            "node_type": "CheckpointLoaderSimple",
                            "exception_message": "Model not found: missing.safetensors",
                            "exception_type": "FileNotFoundError",
                        },
                    ],
                ],
            }
        else:
            for node_id, node in graph.items():
                if node["class_type"] not in OUTPUT_NODES:
                    continue
                kind = "output" if node["class_type"] == "SaveImage" else "temp"
                images = []
                for index in range(batch):
                    name = f"ComfyUI_{number:05}_{index}_.png"
                    data = comfy_image(seed, index, inputs["sampler_name"], inputs["scheduler"], ckpt, text)
                    self.files[(name, "", kind)] = data
                    images.append({"filename": name, "subfolder": "", "type": kind})
                outputs[node_id] = {"images": images}
        self.history[prompt_id] = {
            "prompt": [number, prompt_id, graph, {}, list(outputs)],
            "outputs": outputs,
            "status": status,
        }

    async def get_history(self, request: Request) -> Response:
        prompt_id = request.path_params["prompt_id"]
        with self.lock:
            self.history_polls += 1
        if self.mode == "history-not-json":
            return PlainTextResponse("<html>", status_code=200)
        if self.mode == "history-wrong-shape":
            return JSONResponse({prompt_id: {"outputs": {"9": {"images": [{"subfolder": ""}]}}}})
        left = self.pending.get(prompt_id)
        if left is None:
            return JSONResponse({})
        if left > 0:
            self.pending[prompt_id] = left - 1
            return JSONResponse({})
        return JSONResponse({prompt_id: self.history[prompt_id]})

    async def view(self, request: Request) -> Response:
        key = (
            request.query_params.get("filename", ""),
            request.query_params.get("subfolder", ""),
            request.query_params.get("type", "output"),
        )
        if key not in self.files:
            return PlainTextResponse("404: Not Found", status_code=404)
        return Response(self.files[key], media_type=self.view_content_type)


def _invalid(kind: str, message: str, node_errors: dict[str, Any], details: str = "") -> Response:
    return JSONResponse(
        {
            "error": {"type": kind, "message": message, "details": details, "extra_info": {}},
            "node_errors": node_errors,
        },
        status_code=400,
    )
