"""The one backend protocol: a request in, each output's bytes and reported seed out.

Every adapter (Runware and the reference server, AUTOMATIC1111/Forge, ComfyUI) is an
:class:`AsyncBackend`. Replays, sweeps and the demo build a :class:`GenerationRequest`
(usually with :func:`request_from_record`), call :meth:`AsyncBackend.generate`, and
get a :class:`GenerationResult` whose outputs carry the bytes, the seed *the backend
reported*, and the task/output UUIDs, cost and retry counts. Backends are opened by
name through ``registry``; ``sync.SyncBackend`` wraps one for synchronous callers.

Errors are :class:`~ledger.errors.BackendError` subclasses, each with a stable
``code`` (for audit results) and a one-line message that never contains a secret::

    BackendError
    ├── BackendUnavailable     connection refused / reset after all retries
    ├── BackendTimeout         a request, download or polling deadline passed
    ├── RateLimited            still 429 after all retries
    ├── BackendHTTPError       any other unexpected HTTP status
    │   └── AuthenticationError  401/403, or no API key configured
    ├── TaskFailed             the backend answered with an error for this task
    ├── MalformedResponse      not JSON, or not the documented shape
    ├── DownloadError          refused URL, oversized or wrong content type
    └── UnsupportedRequest     this request cannot run on this backend
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from hashlib import sha256
from typing import Any, Protocol, TypeVar, runtime_checkable

from ledger.core.records import Modality, Record, utcnow
from ledger.core.redaction import REDACTED
from ledger.errors import BackendError, UsageError

T = TypeVar("T")

__all__ = [
    "DELIVERY_FIELDS",
    "AsyncBackend",
    "AuthenticationError",
    "Backend",
    "BackendHTTPError",
    "BackendTimeout",
    "BackendUnavailable",
    "DownloadError",
    "GeneratedOutput",
    "GenerationRequest",
    "GenerationResult",
    "MalformedResponse",
    "RateLimited",
    "TaskFailed",
    "UnsupportedRequest",
    "protocol_of",
    "request_from_params",
    "request_from_record",
    "sniff_media_type",
]


# -- errors ----------------------------------------------------------------------------


class _BackendFailure(BackendError):
    """Common fields of every backend error (messages are redacted by the raiser)."""

    code = "backend-error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        task_uuid: str | None = None,
        attempts: int = 0,
        retries: int = 0,
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.status = status
        self.task_uuid = task_uuid
        self.attempts = attempts
        self.retries = retries


class BackendUnavailable(_BackendFailure):
    code = "unavailable"


class BackendTimeout(_BackendFailure):
    code = "timeout"


class RateLimited(_BackendFailure):
    code = "rate-limited"


class BackendHTTPError(_BackendFailure):
    code = "http-error"


class AuthenticationError(BackendHTTPError):
    code = "auth"


class TaskFailed(_BackendFailure):
    """The backend reported an error for this task; ``code`` is the backend's own."""

    code = "task-failed"


class MalformedResponse(_BackendFailure):
    code = "malformed-response"


class DownloadError(_BackendFailure):
    code = "download-refused"


class UnsupportedRequest(_BackendFailure):
    code = "unsupported"


# -- requests --------------------------------------------------------------------------

#: Fields of a stored request that concern delivery, not what is generated: a replay
#: must not post to the original webhook or upload endpoint, and gets a fresh taskUUID.
DELIVERY_FIELDS = frozenset({"taskUUID", "webhookURL", "uploadEndpoint", "apiKey"})

# Record backends and the protocol their params are written in.
_PROTOCOLS = {
    "runware": "runware",
    "reference": "runware",
    "a1111": "a1111",
    "forge": "a1111",
    "automatic1111": "a1111",
    "comfyui": "comfyui",
    "comfy": "comfyui",
    "diffusers": "diffusers",
}


def protocol_of(backend: str) -> str:
    """The request protocol of a backend name ('runware', 'a1111' or 'comfyui')."""
    try:
        return _PROTOCOLS[backend.lower()]
    except KeyError:
        raise UnsupportedRequest(
            f"no replay protocol for backend {backend!r}; known: {', '.join(sorted(_PROTOCOLS))}"
        ) from None


@dataclass(frozen=True, kw_only=True)
class GenerationRequest:
    """What to generate, in one backend protocol's own terms.

    ``params`` is the backend-native request (a Runware task, an A1111 payload or
    a ComfyUI API graph); ``seed`` and ``number_results`` override what it says.
    ``output_index`` picks one output of a batch the backend can only replay whole
    (ComfyUI draws one noise tensor for the whole batch).
    """

    protocol: str
    params: Mapping[str, Any]
    task_type: str = "imageInference"
    modality: Modality = Modality.IMAGE
    seed: int | None = None
    model: str | None = None
    number_results: int = 1
    output_format: str | None = None
    output_index: int | None = None
    #: The record this request replays, if any.
    record_id: int | None = None

    def __post_init__(self) -> None:
        # A private deep copy: the adapter may not change the caller's record.
        object.__setattr__(self, "params", copy.deepcopy(dict(self.params)))
        if self.number_results < 1:
            raise UsageError("number_results must be at least 1")


def _clean_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The stored request minus delivery fields and values removed as secrets."""
    return {key: value for key, value in params.items() if key not in DELIVERY_FIELDS and value != REDACTED}


def request_from_params(
    protocol: str,
    params: Mapping[str, Any],
    *,
    seed: int | None = None,
    number_results: int = 1,
    output_format: str | None = None,
    task_type: str | None = None,
    modality: Modality | None = None,
    model: str | None = None,
) -> GenerationRequest:
    """A request from backend-native parameters (sweeps use this to vary the seed)."""
    proto = protocol_of(protocol)
    cleaned = _clean_params(params)
    kind = task_type or str(cleaned.get("taskType") or "imageInference")
    if modality is None:
        modality = {
            "videoInference": Modality.VIDEO,
            "audioInference": Modality.AUDIO,
            "3dInference": Modality.MODEL_3D,
        }.get(kind, Modality.IMAGE)
    if model is None and isinstance(cleaned.get("model"), str):
        model = cleaned["model"]
    return GenerationRequest(
        protocol=proto,
        params=cleaned,
        task_type=kind,
        modality=modality,
        seed=seed,
        model=model,
        number_results=number_results,
        output_format=output_format,
    )


def request_from_record(
    record: Record,
    *,
    number_results: int = 1,
    output_format: str | None = None,
) -> GenerationRequest:
    """The replay request for one stored output: its params verbatim (minus delivery
    fields), its stored seed, and ``numberResults: 1`` unless asked otherwise.
    ``output_format`` overrides the stored one (e.g. PNG to avoid lossy replays)."""
    proto = protocol_of(record.backend)
    return GenerationRequest(
        protocol=proto,
        params=_clean_params(record.params),
        task_type=record.task_type,
        modality=record.modality,
        seed=record.seed,
        model=record.model,
        number_results=number_results,
        output_format=output_format,
        # ComfyUI (one noise tensor per batch) and diffusers (one generator consumed
        # across a batch) replay the whole batch and need to know which output it was.
        output_index=record.output_index if proto in ("comfyui", "diffusers") else None,
        record_id=record.id,
    )


# -- results ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class GeneratedOutput:
    """One output: its bytes and what the backend reported about it."""

    data: bytes = field(repr=False)
    seed: int | None
    media_type: str
    index: int = 0
    task_uuid: str | None = None
    output_uuid: str | None = None
    cost: float | None = None
    #: The backend's result object with payloads stripped and secrets removed.
    metadata: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return sha256(self.data).hexdigest()


@dataclass(frozen=True, kw_only=True)
class GenerationResult:
    """Everything one request produced, with how hard it was to get."""

    backend: str
    request: GenerationRequest = field(repr=False)
    task_uuid: str | None
    outputs: tuple[GeneratedOutput, ...]
    #: HTTP requests made (first tries, retries, polls and downloads).
    attempts: int = 0
    #: Of those, how many were retries after 408/429/5xx or a connection failure.
    retries: int = 0
    #: getResponse / history polls made while waiting for an async task.
    polls: int = 0
    elapsed_s: float = 0.0
    started_at: datetime = field(default_factory=utcnow)
    metadata: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def cost(self) -> float | None:
        costs = [o.cost for o in self.outputs if o.cost is not None]
        return sum(costs) if costs else None

    @property
    def seeds(self) -> tuple[int | None, ...]:
        return tuple(o.seed for o in self.outputs)


def sniff_media_type(data: bytes, default: str = "application/octet-stream") -> str:
    """The media type of ``data`` from its magic bytes."""
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[4:8] == b"ftyp":
        return "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    if head.startswith(b"ID3") or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    return default


# -- the protocol ----------------------------------------------------------------------


@runtime_checkable
class Backend(Protocol):
    """What replays, sweeps and the demo rely on."""

    name: str

    async def generate(self, request: GenerationRequest) -> GenerationResult: ...

    async def generate_many(
        self, requests: Sequence[GenerationRequest], *, concurrency: int = 4
    ) -> list[GenerationResult | BackendError]: ...

    async def aclose(self) -> None: ...


class AsyncBackend:
    """Base class of the adapters: ``generate`` is theirs, the rest is shared."""

    name: str = "backend"
    #: Which request protocol this backend speaks.
    protocol: str = "runware"

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        raise NotImplementedError

    async def replay(self, record: Record, **options: Any) -> GenerationResult:
        """Generate one stored output again with its stored parameters and seed."""
        return await self.generate(request_from_record(record, **options))

    async def generate_many(
        self, requests: Sequence[GenerationRequest], *, concurrency: int = 4
    ) -> list[GenerationResult | BackendError]:
        """Run requests with bounded concurrency; one failure does not stop the rest.

        Returns, in request order, each result or the BackendError it failed with.
        """
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(request: GenerationRequest) -> GenerationResult | BackendError:
            async with gate:
                try:
                    return await self.generate(request)
                except BackendError as exc:
                    return exc

        return list(await asyncio.gather(*(one(r) for r in requests)))

    def check_protocol(self, request: GenerationRequest) -> None:
        if request.protocol != self.protocol:
            raise UnsupportedRequest(
                f"{self.name} speaks the {self.protocol} protocol; "
                f"this request is written for {request.protocol}"
            )

    async def aclose(self) -> None:
        return None

    async def __aenter__(self: T) -> T:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
