"""Runware REST adapter (also the client of the bundled reference server).

``POST {url}`` with a JSON array of tasks and ``Authorization: Bearer <key>``; the
answer is ``{"data": [...]}`` and/or ``{"errors": [...]}``, with errors scoped per task
so one task may fail while others in the same request succeed. Results are matched to
tasks by ``taskUUID``, never by position. Outputs come as a URL (downloaded under the
shared size, type and host rules), base64 data or a data URI. Video and audio tasks
sent with ``deliveryMethod: async`` are acknowledged at once and collected by polling
``getResponse`` with growing intervals under a total deadline.

The API key comes from ``api_key=`` or ``RUNWARE_API_KEY``. It is held in a wrapper
whose repr is redacted, sent only to the configured API URL (never to download
hosts), and cut out of every message that could echo it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from ledger.backends.base import (
    AuthenticationError,
    BackendHTTPError,
    BackendTimeout,
    DownloadError,
    GeneratedOutput,
    GenerationRequest,
    GenerationResult,
    MalformedResponse,
    TaskFailed,
    UnsupportedRequest,
    sniff_media_type,
)
from ledger.backends.http import (
    DEFAULT_MAX_DOWNLOAD_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES,
    CallStats,
    HostPolicy,
    HttpBackend,
    HttpClient,
    PollPolicy,
    RetryPolicy,
    Secret,
    safe_url,
)
from ledger.core.records import utcnow
from ledger.core.redaction import redact
from ledger.core.runware import (
    file_results,
    flat_result,
    is_delivered,
    output_uuid_of,
    split_envelope,
    strip_payloads,
)
from ledger.core.seeds import check_seed_for_backend, parse_seed
from ledger.errors import BackendError, FingerprintError, InvalidInputError, InvalidSeedError

__all__ = [
    "DEFAULT_URL",
    "ENV_API_KEY",
    "PollPolicy",
    "RunwareBackend",
    "TaskDetails",
]

DEFAULT_URL = "https://api.runware.ai/v1"
ENV_API_KEY = "RUNWARE_API_KEY"

_OUTPUT_PREFIXES = ("image", "video", "audio", "output")
_FORMAT_TYPES = {
    "PNG": "image/png",
    "JPG": "image/jpeg",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "MP4": "video/mp4",
    "WEBM": "video/webm",
    "MOV": "video/quicktime",
    "MP3": "audio/mpeg",
    "WAV": "audio/wav",
    "FLAC": "audio/flac",
    "OGG": "audio/ogg",
}
_DATA_URI = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^;,]*)*?);base64,", re.ASCII)
_PENDING = frozenset({"processing", "pending", "queued"})


@dataclass(frozen=True)
class TaskDetails:
    """What ``getTaskDetails`` returned for a past task, secrets removed."""

    task_uuid: str
    #: As returned: the docs say the original task array; some servers send the task.
    request: Any
    response: Any

    @property
    def task(self) -> Mapping[str, Any] | None:
        """The original task itself, whichever shape ``request`` came in."""
        items = self.request if isinstance(self.request, list) else [self.request]
        tasks = [t for t in items if isinstance(t, Mapping)]
        for item in tasks:
            if item.get("taskUUID") == self.task_uuid:
                return item
        return tasks[0] if len(tasks) == 1 else None


class RunwareBackend(HttpBackend):
    """Runware's REST API (or any server speaking it, such as the reference server)."""

    protocol = "runware"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        name: str = "runware",
        require_key: bool = True,
        read_env: bool = True,
        output_type: str | None = None,
        include_cost: bool = True,
        delivery_method: str | None = None,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        timeout: float | httpx.Timeout = 120.0,
        max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        download_deadline: float = 300.0,
        host_policy: HostPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        parts = self.check_url(url, name, "API URL")
        key = api_key if api_key is not None else (os.environ.get(ENV_API_KEY) if read_env else None)
        if not key and require_key:
            raise AuthenticationError(f"no Runware API key: set {ENV_API_KEY} or pass api_key")
        self.name = name
        self.url = url
        self._key = Secret(key) if key else None
        self.output_type = output_type
        self.include_cost = include_cost
        self.delivery_method = delivery_method
        self.max_download_bytes = max_download_bytes
        self.poll = poll or PollPolicy()
        self._sleep = sleep or asyncio.sleep
        # The API host serves its own output URLs; allow it even on loopback.
        policy = (host_policy or HostPolicy()).with_host(parts.hostname)
        self._http = HttpClient(
            backend=name,
            timeout=timeout,
            retry=retry,
            host_policy=policy,
            max_download_bytes=max_download_bytes,
            max_response_bytes=max_response_bytes,
            download_deadline=download_deadline,
            secrets=(key,) if key else (),
            transport=transport,
            sleep=self._sleep,
            limits=limits,
        )

    # -- helpers -------------------------------------------------------------------

    def _redact(self, value: Any) -> Any:
        secrets = (self._key.reveal(),) if self._key else ()
        return redact(value, secrets)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key.reveal()}"
        return headers

    def build_task(self, request: GenerationRequest) -> dict[str, Any]:
        """The Runware task this request sends (fresh taskUUID, seed, numberResults)."""
        self.check_protocol(request)
        task = dict(request.params)
        task["taskType"] = task.get("taskType") or request.task_type
        task["taskUUID"] = str(uuid.uuid4())
        if request.model and not task.get("model"):
            task["model"] = request.model
        if request.seed is not None:
            try:
                check_seed_for_backend(request.seed, "runware")
            except InvalidSeedError as exc:
                raise UnsupportedRequest(str(exc), code="seed-out-of-range") from None
            task["seed"] = request.seed
        task["numberResults"] = request.number_results
        if request.output_format:
            task["outputFormat"] = request.output_format.upper()
        if self.output_type:
            task["outputType"] = self.output_type
        if self.include_cost:
            task.setdefault("includeCost", True)
        if self.delivery_method:
            task["deliveryMethod"] = self.delivery_method
        return task

    async def _call(self, tasks: list[dict[str, Any]], stats: CallStats) -> tuple[list[Any], list[Any]]:
        """POST tasks; (data, errors) of the envelope. Whole-request failures raise."""
        status, body = await self._http.request_json(
            "POST", self.url, stats=stats, json=tasks, headers=self._headers()
        )
        where = safe_url(self.url)
        if body is None:
            if 200 <= status < 300:
                raise MalformedResponse(
                    f"{self.name}: {where} answered HTTP {status} with an empty body", status=status
                )
            raise self._http_error(status, None, stats)
        try:
            data, errors = split_envelope(body)
        except InvalidInputError as exc:
            raise MalformedResponse(
                f"{self.name}: {where} answered with an unexpected shape ({self._redact(str(exc))})",
                status=status,
                attempts=stats.attempts,
                retries=stats.retries,
            ) from None
        if not 200 <= status < 300:
            ours = {t["taskUUID"] for t in tasks}
            scoped = [e for e in errors if e.get("taskUUID") in ours]
            if status in (401, 403) or not scoped:
                raise self._http_error(status, errors[0] if errors else None, stats)
        return list(data), list(errors)

    def _http_error(self, status: int, error: Mapping[str, Any] | None, stats: CallStats) -> BackendError:
        detail = ""
        code = None
        if error is not None:
            code = str(error.get("code") or "") or None
            message = str(error.get("message") or error.get("error") or "")
            detail = f": {code + ' ' if code else ''}{self._redact(message)}".rstrip()
        cls = AuthenticationError if status in (401, 403) else BackendHTTPError
        return cls(
            f"{self.name}: HTTP {status} from {safe_url(self.url)}{detail}",
            status=status,
            code=code if cls is BackendHTTPError else None,
            attempts=stats.attempts,
            retries=stats.retries,
        )

    def _task_failed(self, error: Mapping[str, Any], task_uuid: str, stats: CallStats) -> TaskFailed:
        code = str(error.get("code") or "task-failed")
        message = self._redact(str(error.get("message") or error.get("error") or "task failed"))
        parameter = error.get("parameter")
        where = f" (parameter {parameter})" if isinstance(parameter, str) and parameter else ""
        return TaskFailed(
            f"{self.name}: task {task_uuid} failed: {code}: {message}{where}",
            code=code,
            task_uuid=task_uuid,
            attempts=stats.attempts,
            retries=stats.retries,
        )

    # -- generate ------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        (outcome,) = await self.generate_batch([request])
        if isinstance(outcome, BackendError):
            raise outcome
        return outcome

    async def generate_batch(
        self, requests: Sequence[GenerationRequest]
    ) -> list[GenerationResult | BackendError]:
        """Send several tasks in ONE request; each gets its result or its own error.

        A failure of the whole request (auth, rate limit after retries, malformed
        answer) is returned for every task.
        """
        started_at = utcnow()
        stats = CallStats()
        outcomes: list[GenerationResult | BackendError | None] = [None] * len(requests)
        tasks: list[tuple[int, dict[str, Any]]] = []
        for index, request in enumerate(requests):
            try:
                tasks.append((index, self.build_task(request)))
            except BackendError as exc:
                outcomes[index] = exc
        if tasks:
            try:
                data, errors = await self._call([t for _, t in tasks], stats)
            except BackendError as exc:
                for index, _ in tasks:
                    outcomes[index] = exc
            else:
                general = [e for e in errors if not e.get("taskUUID")]

                async def finish(index: int, task: dict[str, Any]) -> None:
                    own = CallStats(attempts=stats.attempts, retries=stats.retries, started=stats.started)
                    try:
                        outcomes[index] = await self._finish(
                            requests[index], task, data, errors, general, own, started_at
                        )
                    except BackendError as exc:
                        outcomes[index] = exc

                await asyncio.gather(*(finish(i, t) for i, t in tasks))
        return [o if o is not None else MalformedResponse("no outcome") for o in outcomes]

    async def _finish(
        self,
        request: GenerationRequest,
        task: dict[str, Any],
        data: list[Mapping[str, Any]],
        errors: list[Mapping[str, Any]],
        general: list[Mapping[str, Any]],
        stats: CallStats,
        started_at: Any,
    ) -> GenerationResult:
        task_uuid = task["taskUUID"]
        mine = [d for d in data if d.get("taskUUID") == task_uuid]
        my_errors = [e for e in errors if e.get("taskUUID") == task_uuid]
        if not my_errors and not mine and general:
            my_errors = general
        if my_errors:
            raise self._task_failed(my_errors[0], task_uuid, stats)
        delivered = [d for d in mine if is_delivered(d)]
        wanted = int(task.get("numberResults") or 1)
        waiting = task.get("deliveryMethod") == "async" or (mine and not delivered)
        if waiting and len(delivered) < wanted:
            delivered = await self._poll(task_uuid, wanted, delivered, stats)
        if not delivered:
            raise MalformedResponse(
                f"{self.name}: the answer has no result for task {task_uuid}",
                task_uuid=task_uuid,
                attempts=stats.attempts,
                retries=stats.retries,
            )
        if all(isinstance(d.get("resultIndex"), int) for d in delivered):
            delivered = sorted(delivered, key=lambda d: d["resultIndex"])
        outputs = await asyncio.gather(
            *(self._output(task, result, i, stats) for i, result in enumerate(delivered))
        )
        return GenerationResult(
            backend=self.name,
            request=request,
            task_uuid=task_uuid,
            outputs=tuple(outputs),
            attempts=stats.attempts,
            retries=stats.retries,
            polls=stats.polls,
            elapsed_s=stats.elapsed,
            started_at=started_at,
            # The task as sent (redacted): records of this result store exactly it.
            metadata={"url": safe_url(self.url), "taskType": task["taskType"], "task": self._redact(task)},
        )

    async def _poll(
        self,
        task_uuid: str,
        wanted: int,
        delivered: list[Mapping[str, Any]],
        stats: CallStats,
    ) -> list[Mapping[str, Any]]:
        """Collect an async task's results through ``getResponse``."""
        have: dict[str, Mapping[str, Any]] = {}
        for position, result in enumerate(delivered):
            have[_result_key(result, position)] = result
        deadline = time.monotonic() + self.poll.timeout
        interval = self.poll.initial
        while True:
            if time.monotonic() + interval > deadline:
                raise BackendTimeout(
                    f"{self.name}: task {task_uuid} was not ready after {self.poll.timeout:g}s of polling",
                    code="poll-timeout",
                    task_uuid=task_uuid,
                    attempts=stats.attempts,
                    retries=stats.retries,
                )
            await self._sleep(interval)
            interval = min(interval * self.poll.factor, self.poll.max_interval)
            stats.polls += 1
            poll_task = {"taskType": "getResponse", "taskUUID": task_uuid}
            data, errors = await self._call([poll_task], stats)
            mine = [d for d in data if d.get("taskUUID") == task_uuid]
            my_errors = [e for e in errors if e.get("taskUUID") in (task_uuid, None)]
            if my_errors:
                raise self._task_failed(my_errors[0], task_uuid, stats)
            for result in mine:
                if is_delivered(result):
                    have[_result_key(result, len(have))] = result
            pending = any(str(d.get("status", "")).lower() in _PENDING for d in mine)
            if len(have) >= wanted or (have and not pending):
                return list(have.values())

    async def _output(
        self, task: Mapping[str, Any], result: Mapping[str, Any], index: int, stats: CallStats
    ) -> GeneratedOutput:
        task_uuid = task["taskUUID"]
        where = f"{self.name}: task {task_uuid} result {index}"
        data, media_type = await self._payload(result, where, stats)
        if media_type in ("", "application/octet-stream"):
            fmt = str(task.get("outputFormat") or "").upper()
            media_type = sniff_media_type(data, _FORMAT_TYPES.get(fmt, "application/octet-stream"))
        seed: int | None
        if result.get("seed") is not None:
            try:
                seed = parse_seed(result["seed"])
            except InvalidSeedError as exc:
                raise MalformedResponse(f"{where}: bad seed ({exc})", task_uuid=task_uuid) from None
        elif task.get("seed") is not None and int(task.get("numberResults") or 1) == 1:
            seed = int(task["seed"])
        else:
            seed = None  # several outputs and no seed reported: never derive one
        cost = result.get("cost")
        if isinstance(cost, bool) or not isinstance(cost, int | float):
            cost = None
        return GeneratedOutput(
            data=data,
            seed=seed,
            media_type=media_type,
            index=index,
            task_uuid=task_uuid,
            output_uuid=output_uuid_of(result),
            cost=float(cost) if cost is not None else None,
            metadata=self._redact(strip_payloads(result)),
        )

    async def _payload(self, result: Mapping[str, Any], where: str, stats: CallStats) -> tuple[bytes, str]:
        parts = file_results(result)
        if parts:  # a 3dInference result of several files: fetched and fingerprinted together
            from ledger.fingerprint.mesh_files import MEDIA_TYPE, pack_files

            files = [await self._payload(part, f"{where} file {k}", stats) for k, part in enumerate(parts, 1)]
            try:
                return pack_files([data for data, _ in files]), MEDIA_TYPE
            except FingerprintError as exc:
                raise MalformedResponse(f"{where}: {exc}") from None
        result = flat_result(result)  # a 3dInference result of one file in outputs.files
        for prefix in _OUTPUT_PREFIXES:
            encoded = result.get(f"{prefix}Base64Data")
            if isinstance(encoded, str) and encoded:
                return self._decode(encoded, where), ""
            uri = result.get(f"{prefix}DataURI")
            if isinstance(uri, str) and uri:
                match = _DATA_URI.match(uri)
                if not match:
                    raise MalformedResponse(f"{where}: {prefix}DataURI is not a base64 data URI")
                return self._decode(uri[match.end() :], where), (match.group("type") or "").lower()
            url = result.get(f"{prefix}URL")
            if isinstance(url, str) and url:
                downloaded = await self._http.download(url, stats=stats)
                return downloaded.data, downloaded.media_type
        raise MalformedResponse(f"{where}: no URL, base64 data or data URI in the result")

    def _decode(self, encoded: str, where: str) -> bytes:
        # Refuse before decoding: 4 base64 characters make 3 bytes.
        if len(encoded) // 4 * 3 > self.max_download_bytes + 3:
            raise DownloadError(
                f"{where}: inline output is larger than the {self.max_download_bytes}-byte cap",
                code="too-large",
            )
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedResponse(f"{where}: output is not valid base64") from None
        if not data:
            raise MalformedResponse(f"{where}: output is empty")
        return data

    # -- task details --------------------------------------------------------------

    async def get_task_details(self, task_uuid: str) -> TaskDetails:
        """The original request and response of a past task (``getTaskDetails``)."""
        stats = CallStats()
        data, errors = await self._call([{"taskType": "getTaskDetails", "taskUUID": task_uuid}], stats)
        if errors:
            raise self._task_failed(errors[0], task_uuid, stats)
        for item in data:
            if item.get("taskUUID") == task_uuid and ("request" in item or "response" in item):
                return TaskDetails(
                    task_uuid=task_uuid,
                    request=self._redact(item.get("request")),
                    response=self._redact(item.get("response")),
                )
        raise MalformedResponse(f"{self.name}: getTaskDetails answered without details for {task_uuid}")


def _result_key(result: Mapping[str, Any], position: int) -> str:
    output = output_uuid_of(result)
    if output:
        return output
    for prefix in _OUTPUT_PREFIXES:
        url = result.get(f"{prefix}URL")
        if isinstance(url, str) and url:
            return url
    return f"#{position}"
