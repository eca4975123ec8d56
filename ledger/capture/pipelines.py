"""`record_pipeline`: record every call of a diffusers pipeline, in process.

    from ledger.capture import record_pipeline
    pipe = record_pipeline(StableDiffusionPipeline.from_pretrained(path), db=url)
    image = pipe("a lighthouse", generator=torch.Generator("cpu").manual_seed(42)).images[0]

The wrapper calls the pipeline unchanged and returns its output unchanged; each
output image becomes one record: the seed read from the ``generator`` passed in
(its ``initial_seed()``, claimed only while the generator's state is still that
seed's fresh state: a generator that already drew numbers says nothing about this
call's noise, and the record gets ``generator-state-advanced`` instead of a seed; a
list of generators gives one seed per image), every JSON-expressible call argument
with the pipeline's defaults filled in, the scheduler class and its full config, the
model (``name_or_path``, its revision and the SHA-256 of its weights files when it is
a local directory), loaded adapters, and the runtime environment (versions, device,
dtype, determinism flags). Records go through the same durable spool and writer as
the httpx hook.

Each call is in the spool when it returns (one entry per call, written with one
``write(2)``: it survives the process being killed, like the httpx hook's), yet the
caller's path stays short: the entry holds the call's facts (the records are built
from them when the entry is read, :mod:`ledger.capture.pipeline_calls`) and the
images as decoded pixels, copied; the spool writer encodes the PNGs and fingerprints
them, off the caller's path (:mod:`ledger.capture.pixels`). A record that cannot be
kept is logged and counted, never raised into the caller; a full spool follows the
recorder's ``on_spool_full``.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import logging
import os
import secrets
import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from ledger.capture.entries import Output, encode_call, encode_members
from ledger.capture.pipeline_calls import output_key
from ledger.capture.pixels import MAX_RAW_BYTES, take
from ledger.capture.recorder import Recorder

__all__ = ["RecordedPipeline", "record_pipeline"]

log = logging.getLogger("ledger.capture.pipelines")

_NOT_RECORDED = frozenset({"generator", "callback", "callback_on_step_end", "output_type", "return_dict"})
#: Pixel bytes per spool entry, at most (their base64 stays well under MAX_ENTRY);
#: a call whose images hold more is spooled as a few entries.
MAX_ENTRY_PIXELS = MAX_RAW_BYTES


def _images_of(output: Any) -> Sequence[Any]:
    images = getattr(output, "images", None)
    if images is None and isinstance(output, tuple) and output:
        images = output[0]
    return images if images is not None else ()


#: Every live wrapper, so that a forked child (a multiprocessing pool) gives each its
#: own call-id prefix: ids copied from the parent would repeat its idempotency keys.
#: One fork hook for all of them; a wrapper leaves the set when it is collected.
_WRAPPERS: weakref.WeakSet[RecordedPipeline] = weakref.WeakSet()


def _renew_ids_after_fork() -> None:
    for wrapper in list(_WRAPPERS):
        wrapper._new_ids()


os.register_at_fork(after_in_child=_renew_ids_after_fork)


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
        self._shared_cache: tuple[Any, Any, bytes] | None = None
        self._environment_cache: tuple[dict[str, Any], bytes] | None = None
        self._new_ids()
        _WRAPPERS.add(self)
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

    def _new_ids(self) -> None:
        self._id_prefix = str(uuid.uuid4())[:24]
        self._counter = itertools.count(secrets.randbits(48))

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
        images: Sequence[Any] = ()
        try:
            images = _images_of(output)
            for payload, count in self._entries(arguments, before, generators, images):
                # Never raises: what neither the spool nor on_spool_full can keep is
                # logged and counted by the recorder.
                self._recorder.record_call(payload, count)
        except Exception as exc:  # recording never breaks the caller's pipeline
            log.error("record_pipeline: could not record a call of %s: %s", self._model, exc)
            self._recorder.counters.add(failed=len(images) or 1)
        return output

    def flush(self) -> None:
        """Nothing to wait for: every call is in the spool when it returns (kept for
        callers written for the earlier worker thread)."""

    def _seeds_before(self, generators: Any) -> list[tuple[int | None, bool]]:
        items = generators if isinstance(generators, list | tuple) else [generators]
        return [self._runtime.generator_seed(g) for g in items]

    def _shared(self) -> bytes:
        """The facts every call of this pipeline shares, encoded: the model, tags and
        the scheduler's class and config, encoded again only when the pipeline's
        scheduler or its config object changes (diffusers configs are frozen)."""
        scheduler = self._pipe.scheduler
        config = getattr(scheduler, "config", None)
        cached = self._shared_cache
        if cached is None or cached[0] is not scheduler or cached[1] is not config:
            facts = {
                "model": self._model,
                "pipeline": type(self._pipe).__name__,
                "scheduler": self._runtime.scheduler_facts(scheduler),
                "model_info": self._model_info,
                "model_hash": self._model_hash,
                "tags": self._tags,
                "experiment_id": self._experiment_id,
            }
            cached = (scheduler, config, encode_members(facts))
            self._shared_cache = cached
        return cached[2]

    def _encoded_environment(self, device: str | None) -> bytes:
        """The runtime of this call, encoded; again only when a fact changed (the
        caller may flip a flag between calls, so the facts are read every call)."""
        environment = self._environment(generator_device=device)
        cached = self._environment_cache
        if cached is None or cached[0] != environment:
            cached = (environment, encode_members({"environment": environment}))
            self._environment_cache = cached
        return cached[1]

    def _entries(
        self,
        arguments: Mapping[str, Any],
        before: list[tuple[int | None, bool]],
        generators: Any,
        images: Sequence[Any],
    ) -> list[tuple[bytes, int]]:
        """The call as spool entries (payload, records): its facts, which the reader
        expands into one record per image (:mod:`ledger.capture.pipeline_calls`), and
        each image's pixels (copied: the caller may change the output at once). One
        entry, or a few when the pixels would not fit one."""
        params: dict[str, Any] = {}
        unrecorded: list[str] = []
        for key, value in arguments.items():
            if key in _NOT_RECORDED or value is None:
                continue
            data = self._runtime.jsonable(value)
            if data is ...:
                unrecorded.append(key)
            else:
                params[key] = data
        single = not isinstance(generators, list | tuple)
        first = generators if single else (generators[0] if generators else None)
        device = str(first.device) if first is not None and hasattr(first, "device") else None
        # UUID-shaped and unique: this wrapper's random prefix, then a counter (a uuid4
        # per call would cost a system call on the caller's path).
        call_id = f"{self._id_prefix}{next(self._counter) & 0xFFFFFFFFFFFF:012x}"
        kind = "none" if first is None else "single" if single else "list"
        facts = {
            "id": call_id,
            "at": time.time(),
            "arguments": params,
            "unrecorded": sorted(unrecorded),
            "seeds": before,
            "generator": {"kind": kind, "device": device},
            "adapters": self._adapters(),
        }
        shared = self._shared() + b"," + self._encoded_environment(device)
        groups: list[tuple[list[list[Any]], dict[str, Output]]] = []
        size = 0
        for index, image in enumerate(images):
            output = take(image)
            # What the output adds to its entry: raw pixels, or PNG bytes encoded at once
            # (an image raw bytes cannot rebuild), which count as much.
            weight = 0 if output is None else len(output.pixels.data if output.pixels else output.data or b"")
            if not groups or (size and size + weight > MAX_ENTRY_PIXELS):
                groups.append(([], {}))
                size = 0
            size += weight
            dims = getattr(image, "size", None)
            width, height = dims if isinstance(dims, tuple) else (None, None)
            groups[-1][0].append([index, width, height, output is not None])
            if output is not None:
                groups[-1][1][output_key(call_id, index)] = output
        if any(a for _, a in before):
            log.warning(
                "record_pipeline: the generator had already drawn numbers before this call; "
                "its seed is not claimed (warning generator-state-advanced)"
            )
        return [
            (encode_call({**facts, "images": shown}, outputs, shared=shared), len(shown))
            for shown, outputs in groups
        ]

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
            # fingerprint pool has shut down).
            _at_exit(recorder.close)
    return RecordedPipeline(
        pipe,
        recorder=recorder,
        model=model,
        tags=tags,
        experiment_id=experiment_id,
        hash_weights=hash_weights,
    )
