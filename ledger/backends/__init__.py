"""Generation backends: one protocol, the Runware/A1111/ComfyUI adapters, the reference backend."""

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
    SyncBackend,
    TaskFailed,
    UnsupportedRequest,
    available_backends,
    open_backend,
    open_sync_backend,
    register_backend,
    request_from_params,
    request_from_record,
)
from ledger.backends.comfyui import ComfyUIBackend
from ledger.backends.http import HostPolicy, PollPolicy, RetryPolicy
from ledger.backends.reference.generator import ReferenceGenerator
from ledger.backends.reference.server import ReferenceServer
from ledger.backends.runware import RunwareBackend

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
