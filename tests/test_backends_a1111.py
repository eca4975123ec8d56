"""The AUTOMATIC1111/Forge adapter against a live loopback WebUI API."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from ledger.backends import (
    AuthenticationError,
    BackendHTTPError,
    GenerationResult,
    MalformedResponse,
    RetryPolicy,
    TaskFailed,
    UnsupportedRequest,
    open_backend,
    open_sync_backend,
    request_from_record,
)
from ledger.backends.a1111 import A1111Backend, a1111_payload, request_from_a1111
from ledger.core.infotext import parse_infotext
from ledger.core.records import Modality, Record, SeedOrigin, Source, utcnow
from ledger.errors import UsageError
from tests.conftest import SENTINEL_KEY
from tests.fakes.a1111 import FakeA1111, a1111_image
from tests.fakes.runware import tiny_png
from tests.fakes.server import SwappableApp, live_server

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01)

INFOTEXT = (
    "a lighthouse at dusk, dramatic\n"
    "sky\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 965400086, "
    'Size: 640x512, Model hash: 45dee52b, Model: "v1-5, pruned", Clip skip: 2, RNG: CPU, '
    "ENSD: 31337, Version: v1.10.1"
)


@pytest.fixture(scope="module")
def _live() -> Iterator[tuple[SwappableApp, str]]:
    app = SwappableApp()
    with live_server(app) as base:
        yield app, base


@pytest.fixture
def fake(_live: tuple[SwappableApp, str]) -> tuple[FakeA1111, str]:
    app, base = _live
    server = FakeA1111()
    app.target = server.app()
    return server, base


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def generate(url: str, request: Any, **options: Any) -> GenerationResult:
    options.setdefault("retry", FAST_RETRY)
    async with open_backend("a1111", url=url, **options) as backend:
        assert isinstance(backend, A1111Backend)
        return await backend.generate(request)


def payload(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "prompt": "a lighthouse at dusk",
        "negative_prompt": "blurry",
        "seed": 1234,
        "subseed": -1,
        "subseed_strength": 0,
        "sampler_name": "DPM++ 2M",
        "scheduler": "Karras",
        "steps": 25,
        "cfg_scale": 7,
        "width": 512,
        "height": 512,
        "batch_size": 4,
        "n_iter": 1,
        "override_settings": {"sd_model_checkpoint": "sdxl_base.safetensors"},
    }
    base.update(overrides)
    return base


def a1111_record(seed: int, params: dict[str, Any], model: str = "sdxl_base.safetensors") -> Record:
    return Record(
        id=3,
        recorded_at=utcnow(),
        backend="a1111",
        task_type="imageInference",
        modality=Modality.IMAGE,
        model=model,
        seed=seed,
        seed_origin=SeedOrigin.RESPONSE,
        params=params,
        source=Source.IMPORT,
        output_index=2,
    )


# -- payloads ------------------------------------------------------------------------


def test_stated_infotext() -> None:
    info = parse_infotext(INFOTEXT).stated()
    assert info["Prompt"] == "a lighthouse at dusk, dramatic\nsky"
    assert info["Negative prompt"] == "blurry, lowres"
    assert info["Steps"] == "25"
    assert info["Sampler"] == "DPM++ 2M"
    assert info["Size-1"] == 640 and info["Size-2"] == 512
    assert info["Model"] == "v1-5, pruned"  # quoted because it has a comma


def test_payload_from_infotext() -> None:
    built = a1111_payload({"parameters": INFOTEXT})
    assert built == {
        "prompt": "a lighthouse at dusk, dramatic\nsky",
        "negative_prompt": "blurry, lowres",
        "steps": 25,
        "sampler_name": "DPM++ 2M",
        "scheduler": "Karras",
        "cfg_scale": 6.5,
        "seed": 965400086,
        "width": 640,
        "height": 512,
        "override_settings": {
            "sd_model_checkpoint": "v1-5, pruned",
            "CLIP_stop_at_last_layers": 2,
            "randn_source": "CPU",
            "eta_noise_seed_delta": 31337,
        },
    }


def test_payload_from_parsed_infotext_keys_with_automatic_schedule() -> None:
    built = a1111_payload(
        {"Steps": "20", "Sampler": "Euler a", "Schedule type": "Automatic", "Size": "512x768"}
    )
    assert built == {"steps": 20, "sampler_name": "Euler a", "width": 512, "height": 768}


def test_payload_passes_api_payloads_through() -> None:
    original = payload()
    assert a1111_payload(original) == original
    assert a1111_payload(original) is not original


def test_infotext_with_a_non_number_is_unsupported() -> None:
    with pytest.raises(UnsupportedRequest, match="'Steps'"):
        a1111_payload({"Steps": "twenty", "Sampler": "Euler"})


def test_request_from_a1111_takes_seed_and_model_from_params() -> None:
    request = request_from_a1111({"parameters": INFOTEXT})
    assert request.protocol == "a1111"
    assert request.seed == 965400086
    assert request.model == "v1-5, pruned"
    random_seed = request_from_a1111(payload(seed=-1))
    assert random_seed.seed is None


# -- generation ----------------------------------------------------------------------


def test_replay_of_a_batch_output_uses_its_own_seed_and_checkpoint(fake: tuple[FakeA1111, str]) -> None:
    server, url = fake
    rec = a1111_record(1236, payload(seed=1234))  # the third image of a batch made with 1234
    result = run(generate(url, request_from_record(rec)))
    (out,) = result.outputs
    assert out.seed == 1236
    assert out.data == a1111_image(
        1236, None, "a lighthouse at dusk", "DPM++ 2M", "Karras", "sdxl_base.safetensors"
    )
    assert out.media_type == "image/png"
    assert out.metadata["sd_model_hash"] == "6ce0161689"
    assert "Seed: 1236" in out.metadata["infotext"]
    sent = server.payloads[-1]
    assert server.endpoints == ["txt2img"]
    assert sent["seed"] == 1236 and sent["batch_size"] == 1 and sent["n_iter"] == 1
    assert sent["override_settings"]["sd_model_checkpoint"] == "sdxl_base.safetensors"
    assert sent["send_images"] is True and sent["save_images"] is False


def test_model_is_pinned_when_params_do_not_name_one(fake: tuple[FakeA1111, str]) -> None:
    server, url = fake
    params = payload()
    del params["override_settings"]
    run(generate(url, request_from_record(a1111_record(5, params, model="juggernaut.safetensors"))))
    assert server.payloads[-1]["override_settings"] == {"sd_model_checkpoint": "juggernaut.safetensors"}


def test_seeds_are_read_from_info_not_derived(fake: tuple[FakeA1111, str]) -> None:
    server, url = fake
    server.grid = True  # a grid image comes first: index_of_first_image = 1
    server.extra_image = True  # and an extension appends one more
    request = request_from_a1111(payload(seed=-1), number_results=3)
    result = run(generate(url, request))
    assert len(result.outputs) == 3
    first = result.outputs[0].seed
    assert first is not None and 0 <= first < 4294967294
    assert result.seeds == (first, first + 1, first + 2)
    for out in result.outputs:
        assert out.data == a1111_image(
            out.seed, None, "a lighthouse at dusk", "DPM++ 2M", "Karras", "sdxl_base.safetensors"
        )
    assert result.metadata["extra_images"] == 1
    assert "seed" not in server.payloads[-1] or server.payloads[-1]["seed"] == -1


def test_variation_seeds_keep_the_seed_and_report_subseeds(fake: tuple[FakeA1111, str]) -> None:
    _, url = fake
    request = request_from_a1111(payload(seed=50, subseed=900, subseed_strength=0.3), number_results=2)
    result = run(generate(url, request))
    assert result.seeds == (50, 50)
    assert [o.metadata["subseed"] for o in result.outputs] == [900, 901]
    assert result.outputs[0].data != result.outputs[1].data


def test_img2img_is_used_for_init_images(fake: tuple[FakeA1111, str]) -> None:
    server, url = fake
    init = base64.b64encode(tiny_png("init")).decode()
    run(generate(url, request_from_a1111(payload(init_images=[init], denoising_strength=0.5))))
    assert server.endpoints == ["img2img"]


def test_infotext_record_replays(fake: tuple[FakeA1111, str]) -> None:
    server, url = fake
    result = run(generate(url, request_from_a1111({"parameters": INFOTEXT})))
    assert result.outputs[0].seed == 965400086
    assert server.payloads[-1]["override_settings"]["sd_model_checkpoint"] == "v1-5, pruned"


def test_seed_above_a1111_range_is_unsupported(fake: tuple[FakeA1111, str]) -> None:
    server, url = fake
    with pytest.raises(UnsupportedRequest, match="outside the range"):
        run(generate(url, request_from_a1111(payload(), seed=2**40)))
    assert server.payloads == []


# -- errors --------------------------------------------------------------------------


def test_validation_error_is_task_failed_with_the_fields(fake: tuple[FakeA1111, str]) -> None:
    _, url = fake
    with pytest.raises(TaskFailed, match="steps: value is not a valid integer") as caught:
        run(generate(url, request_from_a1111(payload(steps="many"))))
    assert caught.value.code == "validation"


def test_server_error_is_retried_then_reported_with_its_reason(fake: tuple[FakeA1111, str]) -> None:
    server, url = fake
    server.mode = "oom"
    with pytest.raises(BackendHTTPError, match="CUDA out of memory") as caught:
        run(generate(url, request_from_a1111(payload())))
    assert caught.value.attempts == FAST_RETRY.max_attempts
    assert len(server.payloads) == FAST_RETRY.max_attempts


def test_api_not_enabled_says_so(fake: tuple[FakeA1111, str]) -> None:
    server, url = fake
    server.mode = "no-api"
    with pytest.raises(BackendHTTPError, match="--api"):
        run(generate(url, request_from_a1111(payload())))


@pytest.mark.parametrize(
    ("mode", "match"),
    [("not-json", "not JSON"), ("info-not-json", "info is not a JSON string"), ("no-images", "no list")],
)
def test_malformed_answers(fake: tuple[FakeA1111, str], mode: str, match: str) -> None:
    server, url = fake
    server.mode = mode
    with pytest.raises(MalformedResponse, match=match):
        run(generate(url, request_from_a1111(payload())))


def test_basic_auth_and_password_never_leaks(
    fake: tuple[FakeA1111, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server, url = fake
    server.basic_auth = ("admin", SENTINEL_KEY)
    with pytest.raises(AuthenticationError) as caught:
        run(generate(url, request_from_a1111(payload()), auth=("admin", "wrong")))
    result = run(generate(url, request_from_a1111(payload()), auth=("admin", SENTINEL_KEY)))
    assert result.outputs[0].seed == 1234
    backend = open_backend("a1111", url=url, auth=("admin", SENTINEL_KEY))
    for text in (
        str(caught.value),
        repr(result),
        repr(result.outputs[0].metadata),
        repr(backend),
        caplog.text,
    ):
        assert SENTINEL_KEY not in text
    run(backend.aclose())


def test_sync_wrapper(fake: tuple[FakeA1111, str]) -> None:
    _, url = fake
    with open_sync_backend("forge", url=url, retry=FAST_RETRY) as backend:
        result = backend.generate(request_from_a1111(payload(seed=77)))
    assert result.backend == "forge"
    assert result.outputs[0].seed == 77
    assert result.outputs[0].metadata["sd_model_name"] == "sdxl_base"


def test_variation_seed_that_was_not_captured_is_not_replayed(fake: tuple[FakeA1111, str]) -> None:
    server, url = fake
    with pytest.raises(UnsupportedRequest, match="variation seed") as caught:
        run(generate(url, request_from_a1111(payload(subseed=-1, subseed_strength=0.4))))
    assert caught.value.code == "seed-not-captured"
    assert server.payloads == []


def test_unknown_option_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="colour"):
        open_backend("runware", url="http://127.0.0.1:9/v1", api_key="k", colour="blue")


# -- environment ---------------------------------------------------------------------

SYSINFO: dict[str, Any] = {
    "Platform": "Linux-6.5.0-x86_64-with-glibc2.35",
    "Python": "3.10.12",
    "Version": "v1.10.1",
    "Commit": "82a973c04367123ae98bd9abdf80d9eda9b910e2",
    "Script path": "/home/someone/stable-diffusion-webui",
    "Commandline": [
        "launch.py",
        "--api",
        "--xformers",
        "--no-half-vae",
        "--api-auth",
        f"user:{SENTINEL_KEY}",
    ],
    "Torch env info": {
        "torch_version": "2.1.2+cu121",
        "cuda_runtime_version": "12.1.105",
        "cudnn_version": "8.9.2",
        "nvidia_gpu_models": "GPU 0: NVIDIA GeForce RTX 4090",
        "python_version": "3.10.12 (main, Nov 20 2023) [GCC 11.4.0] (64-bit runtime)",
    },
    "Environment": {"GRADIO_ANALYTICS_ENABLED": "False"},
    "Packages": ["numpy==1.26.2", "torch==2.1.2+cu121", "xformers==0.0.23.post1"],
}
SYSINFO_ENV = {
    "source": "a1111 /internal/sysinfo and info",
    "app": "a1111",
    "app_version": "v1.10.1",
    "commit": "82a973c04367123ae98bd9abdf80d9eda9b910e2",
    "python": "3.10.12",
    "platform": "Linux-6.5.0-x86_64-with-glibc2.35",
    "torch": "2.1.2+cu121",
    "cuda": "12.1.105",
    "cudnn": "8.9.2",
    "device_name": "GPU 0: NVIDIA GeForce RTX 4090",
    "xformers": "0.0.23.post1",
    "flags": ["--no-half-vae", "--xformers"],
}


def test_environment_from_sysinfo_once_per_instance_without_waiting(fake: tuple[FakeA1111, str]) -> None:
    import threading

    server, url = fake
    server.sysinfo = SYSINFO
    server.sysinfo_gate = threading.Event()  # the server's sysinfo is slow

    async def go() -> tuple[GenerationResult, GenerationResult, GenerationResult]:
        async with open_backend("a1111", url=url, retry=FAST_RETRY) as backend:
            assert isinstance(backend, A1111Backend)
            request = request_from_a1111(payload(batch_size=1), seed=5)
            first = await backend.generate(request)  # returns while sysinfo is pending
            server.sysinfo_gate.set()  # type: ignore[union-attr]
            await backend._probe.wait()
            return first, await backend.generate(request), await backend.generate(request)

    first, second, third = run(go())
    # the first replay was not held up: it has what the answer itself told
    assert first.metadata["environment"] == {"source": "a1111 info", "app": "a1111", "app_version": "v1.10.1"}
    assert second.metadata["environment"] == SYSINFO_ENV == third.metadata["environment"]
    assert server.sysinfo_requests == 1  # cached per backend instance
    assert SENTINEL_KEY not in repr(second.metadata) and "--api-auth" not in repr(second.metadata)


def test_environment_without_sysinfo_is_the_info_version(fake: tuple[FakeA1111, str]) -> None:
    server, url = fake  # sysinfo None: 404, as A1111 before 1.6

    async def go() -> list[GenerationResult]:
        async with open_backend("forge", url=url, retry=FAST_RETRY) as backend:
            request = request_from_a1111(payload(batch_size=1), seed=5)
            out = [await backend.generate(request)]
            await backend._probe.wait()  # type: ignore[attr-defined]
            return [*out, await backend.generate(request)]

    results = run(go())
    for result in results:
        assert result.metadata["environment"] == {
            "source": "forge info",
            "app": "forge",
            "app_version": "v1.10.1",
        }
    assert server.sysinfo_requests == 1  # refused once, not asked again
