"""Pair Runware request tasks with their results: the one place that does it.

The recording transport, the proxy and the proxy's webhook receiver all feed raw bytes
here and get back the records (redacted) and the outputs to fingerprint.

* Results and errors are matched to tasks by ``taskUUID``, never by position.
* A task whose response carries no output yet (an async acknowledgement, a webhook
  request, ``status: processing``) is remembered as *pending*; a later response that
  delivers its results (``getResponse`` polling, a webhook POST, any envelope naming
  that taskUUID) is paired with it. Pending tasks survive a restart (``pending.jsonl``
  in the spool directory).
* Errors that name no task (HTTP 401, 429 or 5xx for the whole request) are not
  task failures: nothing ran and the caller usually retries the same taskUUID, so
  they are not recorded (task-scoped errors are, as failed records).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.capture.encodings import decode_body as _decode_body
from ledger.capture.entries import Output
from ledger.core.files import atomic_write
from ledger.core.records import NewRecord, Source
from ledger.core.redaction import redact, redact_text
from ledger.core.runware import (
    file_results,
    flat_result,
    is_delivered,
    is_inference_task,
    output_url_of,
    output_uuid_of,
    records_for_task,
    split_envelope,
)
from ledger.errors import LedgerError

log = logging.getLogger(__name__)

_PAYLOAD_FIELDS = ("imageBase64Data", "videoBase64Data", "audioBase64Data", "outputBase64Data")
_DATA_URI_FIELDS = ("imageDataURI", "videoDataURI", "audioDataURI")
PENDING_TTL_S = 24 * 3600
MAX_PENDING = 100_000


class CaptureParseError(Exception):
    """A response body (or webhook body) that could not be read as a Runware envelope."""


@dataclass
class Captured:
    records: list[NewRecord] = field(default_factory=list)
    outputs: dict[str, Output] = field(default_factory=dict)
    unpaired: int = 0  # results for tasks this process never saw
    completed: int = 0  # pending tasks now fully delivered (all outputs, or failed)
    known_secrets: tuple[str, ...] = ()


def decode_body(raw: bytes, content_encoding: str | None) -> bytes:
    """The body with its Content-Encoding removed (the transport and proxy see the
    bytes as sent). Raises CaptureParseError for a body we cannot undo."""
    return _decode_body(raw, content_encoding, error=CaptureParseError)


def secrets_from_headers(headers: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """Credential values in request headers, so they can be cut out wherever echoed."""
    out = []
    for name, value in headers:
        lower = name.lower()
        if lower in ("authorization", "proxy-authorization"):
            token = value.split(None, 1)[-1].strip()
            if token:
                out.append(token)
        elif lower in ("x-api-key", "api-key", "apikey", "x-runware-api-key") and value:
            out.append(value)
    return tuple(s for s in out if len(s) >= 4)


def parse_tasks(body: bytes) -> list[dict[str, Any]] | None:
    """The task list of a Runware request, or None when the body is not one."""
    if not body or b"taskType" not in body:
        return None
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        return None
    return value


def _output_of(result: Mapping[str, Any]) -> Output | None:
    parts = file_results(result)
    if parts:  # a 3dInference result of several files: fingerprinted together
        outputs = [_output_of(part) for part in parts]
        if any(o is None for o in outputs):
            return None
        datas = [o.data for o in outputs if o is not None and o.data is not None]
        if len(datas) == len(outputs):
            from ledger.fingerprint.mesh_files import pack_files

            return Output(data=pack_files(datas))
        return Output(files=tuple(o for o in outputs if o is not None))
    result = flat_result(result)  # a 3dInference result of one file in outputs.files
    for key in _PAYLOAD_FIELDS:
        value = result.get(key)
        if isinstance(value, str) and value:
            with contextlib.suppress(binascii.Error, ValueError):
                return Output(data=base64.b64decode(value, validate=False))
    for key in _DATA_URI_FIELDS:
        value = result.get(key)
        if isinstance(value, str) and "," in value:
            with contextlib.suppress(binascii.Error, ValueError):
                return Output(data=base64.b64decode(value.split(",", 1)[1]))
    url = output_url_of(result)
    return Output(url=url) if url else None


class PendingTasks:
    """Tasks acknowledged but not yet delivered, by taskUUID, journaled to a small
    append-only file (one JSON line per change, compacted now and then) so an async task
    submitted before a restart or a kill is still recorded when it is delivered. Each
    change costs one short append on the caller's path, whatever the number pending."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._tasks: dict[str, dict[str, Any]] = {}
        self._lines = 0
        if path is not None and path.exists():
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("pending tasks file %s unreadable (%s); starting empty", path, exc)
            return
        for number, line in enumerate(text.splitlines(), 1):
            try:
                change = json.loads(line)
                key, value = change["k"], change["v"]
            except (ValueError, KeyError, TypeError):
                log.warning("pending tasks file %s: line %d unreadable (torn write?); skipped", path, number)
                continue
            if value is None:
                self._tasks.pop(key, None)
            else:
                self._tasks[key] = value
            self._lines += 1

    def __len__(self) -> int:
        return len(self._tasks)

    def get(self, task_uuid: str) -> dict[str, Any] | None:
        with self._lock:
            item = self._tasks.get(task_uuid)
            return None if item is None else item["task"]

    def add(self, task: Mapping[str, Any], delivered: int = 0, seen: Iterable[str | None] = ()) -> None:
        with self._lock:
            now = time.time()
            if len(self._tasks) >= MAX_PENDING:
                self._expire(now)
            key = str(task["taskUUID"])
            self._tasks[key] = {"task": dict(task), "delivered": delivered, "at": now}
            if ids := [i for i in seen if i]:
                self._tasks[key]["seen"] = ids
            self._journal(key)

    def delivered(
        self, task_uuid: str, outputs: int, failed: bool, output_ids: Iterable[str | None] = ()
    ) -> bool:
        """Count delivered outputs; True when that completes the task. Outputs with an id
        count once however often they are delivered: polling may answer with every
        result so far, each time."""
        with self._lock:
            item = self._tasks.get(task_uuid)
            if item is None:
                return False
            ids = [i for i in output_ids if i]
            if ids:
                seen = item.setdefault("seen", [])
                fresh = [i for i in dict.fromkeys(ids) if i not in seen]
                seen.extend(fresh)
                outputs = outputs - len(ids) + len(fresh)
            item["delivered"] += outputs
            wanted = item["task"].get("numberResults") or 1
            done = failed or not isinstance(wanted, int) or item["delivered"] >= wanted
            if done:
                del self._tasks[task_uuid]
            self._journal(task_uuid)
            return done

    def _expire(self, now: float) -> None:
        old = [k for k, v in self._tasks.items() if now - v["at"] > PENDING_TTL_S]
        for key in old:
            del self._tasks[key]
        while len(self._tasks) >= MAX_PENDING:
            self._tasks.pop(next(iter(self._tasks)))
        self._compact()

    def _journal(self, key: str) -> None:
        if self.path is None:
            return
        if self._lines > 1000 and self._lines > 4 * len(self._tasks):
            self._compact()
            return
        line = json.dumps({"k": key, "v": self._tasks.get(key)}, separators=(",", ":")) + "\n"
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line.encode("utf-8"))
            finally:
                os.close(fd)
            self._lines += 1
        except OSError as exc:
            log.warning("cannot journal pending task to %s: %s", self.path, exc.strerror)

    def _compact(self) -> None:
        if self.path is None:
            return
        lines = [json.dumps({"k": k, "v": v}, separators=(",", ":")) + "\n" for k, v in self._tasks.items()]
        try:
            atomic_write(self.path, "".join(lines))
            self._lines = len(lines)
        except OSError as exc:
            log.warning("cannot compact pending tasks in %s: %s", self.path, exc.strerror)


class Pairer:
    """Turns request/response bytes into records. Thread-safe."""

    def __init__(
        self,
        pending: PendingTasks,
        *,
        source: Source = Source.HOOK,
        backend: str = "runware",
        tags: tuple[str, ...] = (),
        experiment_id: str | None = None,
    ) -> None:
        self.pending = pending
        self.source = source
        self.backend = backend
        self.tags = tags
        self.experiment_id = experiment_id

    def exchange(
        self,
        request_body: bytes,
        response_body: bytes,
        *,
        content_encoding: str | None = None,
        known_secrets: tuple[str, ...] = (),
    ) -> Captured | None:
        """Records for one request/response pair; None when the request is not a
        Runware task request (nothing is parsed beyond that). ``response_body`` is as
        sent; its ``content_encoding`` is undone here. Raises CaptureParseError for an
        unreadable response."""
        tasks = parse_tasks(request_body)
        if tasks is None:
            return None
        secrets = list(known_secrets)
        for task in tasks:
            if task.get("taskType") == "authentication" and isinstance(task.get("apiKey"), str):
                secrets.append(task["apiKey"])
        relevant = [t for t in tasks if is_inference_task(t) or t.get("taskType") == "getResponse"]
        if not relevant:
            return None
        data, errors = self._envelope(decode_body(response_body, content_encoding), tuple(secrets))
        captured = Captured(known_secrets=tuple(secrets))
        inference = {str(t.get("taskUUID")): t for t in tasks if is_inference_task(t) and t.get("taskUUID")}
        unscoped = [e for e in errors if not e.get("taskUUID")]
        self._pair(data, [e for e in errors if e.get("taskUUID")], inference, captured, unscoped)
        return captured

    def webhook(self, body: bytes, *, known_secrets: tuple[str, ...] = ()) -> Captured:
        """Records for a webhook delivery (one result object, a list, or an envelope)."""
        try:
            value = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CaptureParseError(f"webhook body is not JSON: {exc.__class__.__name__}") from None
        if isinstance(value, dict) and "data" not in value and "errors" not in value and "error" not in value:
            value = [value]
        data, errors = self._split(value)
        captured = Captured(known_secrets=known_secrets)
        self._pair(data, errors, {}, captured, [])
        return captured

    def submitted(self, tasks: list[dict[str, Any]], *, known_secrets: tuple[str, ...] = ()) -> int:
        """Inference tasks sent on a socket (WebSocket): each becomes pending until its
        results arrive, in whatever later frames carry them. Returns how many."""
        count = 0
        for task in tasks:
            task_uuid = task.get("taskUUID")
            # A task sent again (an SDK resending after a reconnect) keeps what was delivered.
            if is_inference_task(task) and isinstance(task_uuid, str) and self.pending.get(task_uuid) is None:
                self.pending.add(redact(dict(task), known_secrets))
                count += 1
        return count

    def frame(self, body: bytes, *, known_secrets: tuple[str, ...] = ()) -> Captured | None:
        """Records for one server frame on a socket: results and task-scoped errors of
        pending tasks (any number of tasks per frame, any number of frames per task).
        None for a frame that names no task (auth replies, pongs)."""
        if b"taskUUID" not in body:
            return None
        try:
            value = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CaptureParseError(f"frame is not JSON: {exc.__class__.__name__}") from None
        data, errors = self._split(value)
        # conflictTaskUUID answers a task sent again (an SDK resending after a reconnect):
        # the original still runs and delivers, so it is no failure of that task.
        scoped = [e for e in errors if e.get("taskUUID") and e.get("code") != "conflictTaskUUID"]
        captured = Captured(known_secrets=known_secrets)
        self._pair(data, scoped, {}, captured, [])
        return captured

    # -- internals ---------------------------------------------------------------------

    def _envelope(self, body: bytes, secrets: tuple[str, ...]) -> tuple[list[Any], list[Any]]:
        try:
            value = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CaptureParseError(f"response body is not JSON: {exc.__class__.__name__}") from None
        return self._split(value)

    @staticmethod
    def _split(value: Any) -> tuple[list[Any], list[Any]]:
        try:
            data, errors = split_envelope(value)
        except LedgerError as exc:
            raise CaptureParseError(str(exc)) from None
        # Errors that carry status "error" may also be listed under data by some servers.
        moved = [d for d in data if d.get("status") == "error"]
        if moved:
            data = [d for d in data if d.get("status") != "error"]
            errors = [*errors, *moved]
        return list(data), list(errors)

    def _pair(
        self,
        data: list[Mapping[str, Any]],
        errors: list[Mapping[str, Any]],
        inference: Mapping[str, Mapping[str, Any]],
        captured: Captured,
        unscoped: list[Mapping[str, Any]],
    ) -> None:
        results_by: dict[str, list[Mapping[str, Any]]] = {}
        for item in data:
            if is_delivered(item):
                results_by.setdefault(str(item.get("taskUUID")), []).append(item)
        errors_by: dict[str, list[Mapping[str, Any]]] = {}
        for item in errors:
            errors_by.setdefault(str(item.get("taskUUID")), []).append(item)
        secrets = captured.known_secrets
        for task_uuid, request in inference.items():
            # A request-level error (401, 429, 5xx) names no task: nothing ran, and the
            # caller will likely retry the same taskUUID, so nothing is recorded for it.
            if task_uuid not in results_by and task_uuid not in errors_by and not unscoped:
                self.pending.add(redact(dict(request), secrets))
        for task_uuid in dict.fromkeys([*results_by, *errors_by]):
            task = inference.get(task_uuid)
            from_pending = task is None
            if task is None:
                task = self.pending.get(task_uuid)
            if task is None:
                captured.unpaired += len(results_by.get(task_uuid, ())) + len(errors_by.get(task_uuid, ()))
                continue
            results = results_by.get(task_uuid, [])
            if results and all(isinstance(r.get("resultIndex"), int) for r in results):
                results = sorted(results, key=lambda r: r["resultIndex"])
            task_errors = errors_by.get(task_uuid, [])
            try:
                records = records_for_task(
                    task,
                    results,
                    task_errors,
                    backend=self.backend,
                    source=self.source,
                    tags=self.tags,
                    experiment_id=self.experiment_id,
                    known_secrets=secrets,
                )
            except LedgerError as exc:
                raise CaptureParseError(redact_text(f"task {task_uuid}: {exc}", secrets)) from None
            for record, result in zip(records, results, strict=False):
                output = _output_of(result)
                # Every modality is fingerprinted (off the caller's path, by the writer).
                if output is not None and record.idempotency_key:
                    captured.outputs[record.idempotency_key] = output
            captured.records.extend(records)
            wanted = task.get("numberResults") or 1
            if from_pending:
                ids = [output_uuid_of(r) for r in results]
                if self.pending.delivered(task_uuid, len(results), bool(task_errors), ids):
                    captured.completed += 1
            elif not task_errors and isinstance(wanted, int) and len(results) < wanted:
                # Part of a multi-output task delivered so far: wait for the rest.
                seen = [output_uuid_of(r) for r in results]
                self.pending.add(redact(dict(task), secrets), delivered=len(results), seen=seen)
