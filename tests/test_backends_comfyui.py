"""The ComfyUI adapter against a live loopback ComfyUI server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from ledger.backends import (
    BackendTimeout,
    DownloadError,
    GenerationResult,
    MalformedResponse,
    RetryPolicy,
    TaskFailed,
    UnsupportedRequest,
    open_backend,
    request_from_params,
    request_from_record,
)
from ledger.backends.comfyui import ComfyUIBackend, comfy_graph, graph_seeds
from ledger.backends.http import PollPolicy
from ledger.core.records import Modality, Record, SeedOrigin, Source, utcnow
from tests.fakes.comfyui import FakeComfyUI, comfy_image, default_graph
from tests.fakes.server import SwappableApp, live_server

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01)
FAST_POLL = PollPolicy(initial=0.001, factor=1.5, max_interval=0.01, timeout=5.0)
TEXT = "a lighthouse at dusk | blurry"
CKPT = "v1-5-pruned-emaonly.safetensors"


@pytest.fixture(scope="module")
def _live() -> Iterator[tuple[SwappableApp, str]]:
    app = SwappableApp()
    with live_server(app) as base:
        yield app, base


@pytest.fixture
def fake(_live: tuple[SwappableApp, str]) -> tuple[FakeComfyUI, str]:
    app, base = _live
    server = FakeComfyUI()
    app.target = server.app()
    return server, base


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def generate(url: str, request: Any, **options: Any) -> GenerationResult:
    options.setdefault("retry", FAST_RETRY)
    options.setdefault("poll", FAST_POLL)
    async with open_backend("comfyui", url=url, **options) as backend:
        assert isinstance(backend, ComfyUIBackend)
        return await backend.generate(request)


def comfy_record(graph: dict[str, Any], seed: int | None, output_index: int = 0, wrap: bool = True) -> Record:
    return Record(
        id=11,
        recorded_at=utcnow(),
        backend="comfyui",
        task_type="imageInference",
        modality=Modality.IMAGE,
        model=CKPT,
        seed=seed,
        seed_origin=SeedOrigin.REQUEST,
        params={"prompt": graph, "client_id": "old-client"} if wrap else graph,
        source=Source.IMPORT,
        output_index=output_index,
    )


# -- graphs --------------------------------------------------------------------------


def test_graph_from_params_in_every_stored_form() -> None:
    graph = default_graph(seed=2**64 - 1)
    assert comfy_graph(graph) == graph
    assert comfy_graph({"prompt": graph, "client_id": "x"}) == graph
    assert comfy_graph({"prompt": json.dumps(graph), "workflow": "{}"}) == graph
    assert graph_seeds(graph) == {"3": 2**64 - 1}


def test_ui_workflow_is_not_replayable() -> None:
    with pytest.raises(UnsupportedRequest, match="API-format"):
        comfy_graph({"nodes": [{"id": 3, "type": "KSampler"}], "links": []})


# -- generation ----------------------------------------------------------------------


def test_replay_with_stored_seed_including_2_64_minus_1(fake: tuple[FakeComfyUI, str]) -> None:
    server, url = fake
    seed = 2**64 - 1
    rec = comfy_record(default_graph(seed=seed), seed)
    result = run(generate(url, request_from_record(rec)))
    (out,) = result.outputs
    assert out.seed == seed
    assert out.data == comfy_image(seed, 0, "euler", "normal", CKPT, TEXT)
    assert out.media_type == "image/png"
    assert out.task_uuid == result.task_uuid
    assert out.output_uuid == "output:" + out.metadata["filename"]
    assert result.polls == server.runs_after + 1
    sent = server.prompts[-1]
    assert sent["prompt"]["3"]["inputs"]["seed"] == seed
    assert sent["client_id"] != "old-client"


def test_batch_is_replayed_whole_and_the_records_output_picked(fake: tuple[FakeComfyUI, str]) -> None:
    server, url = fake
    rec = comfy_record(default_graph(seed=42, batch=4), 42, output_index=2)
    result = run(generate(url, request_from_record(rec)))
    (out,) = result.outputs
    assert out.index == 2
    assert out.data == comfy_image(42, 2, "euler", "normal", CKPT, TEXT)
    assert server.prompts[-1]["prompt"]["5"]["inputs"]["batch_size"] == 4
    assert result.metadata["outputs_total"] == 4


def test_output_index_outside_the_batch(fake: tuple[FakeComfyUI, str]) -> None:
    _, url = fake
    with pytest.raises(MalformedResponse, match="output 5 is not among them"):
        run(generate(url, request_from_record(comfy_record(default_graph(seed=1), 1, output_index=5))))


def test_a_sweep_seed_goes_into_the_single_sampler(fake: tuple[FakeComfyUI, str]) -> None:
    server, url = fake
    result = run(generate(url, request_from_params("comfyui", default_graph(seed=1), seed=777)))
    assert server.prompts[-1]["prompt"]["3"]["inputs"]["seed"] == 777
    assert result.outputs[0].seed == 777
    assert result.outputs[0].data == comfy_image(777, 0, "euler", "normal", CKPT, TEXT)


def test_ambiguous_seed_is_refused(fake: tuple[FakeComfyUI, str]) -> None:
    server, url = fake
    graph = default_graph(seed=1)
    graph["10"] = {"class_type": "KSamplerAdvanced", "inputs": {**graph["3"]["inputs"], "noise_seed": 2}}
    del graph["10"]["inputs"]["seed"]
    with pytest.raises(UnsupportedRequest, match="2 literal sampler seeds"):
        run(generate(url, request_from_params("comfyui", graph, seed=3)))
    assert server.prompts == []


def test_preview_only_graph_returns_temp_images(fake: tuple[FakeComfyUI, str]) -> None:
    _, url = fake
    graph = default_graph(seed=9)
    graph["9"]["class_type"] = "PreviewImage"
    result = run(generate(url, request_from_params("comfyui", graph)))
    assert result.outputs[0].metadata["type"] == "temp"
    assert result.outputs[0].data == comfy_image(9, 0, "euler", "normal", CKPT, TEXT)


# -- errors --------------------------------------------------------------------------


def test_node_errors_are_a_clear_task_failure(fake: tuple[FakeComfyUI, str]) -> None:
    _, url = fake
    with pytest.raises(TaskFailed) as caught:
        run(generate(url, request_from_params("comfyui", default_graph(seed=1, sampler="bogus"))))
    assert caught.value.code == "prompt_outputs_failed_validation"
    assert "node 3 (KSampler): Value not in list (sampler_name: 'bogus' not in" in str(caught.value)


def test_partially_valid_graph_is_taken_off_the_queue_and_fails(fake: tuple[FakeComfyUI, str]) -> None:
    server, url = fake
    server.partial_validation = True
    with pytest.raises(TaskFailed, match="part of the graph was rejected") as caught:
        run(generate(url, request_from_params("comfyui", default_graph(seed=1, sampler="bogus"))))
    assert caught.value.code == "node-errors"
    assert server.deleted == [caught.value.task_uuid]
    assert server.queue == {}


def test_unknown_node_class(fake: tuple[FakeComfyUI, str]) -> None:
    _, url = fake
    graph = default_graph(seed=1)
    graph["12"] = {"class_type": "FancyUpscaler", "inputs": {}}
    with pytest.raises(TaskFailed, match="FancyUpscaler does not exist") as caught:
        run(generate(url, request_from_params("comfyui", graph)))
    assert caught.value.code == "invalid_prompt"


def test_execution_error_in_history(fake: tuple[FakeComfyUI, str]) -> None:
    _, url = fake
    graph = default_graph(seed=1)
    graph["4"]["inputs"]["ckpt_name"] = "missing.safetensors"
    with pytest.raises(TaskFailed, match=r"node 4 \(CheckpointLoaderSimple\): FileNotFoundError") as caught:
        run(generate(url, request_from_params("comfyui", graph)))
    assert caught.value.code == "execution-error"


def test_prompt_that_never_finishes_times_out(fake: tuple[FakeComfyUI, str]) -> None:
    server, url = fake
    server.runs_after = 10_000
    poll = PollPolicy(initial=0.01, factor=1.5, max_interval=0.02, timeout=0.2)
    with pytest.raises(BackendTimeout) as caught:
        run(generate(url, request_from_params("comfyui", default_graph(seed=1)), poll=poll))
    assert caught.value.code == "poll-timeout"


@pytest.mark.parametrize(
    ("mode", "match"),
    [("history-not-json", "not JSON"), ("history-wrong-shape", "without a filename")],
)
def test_malformed_history(fake: tuple[FakeComfyUI, str], mode: str, match: str) -> None:
    server, url = fake
    server.mode = mode
    with pytest.raises(MalformedResponse, match=match):
        run(generate(url, request_from_params("comfyui", default_graph(seed=1))))


def test_view_with_wrong_content_type(fake: tuple[FakeComfyUI, str]) -> None:
    server, url = fake
    server.view_content_type = "text/html"
    with pytest.raises(DownloadError) as caught:
        run(generate(url, request_from_params("comfyui", default_graph(seed=1))))
    assert caught.value.code == "content-type"


def test_oversized_view_is_aborted(fake: tuple[FakeComfyUI, str]) -> None:
    _, url = fake
    with pytest.raises(DownloadError, match="cap") as caught:
        run(generate(url, request_from_params("comfyui", default_graph(seed=1)), max_download_bytes=50))
    assert caught.value.code == "too-large"


# -- environment ---------------------------------------------------------------------

SYSTEM_STATS: dict[str, Any] = {
    "system": {
        "os": "posix",
        "ram_total": 67107180544,
        "ram_free": 50000000000,
        "comfyui_version": "0.3.27",
        "required_frontend_version": "1.14.5",
        "python_version": "3.12.7 (main, Oct  1 2024, 08:52:12) [GCC 11.4.0]",
        "pytorch_version": "2.6.0+cu124",
        "embedded_python": False,
        "argv": ["main.py", "--listen", "--force-fp16", "--use-pytorch-cross-attention"],
    },
    "devices": [
        {
            "name": "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync",
            "type": "cuda",
            "index": 0,
            "vram_total": 25393692672,
            "vram_free": 24000000000,
            "torch_vram_total": 0,
            "torch_vram_free": 0,
        }
    ],
}


def test_environment_from_system_stats_once_per_instance(fake: tuple[FakeComfyUI, str]) -> None:
    server, url = fake
    server.system_stats = SYSTEM_STATS

    async def go() -> list[GenerationResult]:
        async with open_backend("comfyui", url=url, retry=FAST_RETRY, poll=FAST_POLL) as backend:
            assert isinstance(backend, ComfyUIBackend)
            request = request_from_params("comfyui", default_graph(seed=1), seed=9)
            first = await backend.generate(request)
            await backend._probe.wait()
            return [first, await backend.generate(request)]

    first, second = run(go())
    expected = {
        "source": "comfyui /system_stats",
        "app": "comfyui",
        "app_version": "0.3.27",
        "python": "3.12.7",
        "torch": "2.6.0+cu124",
        "flags": ["--force-fp16", "--use-pytorch-cross-attention"],
        "device": "cuda:0",
        "device_name": "NVIDIA GeForce RTX 4090",
    }
    assert second.metadata["environment"] == expected
    # the first generation never waits for the probe: it has the facts only if they came first
    assert first.metadata.get("environment") in (None, expected)
    assert server.system_stats_requests == 1


def test_no_system_stats_no_environment(fake: tuple[FakeComfyUI, str]) -> None:
    server, url = fake  # /system_stats answers 404

    async def go() -> list[GenerationResult]:
        async with open_backend("comfyui", url=url, retry=FAST_RETRY, poll=FAST_POLL) as backend:
            request = request_from_params("comfyui", default_graph(seed=1), seed=9)
            first = await backend.generate(request)
            await backend._probe.wait()  # type: ignore[attr-defined]
            return [first, await backend.generate(request)]

    assert all("environment" not in r.metadata for r in run(go()))
    assert server.system_stats_requests == 1  # refused once, not asked again
