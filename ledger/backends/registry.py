"""Backends by name: the registry of adapter factories, and opening one (async or sync).

Factories are named as ``"module:callable"`` and imported on first use, so importing
the registry loads no adapter.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ledger.backends.base import AsyncBackend
from ledger.backends.sync import SyncBackend
from ledger.errors import UsageError

__all__ = ["Factory", "available_backends", "open_backend", "open_sync_backend", "register_backend"]

Factory = Callable[..., AsyncBackend]

# name -> "module:callable", imported on first use so core code stays light.
_REGISTRY: dict[str, str | Factory] = {
    "runware": "ledger.backends.runware:RunwareBackend",
    "reference": "ledger.backends.reference_client:reference_backend",
    "a1111": "ledger.backends.a1111:A1111Backend",
    "forge": "ledger.backends.a1111:forge_backend",
    "comfyui": "ledger.backends.comfyui:ComfyUIBackend",
    "diffusers": "ledger.backends.diffusers.backend:diffusers_backend",
}


def register_backend(name: str, factory: Factory | str) -> None:
    """Add or replace a backend factory (``factory(url=..., **options)``)."""
    _REGISTRY[name.lower()] = factory


def available_backends() -> list[str]:
    return sorted(_REGISTRY)


def _factory(name: str) -> Factory:
    try:
        target = _REGISTRY[name.lower()]
    except KeyError:
        raise UsageError(
            f"unknown backend {name!r}; choose one of: {', '.join(available_backends())}"
        ) from None
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module_name), attr)
    return target


def open_backend(name: str, url: str | None = None, **options: Any) -> AsyncBackend:
    """Open an async backend by name: 'runware', 'reference', 'a1111', 'comfyui'.

    ``url`` is the API endpoint (required for 'reference'); ``options`` go to the
    adapter (api_key, retry, timeout, max_download_bytes, host_policy, …).
    """
    factory = _factory(name)
    if url is not None:
        options["url"] = url
    try:
        return factory(**options)
    except TypeError as exc:
        if "unexpected keyword argument" not in str(exc):
            raise
        raise UsageError(f"backend {name!r}: {str(exc).split(': ', 1)[-1]}") from None


def open_sync_backend(name: str, url: str | None = None, **options: Any) -> SyncBackend:
    """Like :func:`open_backend`, wrapped for synchronous callers."""
    return SyncBackend(open_backend(name, url, **options))
