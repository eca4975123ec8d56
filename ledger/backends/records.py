"""Generation results become records, the same way captured traffic does.

Sweeps, the demo and test fixtures generate through a backend adapter and store what
came back. For the Runware protocol the task as sent and each output's reported
result go through :func:`ledger.core.runware.records_for_task`, the same mapping the
recording transport and proxy use, so a record looks the same however it arrived.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger.backends.base import GeneratedOutput, GenerationRequest, GenerationResult
from ledger.core.records import NewRecord, Source
from ledger.core.runware import records_for_task
from ledger.errors import BackendError

__all__ = ["Generated", "failed_record", "records_from_result", "sent_task"]

_OUTPUT_UUID_KEY = {"image": "imageUUID", "video": "videoUUID", "audio": "audioUUID"}


@dataclass(frozen=True)
class Generated:
    """A record ready to store, with the output bytes it describes."""

    record: NewRecord
    data: bytes
    #: The runtime the backend says it made the output in (diffusers), if any.
    environment: Mapping[str, Any] | None = None


def sent_task(request: GenerationRequest, task_uuid: str | None) -> dict[str, Any]:
    """The Runware task for ``request``, for adapters that do not report the task they
    sent (the Runware adapter does, in ``GenerationResult.metadata["task"]``)."""
    task = dict(request.params)
    task["taskType"] = request.task_type
    task["taskUUID"] = task_uuid or str(uuid.uuid4())
    task["numberResults"] = request.number_results
    if request.seed is not None:
        task["seed"] = request.seed
    if request.model is not None:
        task["model"] = request.model
    if request.output_format is not None:
        task["outputFormat"] = request.output_format
    return task


def _result_of(output: GeneratedOutput, modality: str, task_uuid: str) -> dict[str, Any]:
    result = dict(output.metadata)
    result.pop("environment", None)  # kept in record_environments, beside the record
    result["taskUUID"] = output.task_uuid or task_uuid
    key = _OUTPUT_UUID_KEY.get(modality, "outputUUID")
    result.setdefault(key, output.output_uuid or str(uuid.uuid4()))
    if output.seed is not None:
        result["seed"] = output.seed
    if output.cost is not None:
        result["cost"] = output.cost
    return result


def records_from_result(
    result: GenerationResult,
    *,
    source: Source,
    experiment_id: str | None = None,
    parent_id: int | None = None,
    tags: tuple[str, ...] = (),
) -> list[Generated]:
    """One record per output of ``result``, each with its bytes."""
    if result.request.protocol != "runware":
        raise BackendError(f"storing {result.request.protocol} results as records is not supported yet")
    sent = result.metadata.get("task")
    task = dict(sent) if isinstance(sent, Mapping) else sent_task(result.request, result.task_uuid)
    results = [_result_of(o, str(result.request.modality), task["taskUUID"]) for o in result.outputs]
    records = records_for_task(
        task,
        results,
        backend=result.backend,
        source=source,
        created_at=result.started_at,
        experiment_id=experiment_id,
        parent_id=parent_id,
        tags=tags,
    )
    return [
        Generated(r, o.data, _environment(o.metadata) or _environment(result.metadata))
        for r, o in zip(records, result.outputs, strict=True)
    ]


def _environment(metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    env = metadata.get("environment")
    return dict(env) if isinstance(env, Mapping) and env else None


def failed_record(
    request: GenerationRequest,
    error: BackendError,
    *,
    backend: str,
    source: Source,
    experiment_id: str | None = None,
    parent_id: int | None = None,
    tags: tuple[str, ...] = (),
) -> NewRecord:
    """A failed record for a request the backend did not fulfil (same mapping as a
    task-level error in captured traffic)."""
    task = sent_task(request, getattr(error, "task_uuid", None))
    reported = {"code": getattr(error, "code", "backend-error"), "message": str(error)}
    (record,) = records_for_task(
        task,
        [],
        [{**reported, "taskUUID": task["taskUUID"]}],
        backend=backend,
        source=source,
        experiment_id=experiment_id,
        parent_id=parent_id,
        tags=tags,
    )
    return record
