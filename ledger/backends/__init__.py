"""Generation backends: one protocol, the Runware/A1111/ComfyUI adapters, the reference backend.

The reference backend (numpy, Pillow, Starlette, uvicorn) is imported on first use of
its names, so ``import ledger.backends`` and CLI start-up stay light.
"""

from typing import Any

from ledger.backends.a1111 import A1111Backend, request_from_a1111
from ledger.backends.base import (
    AsyncBackend,
    AuthenticationError,
    Backend,
    BackendHTTPError,
    BackendTimeout,
    BackendUnavailable,
    DownloadError,
    GeneratedOutput,
    GenerationRequest,
    GenerationResult,
    MalformedResponse,
    RateLimited,
    TaskFailed,
    UnsupportedRequest,
    request_from_params,
    request_from_record,
)
from ledger.backends.comfyui import ComfyUIBackend
from ledger.backends.http import HostPolicy, PollPolicy, RetryPolicy
from ledger.backends.registry import available_backends, open_backend, open_sync_backend, register_backend
from ledger.backends.runware import RunwareBackend
from ledger.backends.sync import SyncBackend

__all__ = [
    "A1111Backend",
    "AsyncBackend",
    "AuthenticationError",
    "Backend",
    "BackendHTTPError",
    "BackendTimeout",
    "BackendUnavailable",
    "ComfyUIBackend",
    "DownloadError",
    "GeneratedOutput",
    "GenerationRequest",
    "GenerationResult",
    "HostPolicy",
    "MalformedResponse",
    "PollPolicy",
    "RateLimited",
    "ReferenceGenerator",
    "ReferenceServer",
    "RetryPolicy",
    "RunwareBackend",
    "SyncBackend",
    "TaskFailed",
    "UnsupportedRequest",
    "available_backends",
    "open_backend",
    "open_sync_backend",
    "register_backend",
    "request_from_a1111",
    "request_from_params",
    "request_from_record",
]

_LAZY = {
    "ReferenceGenerator": "ledger.backends.reference.generator",
    "ReferenceServer": "ledger.backends.reference.server",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
