"""Loaded pipelines, one per (checkpoint, device, dtype), shared across replays.

Loading is the expensive part of a diffusers replay, so the cache loads each
checkpoint once per run even when ``--concurrency`` starts several replays of it at
once (one lock per key); calls of one pipeline are serialised (a call swaps the
scheduler, and pipelines are not thread-safe).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

import torch

from ledger.backends.base import UnsupportedRequest

__all__ = ["LoadedPipeline", "PipelineCache"]


@dataclass
class LoadedPipeline:
    pipe: Any
    base_scheduler_config: dict[str, Any]
    lock: threading.Lock = field(default_factory=threading.Lock)


def _load(path: str, device: str, dtype: str) -> LoadedPipeline:
    from diffusers import DiffusionPipeline

    try:
        pipe = DiffusionPipeline.from_pretrained(path, dtype=getattr(torch, dtype))
    except (OSError, ValueError) as exc:
        raise UnsupportedRequest(
            f"diffusers: cannot load {path!r}: {' '.join(str(exc).split())[:200]}"
        ) from None
    pipe = pipe.to(device)
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    return LoadedPipeline(pipe, dict(pipe.scheduler.config))


class PipelineCache:
    def __init__(self) -> None:
        self._pipes: dict[tuple[str, str, str], LoadedPipeline] = {}
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self.loads = 0  # how many checkpoints were loaded (tests check: once each)

    async def get(self, path: str, device: str, dtype: str) -> LoadedPipeline:
        key = (path, device, dtype)
        if key in self._pipes:
            return self._pipes[key]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self._pipes:
                self._pipes[key] = await asyncio.to_thread(_load, path, device, dtype)
                self.loads += 1
        return self._pipes[key]

    def clear(self) -> None:
        self._pipes.clear()
        self._locks.clear()
