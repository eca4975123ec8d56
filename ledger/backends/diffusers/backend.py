"""`--replay-backend diffusers`: replay records on a local diffusers pipeline.

A record made by ``record_pipeline`` (protocol ``diffusers``) replays with its own
call arguments, its scheduler class and full config, and a generator built on the
recorded device from the recorded seed. A Runware or A1111 record replays through an
explicit model mapping (a ``[models]`` entry's ``diffusers_path``, or the backend's
``model_paths`` option) with its scheduler name mapped to a diffusers class and flags
(:mod:`ledger.core.diffusers_names`); the result names the mapping it used.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import time
from collections.abc import Mapping
from typing import Any

import torch

from ledger.backends.base import (
    AsyncBackend,
    GeneratedOutput,
    GenerationRequest,
    GenerationResult,
    UnsupportedRequest,
)
from ledger.backends.diffusers import runtime
from ledger.backends.diffusers.pipelines import LoadedPipeline, PipelineCache
from ledger.config import DIFFUSERS_DEVICE, DIFFUSERS_DTYPE, DIFFUSERS_THREADS
from ledger.core.diffusers_names import RECORD_META_KEYS, to_diffusers
from ledger.core.models import ModelCatalog, default_catalog
from ledger.core.records import utcnow
from ledger.errors import UsageError

__all__ = ["ENV_DEVICE", "ENV_DTYPE", "ENV_THREADS", "DiffusersBackend"]

ENV_DEVICE = DIFFUSERS_DEVICE.name
ENV_DTYPE = DIFFUSERS_DTYPE.name
ENV_THREADS = DIFFUSERS_THREADS.name

# num_images_per_prompt is replayed as the batch the record came from, never passed on.
_META = RECORD_META_KEYS | {"num_images_per_prompt"}


class DiffusersBackend(AsyncBackend):
    name = "diffusers"
    protocol = "diffusers"
    _PROTOCOLS = ("diffusers", "runware", "a1111")

    def __init__(
        self,
        *,
        device: str | None = None,
        dtype: str | None = None,
        model_paths: Mapping[str, str] | None = None,
        catalog: ModelCatalog | None = None,
        threads: int | None = None,
        **_ignored: Any,  # timeout, retry, url: HTTP options of other backends
    ) -> None:
        # The CLI has no per-backend flags: the environment chooses device, dtype and
        # threads for a whole audit run (a replay in float64 or on 1 thread, say).
        self.device = device or DIFFUSERS_DEVICE.raw() or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = dtype or DIFFUSERS_DTYPE.raw()
        if threads is None:
            threads = DIFFUSERS_THREADS.count()
        self.model_paths = dict(model_paths or {})
        self.catalog = catalog or default_catalog()
        self.threads = threads
        self.cache = PipelineCache()

    def _path(self, request: GenerationRequest) -> str:
        model = request.model or str(request.params.get("model") or "")
        if model in self.model_paths:
            return self.model_paths[model]
        mapped = self.catalog.diffusers_path(model) if model else None
        if mapped:
            return mapped
        if request.protocol == "diffusers" and model:
            return model
        raise UnsupportedRequest(
            f"diffusers: no checkpoint for model {model or '(none)'}: map it with a [models] entry "
            f"'diffusers_path' (SEEDLEDGER_MODELS) to replay a {request.protocol} record"
        )

    def _call(
        self, request: GenerationRequest, loaded: LoadedPipeline
    ) -> tuple[dict[str, Any], Any, str | None]:
        """(call kwargs, scheduler to set, mapping description)."""
        params = dict(request.params)
        if request.protocol == "diffusers":
            missing = params.get("unrecorded_arguments")
            if missing:
                raise UnsupportedRequest(
                    f"diffusers: the record did not keep {', '.join(missing)} (not JSON): cannot replay"
                )
            kwargs = {k: v for k, v in params.items() if k not in _META}
            cls_name = params.get("scheduler_class")
            config = runtime.restore_config(params.get("scheduler_config") or {})
            return kwargs, self._scheduler(str(cls_name), {**loaded.base_scheduler_config, **config}), None
        if request.protocol == "runware":
            kwargs = {
                "prompt": params.get("positivePrompt"),
                "negative_prompt": params.get("negativePrompt"),
                "width": params.get("width"),
                "height": params.get("height"),
                "num_inference_steps": params.get("steps"),
                "guidance_scale": params.get("CFGScale"),
            }
            mapping = to_diffusers(params.get("scheduler"))
        else:  # a1111
            kwargs = {
                "prompt": params.get("prompt"),
                "negative_prompt": params.get("negative_prompt"),
                "width": params.get("width"),
                "height": params.get("height"),
                "num_inference_steps": params.get("steps"),
                "guidance_scale": params.get("cfg_scale"),
            }
            mapping = to_diffusers(params.get("sampler_name"), params.get("scheduler"))
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        if mapping is None:
            named = params.get("scheduler") or params.get("sampler_name")
            if named:
                raise UnsupportedRequest(f"diffusers: no diffusers scheduler is known for {named!r}")
            return kwargs, None, "the checkpoint's own scheduler (the record names none)"
        scheduler = self._scheduler(mapping.class_name, {**loaded.base_scheduler_config, **mapping.config})
        return kwargs, scheduler, mapping.describe()

    @staticmethod
    def _scheduler(class_name: str, config: dict[str, Any]) -> Any:
        import diffusers

        cls = getattr(diffusers, class_name, None)
        if cls is None or not hasattr(cls, "from_config"):
            raise UnsupportedRequest(f"diffusers {diffusers.__version__} has no scheduler {class_name!r}")
        return cls.from_config(config)

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        if request.protocol == "diffusers" and "taskType" in request.params:
            # A sweep on this backend stores Runware tasks under backend "diffusers"
            # (no pipeline call has a taskType argument): replay them as Runware tasks.
            request = dataclasses.replace(request, protocol="runware")
        if request.protocol not in self._PROTOCOLS:
            raise UnsupportedRequest(
                f"diffusers replays diffusers, runware and a1111 records, not {request.protocol}"
            )
        if request.seed is None:
            raise UnsupportedRequest("diffusers: the record has no seed to build the generator from")
        generator_info = request.params.get("generator") if request.protocol == "diffusers" else None
        generator_info = generator_info if isinstance(generator_info, dict) else {}
        device = self.device
        dtype = self.dtype or "float32"
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise UsageError(f"diffusers: {dtype!r} is not a torch dtype")
        path = self._path(request)
        started = time.monotonic()
        loaded = await self.cache.get(path, device, dtype)
        kwargs, scheduler, mapping = self._call(request, loaded)
        gen_device = str(generator_info.get("device") or "cpu")
        batch = 1
        pick = 0
        if generator_info.get("kind") == "single":
            # One generator consumed across the batch: replay the batch, keep the image.
            batch = int(request.params.get("num_images_per_prompt") or 1)
            pick = request.output_index or 0
        elif isinstance(kwargs.get("prompt"), list):
            per = int(request.params.get("num_images_per_prompt") or 1)
            kwargs["prompt"] = kwargs["prompt"][(request.output_index or 0) // per]
            if isinstance(kwargs.get("negative_prompt"), list):
                kwargs["negative_prompt"] = kwargs["negative_prompt"][(request.output_index or 0) // per]
        data, env, used = await asyncio.to_thread(
            self._run, loaded, kwargs, scheduler, request.seed, gen_device, batch, pick
        )
        # The scheduler that ran (class and full config), so a record made from this
        # result (a sweep) keeps it as a record_pipeline record does.
        metadata: dict[str, Any] = {
            "environment": env,
            "checkpoint": path,
            "scheduler_class": used["class"],
            "scheduler_config": used["config"],
        }
        if mapping:
            metadata["scheduler_mapping"] = mapping
        output = GeneratedOutput(
            data=data, seed=request.seed, media_type="image/png", index=pick, metadata=metadata
        )
        return GenerationResult(
            backend=self.name,
            request=request,
            task_uuid=None,
            outputs=(output,),
            attempts=1,
            elapsed_s=time.monotonic() - started,
            started_at=utcnow(),
            metadata=metadata,
        )

    def _run(
        self,
        loaded: LoadedPipeline,
        kwargs: dict[str, Any],
        scheduler: Any,
        seed: int,
        gen_device: str,
        batch: int,
        pick: int,
    ) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
        with loaded.lock:
            pipe = loaded.pipe
            previous_threads = torch.get_num_threads()
            if self.threads:
                torch.set_num_threads(self.threads)
            try:
                if scheduler is not None:
                    pipe.scheduler = scheduler
                generator = torch.Generator(device=gen_device).manual_seed(seed)
                call = {**kwargs, "generator": generator, "output_type": "pil"}
                if batch > 1:
                    call["num_images_per_prompt"] = batch
                images = pipe(**call).images
                env = runtime.environment(pipe, generator_device=gen_device)
                used = runtime.scheduler_facts(pipe.scheduler)
            finally:
                if self.threads:
                    torch.set_num_threads(previous_threads)
        buffer = io.BytesIO()
        images[min(pick, len(images) - 1)].save(buffer, "PNG")
        return buffer.getvalue(), env, used

    async def aclose(self) -> None:
        self.cache.clear()


def diffusers_backend(**options: Any) -> DiffusersBackend:
    return DiffusersBackend(**options)
