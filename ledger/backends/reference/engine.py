"""The reference server's task engine: validation, generation, async jobs, task details.

Transport-free: the REST app (``rest.py``) and the WebSocket app (``ws.py``) both hand
it task objects and send back what it returns, so both speak the same semantics.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import os
import random
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

from ledger.backends.reference.generator import ImageRequest, Output, ReferenceGenerator
from ledger.backends.reference.knobs import ServerKnobs, ServerStats
from ledger.backends.reference.media import mesh_result, render_media
from ledger.backends.reference.params import (
    TaskError,
    bool_param,
    choice_param,
    error_item,
    int_param,
    num_param,
    str_param,
)
from ledger.core.models import ModelCatalog
from ledger.core.redaction import redact
from ledger.core.seeds import SEED_RANGES

log = logging.getLogger(__name__)

_SEED_RANGE: Final = SEED_RANGES["reference"]
_OUTPUT_TYPES: Final = {"url": "URL", "base64data": "base64Data", "datauri": "dataURI"}
INFERENCE: Final = {
    "imageInference": "image",
    "videoInference": "video",
    "audioInference": "audio",
    "3dInference": "3d",
}

Outcome = tuple[list[dict[str, Any]], list[dict[str, Any]]]


@dataclass
class _Job:
    task_type: str
    future: asyncio.Future[Outcome]
    polls_left: int


@dataclass
class Stored:
    data: bytes = field(repr=False)
    content_type: str
    extension: str


class TaskEngine:
    """Runs Runware tasks against the reference generator; state shared by both transports."""

    def __init__(
        self,
        knobs: ServerKnobs,
        *,
        api_key: str | None,
        catalog: ModelCatalog | None,
        workers: int | None,
        max_outputs: int,
        max_output_bytes: int,
    ) -> None:
        self.knobs = knobs
        self._api_key = api_key
        self.generator = ReferenceGenerator(model_revision=knobs.model_revision, catalog=catalog)
        self.stats = ServerStats()
        self.rng = random.Random(knobs.knob_seed)
        self._pool = ThreadPoolExecutor(
            max_workers=workers or min(16, (os.cpu_count() or 1) + 2), thread_name_prefix="reference-gen"
        )
        self._outputs: OrderedDict[str, Stored] = OrderedDict()
        self._output_bytes = 0
        self._max_outputs = max_outputs
        self._max_output_bytes = max_output_bytes
        self._details: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._jobs: OrderedDict[str, _Job] = OrderedDict()
        self._lock = threading.Lock()  # guards the stores; handlers and tests may read them
        self.closing = False

    def close(self) -> None:
        """Release the generator threads (the engine cannot generate afterwards)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def authorized(self, keys: list[object]) -> bool:
        """Every presented key is a non-empty string and, when a key is required, that key."""
        if any(not isinstance(k, str) or not k for k in keys):
            return False  # an empty or malformed key is refused even in open mode
        if self._api_key is None:
            return True
        return bool(keys) and all(hmac.compare_digest(k.encode(), self._api_key.encode()) for k in keys)  # type: ignore[union-attr]

    def output(self, stem: str) -> Stored | None:
        with self._lock:
            return self._outputs.get(stem)

    def sync_revision(self) -> None:
        # knobs.model_revision may have been changed directly while running.
        self.generator.model_revision = self.knobs.model_revision

    async def sleep_unless_closing(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.closing and (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(0.05, left))

    # -- tasks ---------------------------------------------------------------------------
    async def run_task(self, task: dict[str, Any], base: str) -> Outcome:
        self.stats.tasks += 1
        task_type = task.get("taskType")
        try:
            if task_type in INFERENCE:
                results, errors = await self._inference(task, base)
            elif task_type == "getResponse":
                return self._get_response(task)
            elif task_type == "getTaskDetails":
                return self._get_task_details(task)
            elif task_type == "ping":
                return [{"taskType": "ping", "pong": True}], []
            else:
                raise TaskError("unsupportedTaskType", f"taskType {task_type!r} is not supported", "taskType")
        except TaskError as exc:
            self.stats.task_errors += 1
            results, errors = [], [error_item(exc.code, exc.message, task=task, parameter=exc.parameter)]
        if task_type in INFERENCE and isinstance(task.get("taskUUID"), str):
            self._remember(task, results, errors)
        return results, errors

    async def _inference(self, task: dict[str, Any], base: str) -> Outcome:
        kind = INFERENCE[task["taskType"]]
        task_uuid = str_param(task, "taskUUID", required=True)
        assert task_uuid is not None
        try:
            uuid.UUID(task_uuid)
        except ValueError:
            raise TaskError("invalidParameter", "taskUUID must be a UUID", "taskUUID") from None
        model = str_param(task, "model", required=True)
        assert model is not None
        if not self.generator.catalog.is_known(model):
            raise TaskError(
                "invalidModel", f"model {model[:80]!r} is unknown to the reference server", "model"
            )
        plan = self._plan(kind, task)
        default_delivery = "async" if kind == "video" else "sync"
        delivery = choice_param(task, "deliveryMethod", {"sync": "sync", "async": "async"}, default_delivery)
        if delivery == "sync":
            return await self._generate(kind, task, plan, base), []
        with self._lock:
            if task_uuid in self._jobs:
                raise TaskError("conflictTaskUUID", "taskUUID was already used for an async task", "taskUUID")
        fail = bool(self.knobs.async_error_rate) and self.rng.random() < self.knobs.async_error_rate
        future = asyncio.ensure_future(self._generate_async(kind, task, plan, base, fail=fail))
        with self._lock:
            self._jobs[task_uuid] = _Job(task["taskType"], future, int(self.knobs.async_polls))
            while len(self._jobs) > 10000:
                self._jobs.popitem(last=False)
        return [{"taskType": task["taskType"], "taskUUID": task_uuid}], []

    def _plan(self, kind: str, task: Mapping[str, Any]) -> dict[str, Any]:
        """Validate everything before any work starts (async tasks fail at once, too)."""
        plan: dict[str, Any] = {
            "prompt": str_param(task, "positivePrompt", required=True),
            "seed": int_param(task, "seed", _SEED_RANGE.low, _SEED_RANGE.high, None),
            "count": int_param(task, "numberResults", 1, 20, 1),
            "output_type": choice_param(task, "outputType", _OUTPUT_TYPES, "URL"),
            "include_cost": bool_param(task, "includeCost"),
        }
        if kind == "image":
            for key in ("width", "height"):
                if task.get(key) is None:
                    raise TaskError("missingParameter", f"{key} is required", key)
            plan.update(
                width=int_param(task, "width", 16, 2048, None),
                height=int_param(task, "height", 16, 2048, None),
                steps=int_param(task, "steps", 1, 100, 20),
                cfg=num_param(task, "CFGScale", 0, 50, 7.0),
                negative=str_param(task, "negativePrompt", default="") or "",
                scheduler=str_param(task, "scheduler"),
                output_format=choice_param(
                    task, "outputFormat", {"jpg": "JPG", "jpeg": "JPG", "png": "PNG", "webp": "WEBP"}, "JPG"
                ),
                quality=int_param(task, "outputQuality", 20, 99, 95),
            )
        elif kind == "video":
            plan.update(
                width=int_param(task, "width", 16, 2048, 96),
                height=int_param(task, "height", 16, 2048, 96),
                duration=num_param(task, "duration", 0.5, 20, 1.0),
                fps=int_param(task, "fps", 1, 60, 8),
                scheduler=str_param(task, "scheduler"),
            )
        elif kind == "3d":
            plan.update(
                scheduler=str_param(task, "scheduler"), output_format=str_param(task, "outputFormat") or "GLB"
            )
        else:
            plan.update(
                duration=num_param(task, "duration", 0.1, 30, 1.0),
                scheduler=str_param(task, "scheduler"),
                output_format=str_param(task, "outputFormat") or "WAV",
            )
        return plan

    async def _generate_async(
        self, kind: str, task: dict[str, Any], plan: dict[str, Any], base: str, *, fail: bool = False
    ) -> Outcome:
        if fail:
            self.stats.task_errors += 1
            error = error_item(
                "timeoutProvider", "the provider timed out (async_error_rate knob)", task=task, status="error"
            )
            self._remember(task, [], [error])
            return [], [error]
        try:
            results = await self._generate(kind, task, plan, base)
        except Exception as exc:  # reported through getResponse, like a provider failure
            log.warning("reference server: async task failed: %s", type(exc).__name__)
            return [], [
                error_item(
                    "providerError", f"generation failed: {type(exc).__name__}", task=task, status="error"
                )
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
            self._outputs[out_uuid] = Stored(output.data, output.content_type, output.extension)
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

    def _get_response(self, task: Mapping[str, Any]) -> Outcome:
        task_uuid = task.get("taskUUID")
        with self._lock:
            job = self._jobs.get(task_uuid) if isinstance(task_uuid, str) else None
        if job is None:
            self.stats.task_errors += 1
            return [], [
                error_item(
                    "taskNotFound", "no async task with this taskUUID", task=task, parameter="taskUUID"
                )
            ]
        if job.future.cancelled():
            return [], [error_item("providerError", "the task was cancelled", task=task, status="error")]
        if job.polls_left > 0 or not job.future.done():
            job.polls_left = max(0, job.polls_left - 1)
            return [{"taskType": job.task_type, "taskUUID": task_uuid, "status": "processing"}], []
        results, errors = job.future.result()
        return [dict(r) for r in results], [dict(e) for e in errors]

    def _get_task_details(self, task: Mapping[str, Any]) -> Outcome:
        task_uuid = task.get("taskUUID")
        with self._lock:
            details = self._details.get(task_uuid) if isinstance(task_uuid, str) else None
        if details is None:
            self.stats.task_errors += 1
            return [], [
                error_item("taskNotFound", "no past task with this taskUUID", task=task, parameter="taskUUID")
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
