"""Replay requests for a backend other than the one that made the record.

A record from ``record_generation`` (backend ``local``, a diffusers pipeline, …) stores
its parameters in no backend's protocol. Its meaning is in the record's columns (model,
seed, scheduler, prompt, size, steps, CFG), so a backend whose protocol can say all of
that can replay it. What it cannot say is refused with the names of what is missing or
cannot be expressed, never silently dropped: a replay that ignored a parameter would
score a different generation.

A record already written in one protocol (Runware task, A1111 payload, ComfyUI graph)
is replayed verbatim by a backend of that protocol and refused by the others: its
parameters mean more than the columns hold (LoRAs, hires fix, graph nodes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledger.backends.base import (
    AsyncBackend,
    GenerationRequest,
    UnsupportedRequest,
    protocol_of,
    request_from_record,
)
from ledger.core.params import PARAM_COLUMNS
from ledger.core.records import Modality, Record
from ledger.errors import BackendError

# The parameters `record_generation` maps to columns, and the keys that repeat a column.
_REPEATS_A_COLUMN = frozenset({"seed", "model", "scheduler", "sampler", "sampler_name"})
_EXPRESSED = frozenset(name for names in PARAM_COLUMNS.values() for name in names) | _REPEATS_A_COLUMN


def own_protocol(backend: str) -> str | None:
    """The protocol a record's parameters are written in, or None (``local`` and the like)."""
    try:
        return protocol_of(backend)
    except BackendError:
        return None


def accepted_protocols(backend: AsyncBackend) -> tuple[str, ...]:
    """The request protocols ``backend`` takes: its own, or the several a backend such as
    diffusers lists in ``_PROTOCOLS`` (it maps Runware and A1111 requests itself)."""
    listed = getattr(backend, "_PROTOCOLS", None)
    return tuple(listed) if listed else (backend.protocol,)


def replay_request(record: Record, accepted: str | tuple[str, ...]) -> GenerationRequest:
    """The request that replays ``record`` on a backend taking the ``accepted`` protocols.

    Raises UnsupportedRequest naming what the protocol would need and the record lacks."""
    accepted = (accepted,) if isinstance(accepted, str) else accepted
    own = own_protocol(record.backend)
    if own in accepted:
        return request_from_record(record)
    protocol = next((p for p in accepted if p in _BUILDERS), accepted[0])
    if own is not None:
        raise UnsupportedRequest(
            f"record {record.id} holds a {own} request (backend {record.backend!r}); the {protocol} "
            f"protocol cannot express it: replay it on a {own} backend"
        )
    builder = _BUILDERS.get(protocol)
    if builder is None:
        raise UnsupportedRequest(
            f"record {record.id} (backend {record.backend!r}) has no {protocol} request to replay "
            f"(a {protocol} replay needs the original {protocol} request); use a runware or a1111 backend"
        )
    where = f"record {record.id} (backend {record.backend!r}) cannot be replayed in the {protocol} protocol"
    if record.modality != Modality.IMAGE:
        raise UnsupportedRequest(f"{where}: only image records can be rebuilt from their columns")
    unknown = sorted(str(k) for k in record.params if k not in _EXPRESSED)
    if unknown:
        raise UnsupportedRequest(f"{where}: it cannot express the parameter(s) {', '.join(unknown)}")
    return builder(record, where)


def _missing(where: str, record: Record, needed: tuple[str, ...]) -> None:
    absent = [name for name in needed if getattr(record, name) in (None, "")]
    if absent:
        needs = ", ".join(needed)
        raise UnsupportedRequest(f"{where}: the record has no {', '.join(absent)} (needs {needs})")


def _request(protocol: str, record: Record, params: dict[str, Any]) -> GenerationRequest:
    return GenerationRequest(
        protocol=protocol,
        params={k: v for k, v in params.items() if v is not None},
        task_type=record.task_type,
        modality=record.modality,
        seed=record.seed,
        model=record.model,
        output_format=record.output_format,
        record_id=record.id,
    )


def _runware(record: Record, where: str) -> GenerationRequest:
    _missing(where, record, ("model", "prompt", "width", "height"))
    task = {
        "taskType": record.task_type,
        "model": record.model,
        "positivePrompt": record.prompt,
        "negativePrompt": record.negative_prompt,
        "width": record.width,
        "height": record.height,
        "steps": record.steps,
        "CFGScale": record.cfg_scale,
        "scheduler": record.scheduler or record.scheduler_requested,
        # Unknown format: ask for lossless output, so encoding noise cannot blur the verdict.
        "outputFormat": record.output_format or "PNG",
    }
    return _request("runware", record, task)


def _a1111(record: Record, where: str) -> GenerationRequest:
    _missing(where, record, ("model", "prompt"))
    payload = {
        "prompt": record.prompt,
        "negative_prompt": record.negative_prompt,
        "width": record.width,
        "height": record.height,
        "steps": record.steps,
        "cfg_scale": record.cfg_scale,
        "sampler_name": record.scheduler or record.scheduler_requested,
    }
    return _request("a1111", record, payload)


_BUILDERS: dict[str, Callable[[Record, str], GenerationRequest]] = {"runware": _runware, "a1111": _a1111}
