"""ComfyUI adapter: replay a stored API-format graph with its own KSampler seeds.

``POST /prompt {"prompt": graph, "client_id": …}`` queues the graph (HTTP 400 with
``node_errors`` when it does not validate); ``GET /history/{prompt_id}`` is polled
until the prompt has run; each saved output is fetched through
``GET /view?filename&subfolder&type``.

ComfyUI draws the whole batch's noise from one seed, so a batch is replayed whole
and ``request.output_index`` picks the record's output out of it. ComfyUI reports no
seeds: the seed of an output is the one the graph carried (when it has exactly one
seeded sampler), and every sampler's seed is in the output's metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from ledger.backends.base import (
    AuthenticationError,
    BackendHTTPError,
    BackendTimeout,
    GeneratedOutput,
    GenerationRequest,
    GenerationResult,
    MalformedResponse,
    TaskFailed,
    UnsupportedRequest,
)
from ledger.backends.environments import ServerProbe, comfyui_from_system_stats
from ledger.backends.http import (
    DEFAULT_MAX_DOWNLOAD_BYTES,
    CallStats,
    HostPolicy,
    HttpBackend,
    HttpClient,
    PollPolicy,
    RetryPolicy,
    safe_url,
)
from ledger.core.records import utcnow
from ledger.core.seeds import SEED_MAX, parse_seed
from ledger.errors import BackendError, InvalidSeedError

__all__ = ["DEFAULT_URL", "ComfyUIBackend", "comfy_graph", "graph_seeds"]

DEFAULT_URL = "http://127.0.0.1:8188"

#: Inputs that carry a sampler's seed (KSampler, KSamplerAdvanced, RandomNoise…).
SEED_INPUTS = ("seed", "noise_seed")
#: Keys of a history output that list files.
_FILE_KEYS = ("images", "gifs", "videos", "audio", "files")


def comfy_graph(params: Mapping[str, Any]) -> dict[str, Any]:
    """The API-format graph in a record's params.

    Accepts the graph itself, ``{"prompt": graph, …}`` as posted to ``/prompt``, or
    either with the graph as a JSON string (as in a PNG ``prompt`` chunk).
    """
    graph: Any = params
    if "prompt" in params and not _looks_like_node(params.get("prompt")):
        graph = params["prompt"]
    if isinstance(graph, str):
        try:
            graph = json.loads(graph)
        except ValueError:
            raise UnsupportedRequest("ComfyUI params: the prompt graph is not valid JSON") from None
    if not isinstance(graph, Mapping) or not graph:
        raise UnsupportedRequest("ComfyUI params: no API-format graph (node id -> {class_type, inputs})")
    nodes = {str(k): v for k, v in graph.items() if _looks_like_node(v)}
    if not nodes:
        raise UnsupportedRequest(
            "ComfyUI params: no nodes with class_type and inputs (a UI-format workflow cannot be replayed; "
            "use the API-format prompt)"
        )
    copied: dict[str, Any] = json.loads(json.dumps(nodes))
    return copied


def _looks_like_node(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and isinstance(value.get("class_type"), str)
        and isinstance(value.get("inputs"), Mapping)
    )


def graph_seeds(graph: Mapping[str, Any]) -> dict[str, int]:
    """Literal seeds in the graph, by ``node_id`` (``node_id.input`` if a node has two)."""
    seeds: dict[str, int] = {}
    for node_id, node in graph.items():
        if not _looks_like_node(node):
            continue
        found = [
            (name, node["inputs"][name])
            for name in SEED_INPUTS
            if name in node["inputs"] and not isinstance(node["inputs"][name], list)
        ]
        for name, value in found:
            try:
                seed = parse_seed(value)
            except InvalidSeedError:
                continue
            seeds[node_id if len(found) == 1 else f"{node_id}.{name}"] = seed
    return seeds


class ComfyUIBackend(HttpBackend):
    """A ComfyUI server."""

    protocol = "comfyui"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        name: str = "comfyui",
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        timeout: float | httpx.Timeout = 60.0,
        max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
        download_deadline: float = 300.0,
        host_policy: HostPolicy | None = None,
        include_temp: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
        limits: httpx.Limits | None = None,
        **_ignored: Any,
    ) -> None:
        parts = self.check_url(url, name, "ComfyUI URL")
        self.name = name
        self.url = url.rstrip("/")
        self.poll = poll or PollPolicy(initial=0.25, factor=1.5, max_interval=5.0, timeout=1800.0)
        self.include_temp = include_temp
        self._sleep = sleep or asyncio.sleep
        self.client_id = str(uuid.uuid4())
        # /view is on the configured server itself, so its host is allowed.
        policy = (host_policy or HostPolicy()).with_host(parts.hostname)
        self._http = HttpClient(
            backend=name,
            timeout=timeout,
            retry=retry,
            host_policy=policy,
            max_download_bytes=max_download_bytes,
            download_deadline=download_deadline,
            transport=transport,
            sleep=self._sleep,
            limits=limits,
        )

        self._probe = ServerProbe(self._system_stats, f"{self.name} /system_stats")

    async def _system_stats(self) -> dict[str, Any]:
        status, body = await self._http.request_json("GET", f"{self.url}/system_stats", stats=CallStats())
        facts = comfyui_from_system_stats(body) if status == 200 else {}
        return {"source": self._probe.source, **facts} if facts else {}

    async def aclose(self) -> None:
        self._probe.cancel()
        await super().aclose()

    def build_graph(self, request: GenerationRequest) -> dict[str, Any]:
        """The graph this request queues: stored seeds, or ``request.seed`` when the
        graph has exactly one seeded sampler."""
        self.check_protocol(request)
        graph = comfy_graph(request.params)
        seeds = graph_seeds(graph)
        if request.seed is not None and request.seed not in seeds.values():
            if request.seed > SEED_MAX:
                raise UnsupportedRequest(
                    f"seed {request.seed} is above ComfyUI's maximum", code="seed-out-of-range"
                )
            if not seeds and request.record_id is not None:
                # A replay of a graph whose seed comes through a link (a primitive
                # node): the stored graph already holds the seed it ran with.
                return graph
            if len(seeds) != 1:
                raise UnsupportedRequest(
                    f"the graph has {len(seeds)} literal sampler seeds; "
                    f"cannot tell which one takes seed {request.seed}",
                    code="ambiguous-seed",
                )
            (key,) = seeds
            node_id, _, name = key.partition(".")
            inputs = graph[node_id]["inputs"]
            name = name or next(n for n in SEED_INPUTS if n in inputs)
            inputs[name] = request.seed
        return graph

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        started_at = utcnow()
        stats = CallStats()
        graph = self.build_graph(request)
        seeds = graph_seeds(graph)
        self._probe.start()  # once per instance, beside this generation
        prompt_id = await self._queue(graph, stats)
        entry = await self._wait(prompt_id, stats)
        files = self._files(entry, prompt_id)
        if request.output_index is not None:
            if not 0 <= request.output_index < len(files):
                raise MalformedResponse(
                    f"{self.name}: prompt {prompt_id} made {len(files)} outputs; "
                    f"output {request.output_index} is not among them",
                    task_uuid=prompt_id,
                )
            picked = [(request.output_index, files[request.output_index])]
        else:
            picked = list(enumerate(files))
        single_seed = next(iter(seeds.values())) if len(set(seeds.values())) == 1 else None
        outputs = await asyncio.gather(
            *(
                self._fetch(index, node_id, item, single_seed, seeds, prompt_id, stats)
                for index, (node_id, item) in picked
            )
        )
        return GenerationResult(
            backend=self.name,
            request=request,
            task_uuid=prompt_id,
            outputs=tuple(outputs),
            attempts=stats.attempts,
            retries=stats.retries,
            polls=stats.polls,
            elapsed_s=stats.elapsed,
            started_at=started_at,
            metadata={
                "url": safe_url(self.url),
                "seeds": seeds,
                "outputs_total": len(files),
                **({"environment": env} if (env := self._probe.peek()) else {}),
            },
        )

    async def _queue(self, graph: dict[str, Any], stats: CallStats) -> str:
        body = {"prompt": graph, "client_id": self.client_id}
        status, answer = await self._http.request_json("POST", f"{self.url}/prompt", stats=stats, json=body)
        if status == 400 and isinstance(answer, Mapping):
            raise TaskFailed(
                f"{self.name}: the graph was rejected: {_node_errors(answer)}",
                code=_error_type(answer),
                status=status,
                attempts=stats.attempts,
                retries=stats.retries,
            )
        if status in (401, 403):
            raise AuthenticationError(f"{self.name}: HTTP {status} from /prompt", status=status)
        if not 200 <= status < 300:
            detail = self._http.describe(answer)
            raise BackendHTTPError(
                f"{self.name}: /prompt answered HTTP {status}{': ' + detail if detail else ''}",
                status=status,
                attempts=stats.attempts,
                retries=stats.retries,
            )
        if not isinstance(answer, Mapping) or not isinstance(answer.get("prompt_id"), str):
            raise MalformedResponse(f"{self.name}: /prompt answered without a prompt_id", status=status)
        if answer.get("node_errors"):
            # ComfyUI queues the outputs that validated and reports the others; a
            # partial replay is not a replay, so take it off the queue and fail.
            with contextlib.suppress(BackendError):
                await self._http.exchange(
                    "POST", f"{self.url}/queue", stats=stats, json={"delete": [answer["prompt_id"]]}
                )
            raise TaskFailed(
                f"{self.name}: part of the graph was rejected: {_node_errors(answer)}",
                code="node-errors",
                task_uuid=str(answer["prompt_id"]),
            )
        return str(answer["prompt_id"])

    async def _wait(self, prompt_id: str, stats: CallStats) -> Mapping[str, Any]:
        deadline = time.monotonic() + self.poll.timeout
        interval = self.poll.initial
        while True:
            stats.polls += 1
            status, answer = await self._http.request_json(
                "GET", f"{self.url}/history/{prompt_id}", stats=stats
            )
            if not 200 <= status < 300:
                raise BackendHTTPError(f"{self.name}: /history answered HTTP {status}", status=status)
            if not isinstance(answer, Mapping):
                raise MalformedResponse(f"{self.name}: /history answered with a non-object")
            entry = answer.get(prompt_id)
            if entry is not None:
                if not isinstance(entry, Mapping):
                    raise MalformedResponse(f"{self.name}: /history entry for {prompt_id} is not an object")
                state = entry.get("status")
                state = state if isinstance(state, Mapping) else {}
                if state.get("status_str") == "error":
                    raise TaskFailed(
                        f"{self.name}: prompt {prompt_id} failed: {_execution_error(state)}",
                        code="execution-error",
                        task_uuid=prompt_id,
                        attempts=stats.attempts,
                        retries=stats.retries,
                    )
                if state.get("completed", True) and "outputs" in entry:
                    return entry
            if time.monotonic() + interval > deadline:
                raise BackendTimeout(
                    f"{self.name}: prompt {prompt_id} had not finished after {self.poll.timeout:g}s",
                    code="poll-timeout",
                    task_uuid=prompt_id,
                    attempts=stats.attempts,
                    retries=stats.retries,
                )
            await self._sleep(interval)
            interval = min(interval * self.poll.factor, self.poll.max_interval)

    def _files(self, entry: Mapping[str, Any], prompt_id: str) -> list[tuple[str, Mapping[str, Any]]]:
        outputs = entry.get("outputs")
        if not isinstance(outputs, Mapping):
            raise MalformedResponse(f"{self.name}: history of {prompt_id} has no outputs object")
        saved: list[tuple[str, Mapping[str, Any]]] = []
        temp: list[tuple[str, Mapping[str, Any]]] = []
        for node_id, node_out in outputs.items():
            if not isinstance(node_out, Mapping):
                raise MalformedResponse(f"{self.name}: history output of node {node_id} is not an object")
            for key in _FILE_KEYS:
                items = node_out.get(key)
                if not isinstance(items, list):
                    continue
                for item in items:
                    if not isinstance(item, Mapping) or not isinstance(item.get("filename"), str):
                        raise MalformedResponse(
                            f"{self.name}: node {node_id} lists a file without a filename"
                        )
                    (saved if item.get("type", "output") == "output" else temp).append((str(node_id), item))
        files = saved + temp if self.include_temp else saved or temp
        if not files:
            raise MalformedResponse(f"{self.name}: prompt {prompt_id} produced no files", task_uuid=prompt_id)
        return files

    async def _fetch(
        self,
        index: int,
        node_id: str,
        item: Mapping[str, Any],
        seed: int | None,
        seeds: Mapping[str, int],
        prompt_id: str,
        stats: CallStats,
    ) -> GeneratedOutput:
        query = {
            "filename": str(item["filename"]),
            "subfolder": str(item.get("subfolder") or ""),
            "type": str(item.get("type") or "output"),
        }
        downloaded = await self._http.download(f"{self.url}/view", stats=stats, params=query)
        name = f"{query['subfolder']}/{query['filename']}" if query["subfolder"] else query["filename"]
        return GeneratedOutput(
            data=downloaded.data,
            seed=seed,
            media_type=downloaded.media_type,
            index=index,
            task_uuid=prompt_id,
            output_uuid=f"{query['type']}:{name}",
            metadata={"node_id": node_id, **query, "seeds": dict(seeds)},
        )


def _error_type(answer: Mapping[str, Any]) -> str:
    error = answer.get("error")
    kind = error.get("type") if isinstance(error, Mapping) else None
    return kind if isinstance(kind, str) else "node-errors"


def _node_errors(answer: Mapping[str, Any]) -> str:
    parts: list[str] = []
    error = answer.get("error")
    if isinstance(error, Mapping) and error.get("message"):
        parts.append(str(error["message"]))
    elif isinstance(error, str):
        parts.append(error)
    node_errors = answer.get("node_errors")
    if isinstance(node_errors, Mapping):
        for node_id, info in list(node_errors.items())[:5]:
            if not isinstance(info, Mapping):
                continue
            kind = info.get("class_type", "?")
            for err in (info.get("errors") or [])[:3]:
                if isinstance(err, Mapping):
                    detail = f" ({err['details']})" if err.get("details") else ""
                    parts.append(f"node {node_id} ({kind}): {err.get('message', 'error')}{detail}")
    text = "; ".join(parts) or "invalid prompt"
    return text if len(text) <= 400 else text[:399] + "…"


def _execution_error(state: Mapping[str, Any]) -> str:
    for message in state.get("messages") or []:
        if isinstance(message, list) and len(message) == 2 and message[0] == "execution_error":
            info = message[1] if isinstance(message[1], Mapping) else {}
            node = f"node {info.get('node_id', '?')} ({info.get('node_type', '?')})"
            return (
                f"{node}: {info.get('exception_type', 'error')}: {info.get('exception_message', '')}".strip()
            )
    return "execution error"
