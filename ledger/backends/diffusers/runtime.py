"""What a diffusers generation ran on, and the exact state it started from.

- :func:`environment`: library versions, device name and compute capability,
  CUDA/cuDNN, dtype, attention processors, determinism and TF32 flags, threads and
  the generator's device: the facts that explain why a replay drifted.
- :func:`generator_seed`: the seed a ``torch.Generator`` was seeded with, but only
  while its state is still the fresh state of that seed; a generator that already
  drew numbers no longer says what noise the call used.
- :func:`scheduler_facts` / :func:`restore_config`: a scheduler's class and full
  config as JSON (non-finite floats such as ``lambda_min_clipped=-inf`` kept as
  ``{"float": "-inf"}``) and back.
- :func:`weights_digests`: SHA-256 of each weights file of a local checkpoint.
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "EnvironmentProbe",
    "environment",
    "generator_seed",
    "jsonable",
    "restore_config",
    "scheduler_facts",
    "weights_digests",
]

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")


def jsonable(value: Any) -> Any:
    """``value`` as JSON-expressible data, or the marker ``...`` (Ellipsis) when it is
    not (tensors, objects): callers drop those."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, list | tuple):
        items = [jsonable(v) for v in value]
        return ... if any(i is ... for i in items) else items
    if isinstance(value, Mapping):
        out = {str(k): jsonable(v) for k, v in value.items()}
        return ... if any(v is ... for v in out.values()) else out
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    return ...


def _restore(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"float"} and isinstance(value["float"], str):
            return float(value["float"])
        return {k: _restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v) for v in value]
    return value


def restore_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A stored scheduler config as diffusers wants it back."""
    return {k: _restore(v) for k, v in config.items() if not k.startswith("_")}


def scheduler_facts(scheduler: Any) -> dict[str, Any]:
    config = {k: jsonable(v) for k, v in dict(scheduler.config).items() if not k.startswith("_")}
    return {"class": type(scheduler).__name__, "config": {k: v for k, v in config.items() if v is not ...}}


def generator_seed(generator: Any) -> tuple[int | None, bool]:
    """(seed, advanced): the seed of a ``torch.Generator`` and whether its state has
    moved past the seed's fresh state (then the seed is not claimed: None)."""
    if not isinstance(generator, torch.Generator):
        return None, False
    seed = int(generator.initial_seed())
    fresh = torch.Generator(device=generator.device).manual_seed(seed)
    if not torch.equal(fresh.get_state(), generator.get_state()):
        return None, True
    return seed, False


def _module_version(name: str) -> str | None:
    try:
        module = __import__(name)
    except ImportError:
        return None
    return str(getattr(module, "__version__", None))


def _device_facts(device: torch.device) -> dict[str, Any]:
    facts: dict[str, Any] = {"device": str(device)}
    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        facts["device_name"] = torch.cuda.get_device_name(index)
        major, minor = torch.cuda.get_device_capability(index)
        facts["compute_capability"] = f"{major}.{minor}"
    elif device.type == "mps":
        facts["device_name"] = "Apple MPS"
    else:
        facts["device_name"] = platform.processor() or platform.machine()
    return facts


def _cudnn_version() -> int | None:
    # torch leaves torch.backends.cudnn's functions unannotated
    if not torch.backends.cudnn.is_available():  # type: ignore[no-untyped-call]
        return None
    version: int | None = torch.backends.cudnn.version()  # type: ignore[no-untyped-call]
    return version


def _denoiser(pipe: Any) -> Any:
    return getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)


def _static_facts() -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "diffusers": _module_version("diffusers"),
        "transformers": _module_version("transformers"),
        "python": platform.python_version(),
        "platform": f"{platform.system()}-{platform.machine()}",
        "cuda": torch.version.cuda,
        "cudnn": _cudnn_version(),
    }


class EnvironmentProbe:
    """:func:`environment` for the repeated calls of one pipeline, cheap enough for the
    caller's path of a recorded call.

    Library versions and device names do not change within a process: read once. The
    device and dtype come from the denoiser's first parameter (``pipe.device`` walks
    every module of every component). The attention modules are found by one walk of
    the denoiser, then only their ``processor`` is read per call, so a later
    ``set_attn_processor`` still shows. Determinism/TF32 flags and threads are read
    every call: the caller may flip them between calls.
    """

    def __init__(self, pipe: Any) -> None:
        self._pipe = pipe
        self._static = _static_facts()
        self._devices: dict[str, dict[str, Any]] = {}
        self._walked: tuple[int, list[Any]] | None = None

    def _attention(self, denoiser: Any) -> list[str]:
        if denoiser is None or not hasattr(denoiser, "named_children"):
            return []
        if self._walked is None or self._walked[0] != id(denoiser):
            modules = [m for m in denoiser.modules() if m is not denoiser and hasattr(m, "get_processor")]
            self._walked = (id(denoiser), modules)
        return sorted({type(getattr(m, "processor", None)).__name__ for m in self._walked[1]})

    def __call__(self, *, generator_device: str | None = None) -> dict[str, Any]:
        pipe = self._pipe
        denoiser = _denoiser(pipe)
        first = None
        if denoiser is not None and hasattr(denoiser, "parameters"):
            first = next(iter(denoiser.parameters()), None)
        if first is not None:
            device, dtype = first.device, first.dtype
        else:
            device = torch.device(getattr(pipe, "device", "cpu"))
            dtype = getattr(pipe, "dtype", torch.float32)
        key = str(device)
        if key not in self._devices:
            self._devices[key] = _device_facts(device)
        return {
            "source": "diffusers in-process",
            **self._static,
            **self._devices[key],
            "dtype": str(dtype).removeprefix("torch."),
            "attention": self._attention(denoiser),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
            "threads": torch.get_num_threads(),
            "generator_device": generator_device,
        }


def environment(pipe: Any, *, generator_device: str | None = None) -> dict[str, Any]:
    """The runtime facts of a pipeline call (all JSON)."""
    return EnvironmentProbe(pipe)(generator_device=generator_device)


def weights_digests(path: str | os.PathLike[str]) -> dict[str, str]:
    """SHA-256 of every weights file under a local checkpoint directory (relative
    path → hex); empty for a hub id or a path that is not a directory."""
    root = Path(path)
    if not root.is_dir():
        return {}
    out: dict[str, str] = {}
    for file in sorted(root.rglob("*")):
        if file.is_file() and file.suffix in _WEIGHT_SUFFIXES:
            digest = hashlib.sha256()
            with file.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
            out[file.relative_to(root).as_posix()] = digest.hexdigest()
    return out
