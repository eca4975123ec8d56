"""The reference server's knobs (fault injection, behaviour switches) and counters."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ledger.errors import InvalidInputError


@dataclass
class ServerKnobs:
    """Fault injection and behaviour switches. Rates are probabilities per HTTP request."""

    latency_ms: float = 0.0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    #: Seconds sent in ``Retry-After`` with each 429 (whole seconds, as HTTP wants).
    retry_after: int = 1
    stall_rate: float = 0.0
    #: How long a stalled request sleeps before answering 504 (should exceed the client timeout).
    stall_seconds: float = 30.0
    #: Silent model update: None/0 = original; a value (or {AIR: value, "*": value}) moves outputs.
    model_revision: int | str | dict[str, int | str] | None = None
    #: Return ``data`` items in random order, to exercise matching by ``taskUUID``.
    shuffle_results: bool = False
    #: getResponse polls answered "processing" before results are handed out.
    async_polls: int = 1
    #: Share of async tasks that end in a ``timeoutProvider`` error (``status: "error"``).
    async_error_rate: float = 0.0
    #: Seed for the knobs' random draws (429/500/stall/shuffle); None = unpredictable.
    knob_seed: int | None = None
    #: WebSocket: seconds without a client message before the server closes the socket.
    ws_idle_seconds: float = 120.0
    #: WebSocket: seconds undelivered results are kept for a client that resumes its session.
    ws_buffer_seconds: float = 120.0
    #: WebSocket: send each result of a multi-output task in its own frame.
    ws_split_results: bool = False
    #: Send errors (REST and WebSocket) in the older ``error`` field: ``"object"`` one
    #: object (a list when several), ``"list"`` always a list; None: ``{"errors": [...]}``.
    legacy_errors: str | None = None

    def check(self) -> None:
        if self.legacy_errors not in (None, "object", "list"):
            raise InvalidInputError(f"legacy_errors must be 'object' or 'list', got {self.legacy_errors!r}")
        for name in ("error_rate", "rate_limit_rate", "stall_rate", "async_error_rate"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise InvalidInputError(f"{name} must be between 0 and 1, got {value!r}")
        numbers = ("latency_ms", "stall_seconds", "retry_after", "async_polls")
        for name in (*numbers, "ws_idle_seconds", "ws_buffer_seconds"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and value >= 0 and math.isfinite(value)):
                raise InvalidInputError(f"{name} must be a non-negative number, got {value!r}")


def error_envelope(knobs: ServerKnobs, errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The errors part of an envelope, in the shape the knobs ask for."""
    if not errors:
        return {}
    if knobs.legacy_errors == "list":
        return {"error": errors}
    if knobs.legacy_errors == "object":
        return {"error": errors[0] if len(errors) == 1 else errors}
    return {"errors": errors}


@dataclass
class ServerStats:
    """Counters, updated on the server's event loop; read them from tests."""

    requests: int = 0
    unauthorized: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    stalled: int = 0
    tasks: int = 0
    task_errors: int = 0
    images: int = 0
    videos: int = 0
    audios: int = 0
    meshes: int = 0
    outputs_served: int = 0
