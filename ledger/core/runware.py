"""Runware-shaped input: request tasks and their results become records.

Runware answers ``{"data": [...], "errors": [...]}``; results arrive in any order and
are matched to their task by ``taskUUID``, never by position. With
``numberResults > 1`` each result reports its own seed, which is stored as reported
and never derived (the docs do not promise sequential seeds).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ledger.core.records import Modality, NewRecord, SeedOrigin, Source, Status, utcnow
from ledger.core.redaction import redact
from ledger.core.seeds import parse_seed
from ledger.errors import InvalidInputError, InvalidSeedError

#: Task types that produce outputs, and the modality of those outputs.
INFERENCE_TASKS: dict[str, Modality] = {
    "imageInference": Modality.IMAGE,
    "photoMaker": Modality.IMAGE,
    "videoInference": Modality.VIDEO,
    "audioInference": Modality.AUDIO,
    "3dInference": Modality.MODEL_3D,
}

_OUTPUT_UUID_KEYS = ("imageUUID", "videoUUID", "audioUUID", "outputUUID")
_OUTPUT_LOCATION_KEYS = ("imageURL", "videoURL", "audioURL", "outputURL")
# Large payloads stay out of the ledger: they are fingerprinted, not stored.
_PAYLOAD_KEYS = frozenset(
    {
        "imageBase64Data",
        "imageDataURI",
        "videoBase64Data",
        "videoDataURI",
        "audioBase64Data",
        "audioDataURI",
        "outputBase64Data",
        "outputDataURI",
    }
)
_FILE_KEYS = {
    "uuid": "outputUUID",
    "url": "outputURL",
    "base64Data": "outputBase64Data",
    "dataURI": "outputDataURI",
}
_RUNWARE_DEFAULT_SCHEDULERS = frozenset({"", "default"})


def _expect(task: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = task.get(key)
    if value is None:
        return None
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise InvalidInputError(f"{where}.{key}: expected {_kind_name(kind)}, got a boolean")
    if not isinstance(value, kind):
        raise InvalidInputError(f"{where}.{key}: expected {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {"str": "a string", "int": "an integer", "float": "a number"}
    return " or ".join(names.get(k.__name__, k.__name__) for k in kinds)


def _seed(value: Any, where: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_seed(value)
    except InvalidSeedError as exc:
        raise InvalidSeedError(f"{where}: {exc}") from None


def is_inference_task(task: Mapping[str, Any]) -> bool:
    task_type = task.get("taskType")
    return isinstance(task_type, str) and task_type in INFERENCE_TASKS  # a list is unhashable


def files_of(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A 3dInference result's ``outputs.files`` (``{uuid, url}`` each), or []."""
    outputs = result.get("outputs")
    files = outputs.get("files") if isinstance(outputs, Mapping) else None
    return [f for f in files if isinstance(f, Mapping)] if isinstance(files, list) else []


def flat_result(result: Mapping[str, Any]) -> Mapping[str, Any]:
    """A result whose output is ``outputs.files`` seen with the first file as its output
    (``outputUUID``/``outputURL``/…): a 3D result is one record, named by its first file;
    its files are fingerprinted together (:func:`file_results`)."""
    files = files_of(result)
    if not files or any(result.get(k) for k in (*_OUTPUT_UUID_KEYS, *_OUTPUT_LOCATION_KEYS)):
        return result
    flat = dict(result)
    flat.update(
        {name: files[0][key] for key, name in _FILE_KEYS.items() if isinstance(files[0].get(key), str)}
    )
    return flat


def file_results(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each file of a result with several ``outputs.files`` seen as a result of its own
    (``outputURL``/``outputBase64Data``/…), in order; [] for a result of one file or none.
    The files of one result are one record, fingerprinted together."""
    files = files_of(result)
    if len(files) < 2 or any(result.get(k) for k in (*_OUTPUT_UUID_KEYS, *_OUTPUT_LOCATION_KEYS)):
        return []
    return [{name: f[key] for key, name in _FILE_KEYS.items() if isinstance(f.get(key), str)} for f in files]


def strip_payloads(result: Mapping[str, Any], known_secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """The result without base64 payloads (kept as their size), secrets removed
    (``known_secrets`` wherever they appear, even in a field a server echoes)."""
    out: dict[str, Any] = {}
    for key, value in result.items():
        if key in _PAYLOAD_KEYS and isinstance(value, str):
            out[key + "Length"] = len(value)
        elif key == "outputs" and files_of(result):
            out[key] = {**value, "files": [_strip_file(f) for f in files_of(result)]}
        else:
            out[key] = value
    redacted: dict[str, Any] = redact(out, known_secrets)
    return redacted


def _strip_file(file: Mapping[str, Any]) -> dict[str, Any]:
    return {
        (k + "Length" if k in ("base64Data", "dataURI") and isinstance(v, str) else k): (
            len(v) if k in ("base64Data", "dataURI") and isinstance(v, str) else v
        )
        for k, v in file.items()
    }


def is_delivered(result: Mapping[str, Any]) -> bool:
    """True when a result carries an output; async acknowledgements and
    ``status: processing`` poll answers do not."""
    if result.get("status") in ("processing", "pending"):
        return False
    keys = (*_OUTPUT_UUID_KEYS, *_OUTPUT_LOCATION_KEYS, *_PAYLOAD_KEYS)
    flat = flat_result(result)
    return any(flat.get(key) for key in keys)


def output_uuid_of(result: Mapping[str, Any]) -> str | None:
    result = flat_result(result)
    for key in _OUTPUT_UUID_KEYS:
        value = result.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def output_url_of(result: Mapping[str, Any]) -> str | None:
    result = flat_result(result)
    for key in _OUTPUT_LOCATION_KEYS:
        value = result.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def records_for_task(
    task: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    errors: Sequence[Mapping[str, Any]] = (),
    *,
    backend: str = "runware",
    source: Source = Source.API,
    created_at: datetime | None = None,
    experiment_id: str | None = None,
    parent_id: int | None = None,
    tags: tuple[str, ...] = (),
    known_secrets: tuple[str, ...] = (),
) -> list[NewRecord]:
    """Build one record per output of ``task`` (or one failed record per error).

    ``results`` and ``errors`` must already belong to this task (same taskUUID).
    Raises :class:`InvalidInputError` when the task or a result has wrong types.
    """
    task_uuid = _expect(task, "taskUUID", str, "task")
    where = f"task {task_uuid}" if task_uuid else "task"
    task_type = _expect(task, "taskType", str, where)
    if task_type not in INFERENCE_TASKS:
        raise InvalidInputError(f"{where}: taskType {task_type!r} produces no outputs")
    if not task_uuid:
        raise InvalidInputError(f"{where}: taskUUID is required")
    model = _expect(task, "model", str, where)
    if not model:
        raise InvalidInputError(f"{where}: model is required")
    request_seed = _seed(task.get("seed"), f"{where}.seed")
    number_results = _expect(task, "numberResults", int, where) or 1
    if number_results < 1:
        raise InvalidInputError(f"{where}.numberResults: must be at least 1")
    scheduler_requested = _expect(task, "scheduler", str, where)
    cfg = _expect(task, "CFGScale", (int, float), where)
    output_format = _expect(task, "outputFormat", str, where)
    params = redact(dict(task), known_secrets)
    params.pop("apiKey", None)
    resolved_scheduler = (
        None
        if scheduler_requested is None or scheduler_requested.strip().lower() in _RUNWARE_DEFAULT_SCHEDULERS
        else scheduler_requested
    )
    common: dict[str, Any] = {
        "backend": backend,
        "task_type": task_type,
        "modality": INFERENCE_TASKS[task_type],
        "model": model,
        "scheduler_requested": scheduler_requested,
        "scheduler": resolved_scheduler,
        "prompt": _expect(task, "positivePrompt", str, where),
        "negative_prompt": _expect(task, "negativePrompt", str, where),
        "width": _expect(task, "width", int, where),
        "height": _expect(task, "height", int, where),
        "steps": _expect(task, "steps", int, where),
        "cfg_scale": float(cfg) if cfg is not None else None,
        "output_format": output_format.upper() if output_format else None,
        "params": params,
        "task_uuid": task_uuid,
        "source": source,
        "experiment_id": experiment_id,
        "parent_id": parent_id,
        "tags": tags,
        "created_at": created_at or utcnow(),
    }

    for position, result in enumerate(results):
        if not isinstance(result, Mapping):
            raise InvalidInputError(f"{where}: result {position} is not an object")
    delivered = [result for result in results if is_delivered(result)]
    records: list[NewRecord] = []
    for index, result in enumerate(delivered):
        returned_seed = _seed(result.get("seed"), f"{where} result {index} seed")
        if returned_seed is not None:
            seed: int | None = returned_seed
            origin = SeedOrigin.REQUEST if returned_seed == request_seed else SeedOrigin.RESPONSE
        elif request_seed is not None and number_results == 1:
            seed, origin = request_seed, SeedOrigin.REQUEST
        else:
            # Several outputs and no seed reported: never guess seed+i.
            seed, origin = None, SeedOrigin.UNKNOWN
        output_uuid = output_uuid_of(result)
        cost = _expect(result, "cost", (int, float), f"{where} result {index}")
        records.append(
            NewRecord(
                **common,
                seed=seed,
                seed_origin=origin,
                response=strip_payloads(result, known_secrets),
                output_uuid=output_uuid,
                output_index=index,
                cost=float(cost) if cost is not None else None,
                status=Status.OK,
                idempotency_key=f"{backend}:{task_uuid}:{output_uuid or index}",
            )
        )
    for index, error in enumerate(errors):
        if not isinstance(error, Mapping):
            raise InvalidInputError(f"{where}: error {index} is not an object")
        message = str(error.get("message") or error.get("error") or "task failed")
        records.append(
            NewRecord(
                **common,
                seed=request_seed,
                seed_origin=SeedOrigin.REQUEST if request_seed is not None else SeedOrigin.UNKNOWN,
                response=redact(dict(error), known_secrets),
                output_index=index,
                status=Status.FAILED,
                error_code=str(error.get("code") or "unknown"),
                error=redact(message, known_secrets),
                idempotency_key=f"{backend}:{task_uuid}:error:{index}",
            )
        )
    return records


def split_envelope(response: Any) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """Return (data, errors) from a Runware response envelope.

    Accepts ``{"data": [...], "errors": [...]}``, a bare list of results, and the older
    ``error`` field in each shape servers sent it: one object, a list of them (one per
    failed task), or a bare message (it names no task). Items of both fields count.
    """
    if isinstance(response, list):
        return _objects(response, "response"), []
    if not isinstance(response, Mapping):
        raise InvalidInputError("response: expected an object with data and/or errors")
    data = response.get("data") or []
    errors = response.get("errors") or []
    if not isinstance(data, list):
        raise InvalidInputError("response.data: expected a list")
    if not isinstance(errors, list):
        raise InvalidInputError("response.errors: expected a list")
    return _objects(data, "response.data"), [
        *_objects(errors, "response.errors"),
        *_legacy_errors(response.get("error")),
    ]


def _legacy_errors(value: Any) -> list[Mapping[str, Any]]:
    """The older ``error`` field as error items. Anything but an object becomes
    ``{"message": …}`` (naming no task), so an odd value never costs the frame's results."""
    if value is None or value is False or value == "":
        return []
    items = value if isinstance(value, list) else [value]
    return [item if isinstance(item, Mapping) else {"message": str(item)} for item in items]


def _objects(items: Iterable[Any], where: str) -> list[Mapping[str, Any]]:
    out = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise InvalidInputError(f"{where}[{index}]: expected an object")
        out.append(item)
    return out


def records_from_exchange(
    request: Any,
    response: Any,
    **options: Any,
) -> list[NewRecord]:
    """Records for every inference task in a Runware request/response pair.

    ``request`` is the task array (or one task); ``response`` the envelope. Results
    and errors are paired with tasks by ``taskUUID``; results for tasks not in the
    request (for example ``getResponse`` polling) are ignored here.
    """
    tasks = request if isinstance(request, list) else [request]
    tasks = _objects(tasks, "request")
    data, errors = split_envelope(response)
    by_task: dict[str, list[Mapping[str, Any]]] = {}
    errors_by_task: dict[str, list[Mapping[str, Any]]] = {}
    for item in data:
        by_task.setdefault(str(item.get("taskUUID")), []).append(item)
    for item in errors:
        errors_by_task.setdefault(str(item.get("taskUUID")), []).append(item)
    records: list[NewRecord] = []
    for task in tasks:
        if not is_inference_task(task):
            continue
        uuid = str(task.get("taskUUID"))
        results = by_task.get(uuid, [])
        # Sort by resultIndex when the server sends it; otherwise keep arrival order.
        if all(isinstance(r.get("resultIndex"), int) for r in results):
            results = sorted(results, key=lambda r: r["resultIndex"])
        records.extend(records_for_task(task, results, errors_by_task.get(uuid, []), **options))
    return records
