"""What a generation server tells about its own runtime, as an environment.

The keys are those of the in-process environment (``ledger.backends.diffusers.runtime``)
where they mean the same (``torch``, ``python``, ``device``, ``device_name``, ``cuda``,
``cudnn``), plus ``app``/``app_version`` (the server software), ``xformers`` and
``flags`` (the command-line switches that change numerics: precision, attention,
CPU); ``source`` says where each environment came from. Nothing else is copied: the
servers' dumps also hold paths, environment variables and the command line, which
may carry credentials.

- AUTOMATIC1111/Forge: every ``txt2img``/``img2img`` answer's ``info`` carries
  ``version`` (also ``Version:`` in each infotext); ``GET /internal/sysinfo`` (A1111
  1.6+) adds Python, torch, CUDA/cuDNN, the GPU, packages and the command line.
- ComfyUI: ``GET /system_stats`` gives ``comfyui_version``, ``python_version``,
  ``pytorch_version``, the command line and each device's name and type.
- Runware results carry no runtime facts (task and output UUIDs, seed, cost, NSFW
  flag): a Runware record has no environment, and none is invented.

:class:`ServerProbe` fetches the server's facts once per backend instance, started
beside the first generation so it adds no round trip to any caller's wait.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

__all__ = [
    "ServerProbe",
    "a1111_from_info",
    "a1111_from_sysinfo",
    "comfyui_from_system_stats",
]

log = logging.getLogger("ledger.backends.environments")

#: Switches that change what the same seed renders (precision, attention kernels, device).
_A1111_FLAGS = frozenset(
    {
        "--xformers",
        "--force-enable-xformers",
        "--opt-sdp-attention",
        "--opt-sdp-no-mem-attention",
        "--opt-split-attention",
        "--opt-sub-quad-attention",
        "--disable-opt-split-attention",
        "--no-half",
        "--no-half-vae",
        "--upcast-sampling",
        "--precision",
        "--medvram",
        "--lowvram",
        "--use-cpu",
    }
)
_COMFY_FLAGS = frozenset(
    {
        "--cpu",
        "--force-fp32",
        "--force-fp16",
        "--fp32-vae",
        "--fp16-vae",
        "--bf16-vae",
        "--bf16-unet",
        "--fp16-unet",
        "--fp8_e4m3fn-unet",
        "--fp8_e5m2-unet",
        "--use-split-cross-attention",
        "--use-quad-cross-attention",
        "--use-pytorch-cross-attention",
        "--use-sage-attention",
        "--disable-xformers",
        "--force-upcast-attention",
        "--dont-upcast-attention",
        "--deterministic",
        "--fast",
    }
)
_VERSION_IN_INFOTEXT = re.compile(r"(?:^|, )Version: ([^,\n]+)")


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _flags(argv: Any, allowed: frozenset[str]) -> list[str]:
    if not isinstance(argv, list):
        return []
    return sorted({a.split("=", 1)[0] for a in argv if isinstance(a, str) and a.split("=", 1)[0] in allowed})


def _package(packages: Any, name: str) -> str | None:
    if isinstance(packages, list):
        for item in packages:
            if isinstance(item, str) and item.lower().startswith(f"{name}=="):
                return item.split("==", 1)[1].strip() or None
    return None


def a1111_from_info(info: Mapping[str, Any], app: str = "a1111") -> dict[str, Any]:
    """The server version an A1111 ``info`` object states ({} when it states none)."""
    version = _text(info.get("version"))
    if version is None:
        texts = info.get("infotexts")
        for text in texts if isinstance(texts, list) else []:
            found = _VERSION_IN_INFOTEXT.search(text) if isinstance(text, str) else None
            if found:
                version = found.group(1).strip()
                break
    return {"app": app, "app_version": version} if version else {}


def a1111_from_sysinfo(data: Any, app: str = "a1111") -> dict[str, Any]:
    """Runtime facts from A1111's ``/internal/sysinfo`` JSON ({} when it is not that)."""
    if not isinstance(data, Mapping):
        return {}
    torch_info = data.get("Torch env info")
    torch_info = torch_info if isinstance(torch_info, Mapping) else {}
    packages = data.get("Packages")
    facts: dict[str, Any] = {
        "app": app,
        "app_version": _text(data.get("Version")),
        "commit": _text(data.get("Commit")),
        "python": _text(data.get("Python")),
        "platform": _text(data.get("Platform")),
        "torch": _text(torch_info.get("torch_version")) or _package(packages, "torch"),
        "cuda": _text(torch_info.get("cuda_runtime_version"))
        or _text(torch_info.get("cuda_compiled_version")),
        "cudnn": _text(torch_info.get("cudnn_version")),
        "device_name": _text(torch_info.get("nvidia_gpu_models")),
        "xformers": _package(packages, "xformers"),
        "flags": _flags(data.get("Commandline"), _A1111_FLAGS),
    }
    return {k: v for k, v in facts.items() if v is not None}


def comfyui_from_system_stats(data: Any) -> dict[str, Any]:
    """Runtime facts from ComfyUI's ``/system_stats`` ({} when it is not that)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("system"), Mapping):
        return {}
    system = data["system"]
    python = _text(system.get("python_version"))
    facts: dict[str, Any] = {
        "app": "comfyui",
        "app_version": _text(system.get("comfyui_version")),
        "python": python.split()[0] if python else None,
        "torch": _text(system.get("pytorch_version")),
        "flags": _flags(system.get("argv"), _COMFY_FLAGS),
    }
    devices = data.get("devices")
    first = devices[0] if isinstance(devices, list) and devices and isinstance(devices[0], Mapping) else None
    if first is not None:
        kind, index = _text(first.get("type")), first.get("index")
        device = f"{kind}:{index}" if kind and kind != "cpu" and isinstance(index, int) else kind
        name = _text(first.get("name"))
        if name and device and name.startswith(device + " "):
            name = name[len(device) + 1 :]  # "cuda:0 NVIDIA … : cudaMallocAsync"
        facts["device"] = device
        facts["device_name"] = name.split(" : ", 1)[0].strip() if name else None
    return {k: v for k, v in facts.items() if v is not None}


class ServerProbe:
    """The server's runtime facts, fetched once per backend instance.

    :meth:`start` launches the fetch beside a generation; :meth:`peek` returns the
    facts if the fetch has finished, else ``{}``, and never waits (a replay is never
    held up by the probe; a later one gets the facts). A failed or refused fetch
    caches ``{}``: the server is not asked again.
    """

    def __init__(self, fetch: Callable[[], Awaitable[dict[str, Any]]], source: str) -> None:
        self._fetch = fetch
        self.source = source
        self._task: asyncio.Task[dict[str, Any]] | None = None
        self._facts: dict[str, Any] | None = None

    def start(self) -> None:
        if self._facts is not None:
            return
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._run())

    async def _run(self) -> dict[str, Any]:
        try:
            facts = await self._fetch()
        except Exception as exc:  # the probe never fails a generation
            log.info("%s not available: %s", self.source, exc)
            facts = {}
        self._facts = facts
        return facts

    def peek(self) -> dict[str, Any]:
        return dict(self._facts or {})

    async def wait(self) -> dict[str, Any]:
        """The facts, waiting for the fetch (tests, and callers off any hot path)."""
        if self._facts is None and self._task is not None:
            await asyncio.shield(self._task)
        return self.peek()

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
