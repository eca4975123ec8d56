"""`record_pipeline`: record every call of a diffusers pipeline, in process.

    from ledger.capture import record_pipeline
    pipe = record_pipeline(StableDiffusionPipeline.from_pretrained(path), db=url)
    image = pipe("a lighthouse", generator=torch.Generator("cpu").manual_seed(42)).images[0]

The wrapper calls the pipeline unchanged and returns its output unchanged; then, per
output image, it builds one record: the seed read from the ``generator`` passed in
(its ``initial_seed()``, claimed only while the generator's state is still that
seed's fresh state: a generator that already drew numbers says nothing about this
call's noise, and the record gets ``generator-state-advanced`` instead of a seed; a
list of generators gives one seed per image), every JSON-expressible call argument
with the pipeline's defaults filled in, the scheduler class and its full config, the
model (``name_or_path``, its revision and the SHA-256 of its weights files when it is
a local directory), loaded adapters, and the runtime environment (versions, device,
dtype, determinism flags). Records go through the same durable spool and writer as
the httpx hook; the writer fingerprints the PNG bytes off the caller's path.

On the caller's path the wrapper only takes what could change once the call returns
(the arguments as JSON, the seeds, the scheduler's config, the environment flags and a
copy of each image); one worker thread per wrapped pipeline then builds the records,
encodes the PNGs and appends them to the spool, in call order. ``flush()`` waits for
it; the recorder's ``close`` (also at exit) flushes first, so nothing accepted is lost
on a normal exit.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import logging
import queue
import threading
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.capture.entries import Output
from ledger.capture.recorder import Recorder
from ledger.core.diffusers_names import name_for_diffusers
from ledger.core.records import Modality, NewRecord, SeedOrigin, Source

__all__ = ["RecordedPipeline", "record_pipeline"]

log = logging.getLogger("ledger.capture.pipelines")

BACKEND = "diffusers"
_NOT_RECORDED = frozenset({"generator", "callback", "callback_on_step_end", "output_type", "return_dict"})


def _png(image: Any) -> bytes | None:
    """PNG bytes of a PIL image or an HxWxC float/uint8 array; None for latents."""
    from PIL import Image

    if isinstance(image, Image.Image):
        pil = image
    else:
        try:
            import numpy as np

            array = np.asarray(image)
        except Exception:  # a tensor on a device, latents, …
            return None
        if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
            return None
        if array.dtype != np.uint8:
            array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
        pil = Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array)
    buffer = io.BytesIO()
    pil.save(buffer, "PNG", compress_level=1)  # fast: the writer fingerprints decoded pixels
    return buffer.getvalue()


MAX_PENDING_CALLS = 64  # calls (with their images) waiting for the worker, at most


def _flush_at_exit(ref: weakref.ref[RecordedPipeline]) -> None:
    """At exit, hand the worker's queue to the spool even if the recorder is never
    closed (while threads still run: before the fingerprint pool and the recorder's
    own drain, which were registered earlier)."""
    from ledger.capture.api import _at_exit

    def flush() -> None:
        pipeline = ref()
        if pipeline is not None:
            pipeline.flush()

    _at_exit(flush)


def _copy(image: Any) -> Any:
    """The caller owns the output and may change it in place: keep a copy to encode."""
    copy = getattr(image, "copy", None)
    return copy() if callable(copy) else image


@dataclass(frozen=True)
class _Call:
    """What one call left for the worker: nothing in here changes after the call."""

    params: dict[str, Any]
    unrecorded: tuple[str, ...]
    before: tuple[tuple[int | None, bool], ...]
    single: bool
    kind: str
    device: str | None
    scheduler: dict[str, Any]
    environment: dict[str, Any]
    adapters: dict[str, Any]
    images: tuple[Any, ...]


class RecordedPipeline:
    """A diffusers pipeline whose calls are recorded; everything else is the pipeline's."""

    def __init__(
        self,
        pipe: Any,
        *,
        recorder: Recorder,
        model: str | None,
        tags: Sequence[str],
        experiment_id: str | None,
        hash_weights: bool,
    ) -> None:
        from ledger.backends.diffusers import runtime

        self._pipe = pipe
        self._runtime = runtime
        self._recorder = recorder
        self._tags = tuple(tags)
        self._experiment_id = experiment_id
        self._signature = inspect.signature(type(pipe).__call__)
        self._environment = runtime.EnvironmentProbe(pipe)
        # bounded: a caller far ahead of the worker waits rather than holding images unbounded
        self._jobs: queue.Queue[_Call] = queue.Queue(maxsize=MAX_PENDING_CALLS)
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        recorder.add_producer(self.flush)
        _flush_at_exit(weakref.ref(self))
        name = str(getattr(pipe, "name_or_path", "") or "")
        self._model = model or name or type(pipe).__name__
        weights = runtime.weights_digests(name) if hash_weights and name else {}
        config = dict(getattr(pipe, "config", {}) or {})
        self._model_info = {
            "name_or_path": name or None,
            "revision": config.get("_commit_hash") or config.get("_revision"),
            "weights": weights,
        }
        self._model_hash = (
            hashlib.sha256("".join(f"{k}={v}\n" for k, v in sorted(weights.items())).encode()).hexdigest()
            if weights
            else None
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipe, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # `pipe.scheduler = …` must reach the pipeline, whose scheduler is recorded.
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._pipe, name, value)

    @property
    def pipeline(self) -> Any:
        return self._pipe

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            bound = self._signature.bind(self._pipe, *args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            arguments.pop("self", None)
            extra = arguments.pop("kwargs", {}) or {}
            arguments.update(extra)
        except TypeError:
            return self._pipe(*args, **kwargs)  # the pipeline will say what is wrong
        generators = arguments.get("generator")
        before = self._seeds_before(generators)
        output = self._pipe(*args, **kwargs)
        try:
            self._submit(self._capture(arguments, before, generators, output))
        except Exception as exc:  # recording never breaks the caller's pipeline
            log.error("record_pipeline: could not record a call of %s: %s", self._model, exc)
            self._recorder.counters.add(failed=1)
        return output

    def flush(self) -> None:
        """Wait until every call made so far is in the spool."""
        self._jobs.join()

    def _submit(self, call: _Call) -> None:
        if self._worker is None:
            with self._start_lock:
                if self._worker is None:
                    self._worker = threading.Thread(
                        target=self._work, name="seedledger-record-pipeline", daemon=True
                    )
                    self._worker.start()
        self._jobs.put(call)

    def _work(self) -> None:
        while True:
            call = self._jobs.get()
            try:
                self._land(call)
            except Exception as exc:
                log.error("record_pipeline: could not record a call of %s: %s", self._model, exc)
                self._recorder.counters.add(failed=len(call.images) or 1)
            finally:
                self._jobs.task_done()

    def _seeds_before(self, generators: Any) -> list[tuple[int | None, bool]]:
        items = generators if isinstance(generators, list | tuple) else [generators]
        return [self._runtime.generator_seed(g) for g in items]

    def _capture(
        self,
        arguments: Mapping[str, Any],
        before: list[tuple[int | None, bool]],
        generators: Any,
        output: Any,
    ) -> _Call:
        """On the caller's path: the facts that could change after the call returns."""
        runtime = self._runtime
        images = getattr(output, "images", None)
        if images is None and isinstance(output, tuple) and output:
            images = output[0]
        params: dict[str, Any] = {}
        unrecorded: list[str] = []
        for key, value in arguments.items():
            if key in _NOT_RECORDED or value is None:
                continue
            data = runtime.jsonable(value)
            if data is ...:
                unrecorded.append(key)
            else:
                params[key] = data
        single = not isinstance(generators, list | tuple)
        first = generators if single else (generators[0] if generators else None)
        device = str(first.device) if first is not None and hasattr(first, "device") else None
        return _Call(
            params=params,
            unrecorded=tuple(sorted(unrecorded)),
            before=tuple(before),
            single=single,
            kind="none" if first is None else "single" if single else "list",
            device=device,
            scheduler=runtime.scheduler_facts(self._pipe.scheduler),
            environment=self._environment(generator_device=device),
            adapters=self._adapters(),
            images=tuple(_copy(i) for i in images) if images is not None else (),
        )

    def _land(self, call: _Call) -> None:
        """On the worker: build the records, encode the images, spool them."""
        params = dict(call.params)
        scheduler, before, single = call.scheduler, call.before, call.single
        advanced = any(a for _, a in before)
        params.update(
            {
                "pipeline": type(self._pipe).__name__,
                "scheduler_class": scheduler["class"],
                "scheduler_config": scheduler["config"],
                "generator": {
                    "kind": call.kind,
                    "device": call.device,
                    "state": "advanced" if advanced else "fresh" if call.kind != "none" else "none",
                },
                "model_info": self._model_info,
            }
        )
        if self._model_hash:
            params["model_hash"] = self._model_hash
        if call.adapters:
            params["adapters"] = call.adapters
        if call.unrecorded:
            params["unrecorded_arguments"] = list(call.unrecorded)
        env = call.environment
        call_id = str(uuid.uuid4())
        scheduler_name = name_for_diffusers(scheduler["class"], scheduler["config"])
        records: list[NewRecord] = []
        outputs: dict[str, Output] = {}
        environments: dict[str, dict[str, Any]] = {}
        for index, image in enumerate(call.images):
            # One generator is consumed across the batch: every image carries its seed
            # and its output_index (a replay runs the same batch and picks the image).
            seed = before[0][0] if single else before[index][0] if index < len(before) else None
            data = _png(image)
            size = getattr(image, "size", None)
            width, height = size if isinstance(size, tuple) else (params.get("width"), params.get("height"))
            key = f"{BACKEND}:{call_id}:{index}"
            records.append(
                NewRecord(
                    backend=BACKEND,
                    task_type="imageInference",
                    modality=Modality.IMAGE,
                    model=self._model,
                    seed=seed,
                    seed_origin=SeedOrigin.REQUEST if seed is not None else SeedOrigin.UNKNOWN,
                    scheduler_requested=scheduler["class"],
                    scheduler=scheduler_name,
                    prompt=params.get("prompt") if isinstance(params.get("prompt"), str) else None,
                    negative_prompt=params.get("negative_prompt")
                    if isinstance(params.get("negative_prompt"), str)
                    else None,
                    width=width if isinstance(width, int) else None,
                    height=height if isinstance(height, int) else None,
                    steps=params.get("num_inference_steps")
                    if isinstance(params.get("num_inference_steps"), int)
                    else None,
                    cfg_scale=float(params["guidance_scale"])
                    if isinstance(params.get("guidance_scale"), int | float)
                    else None,
                    output_format="PNG" if data is not None else None,
                    params=params,
                    task_uuid=call_id,
                    output_index=index,
                    source=Source.HOOK,
                    tags=self._tags,
                    experiment_id=self._experiment_id,
                    idempotency_key=key,
                )
            )
            environments[key] = env
            if data is not None:
                outputs[key] = Output(data=data)
        if advanced:
            log.warning(
                "record_pipeline: the generator had already drawn numbers before this call; "
                "its seed is not claimed (warning generator-state-advanced)"
            )
        self._recorder.record(records, outputs, environments=environments)

    def _adapters(self) -> dict[str, Any]:
        getter = getattr(self._pipe, "get_list_adapters", None)
        if getter is None:
            return {}
        try:
            listed = getter()
        except Exception:  # peft missing or no adapters loaded
            return {}
        data = self._runtime.jsonable(listed)
        return data if isinstance(data, dict) else {}


def record_pipeline(
    pipe: Any,
    *,
    db: str | None = None,
    spool: str | None = None,
    model: str | None = None,
    tags: Sequence[str] = (),
    experiment_id: str | None = None,
    recorder: Recorder | None = None,
    hash_weights: bool = True,
) -> RecordedPipeline:
    """Wrap ``pipe`` so that each call records one record per output image.

    ``db``/``spool`` default to ``SEEDLEDGER_DATABASE_URL``/``SEEDLEDGER_SPOOL`` (the
    process-wide recorder, drained at exit); ``model`` overrides ``pipe.name_or_path``
    (e.g. a hub id for a local copy); ``hash_weights`` hashes a local checkpoint's
    weights files once, here, so records pin the exact weights.
    """
    if recorder is None:
        if db is None and spool is None:
            from ledger.capture.api import default_recorder

            recorder = default_recorder()
        else:
            from ledger.capture.api import _at_exit

            recorder = Recorder(spool, db)
            # Drain at exit while threads still work (plain atexit runs after the
            # fingerprint pool has shut down; the worker's flush is registered after
            # this, so it runs first).
            _at_exit(recorder.close)
    return RecordedPipeline(
        pipe,
        recorder=recorder,
        model=model,
        tags=tags,
        experiment_id=experiment_id,
        hash_weights=hash_weights,
    )
