"""The bundled reference backend: generator behaviour and the Runware-compatible server.

Distances use imagehash directly (64-bit pHash; 0 = same, ~32 = unrelated).
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import imagehash
import numpy as np
import pytest
from PIL import Image

from ledger.backends.reference.generator import ImageRequest, ReferenceGenerator
from ledger.backends.reference.server import ReferenceServer
from ledger.core.models import ModelCatalog
from ledger.errors import BackendError, InvalidInputError
from ledger.fingerprint import fingerprint
from tests.conftest import SENTINEL_KEY

MODEL = "runware:101@1"
RUNWARE_SEED_MAX = 2**63 - 1


def image_task(**fields: Any) -> dict[str, Any]:
    task = {
        "taskType": "imageInference",
        "taskUUID": str(uuid.uuid4()),
        "model": MODEL,
        "positivePrompt": "a lighthouse on a cliff at dusk",
        "width": 256,
        "height": 256,
        "steps": 20,
        "CFGScale": 7,
        "scheduler": "DPM++ 2M Karras",
        "outputFormat": "PNG",
        "outputType": "base64Data",
        "seed": 1234,
    }
    task.update(fields)
    return {k: v for k, v in task.items() if v is not None}


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def phash_distance(a: np.ndarray, b: np.ndarray) -> int:
    return int(imagehash.phash(Image.fromarray(a)) - imagehash.phash(Image.fromarray(b)))


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.fixture(scope="module")
def server() -> Iterator[ReferenceServer]:
    with ReferenceServer.running() as srv:
        yield srv


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30, headers={"Authorization": "Bearer any-key"}) as c:
        yield c


def call(client: httpx.Client, server: ReferenceServer, tasks: list[dict[str, Any]]) -> httpx.Response:
    return client.post(server.url, json=tasks)


def generate(client: httpx.Client, server: ReferenceServer, **fields: Any) -> dict[str, Any]:
    resp = call(client, server, [image_task(**fields)])
    assert resp.status_code == 200, resp.text
    (result,) = resp.json()["data"]
    return result


def poll_until_done(client: httpx.Client, server: ReferenceServer, poll: list[dict[str, Any]]) -> list[Any]:
    """getResponse until the task is no longer processing (pytest's timeout bounds it)."""
    while True:
        items = call(client, server, poll).json()["data"]
        if items[0].get("status") != "processing":
            return items
        time.sleep(0.01)


def image_bytes(result: dict[str, Any]) -> bytes:
    return base64.b64decode(result["imageBase64Data"])


# --- the generator's behaviour, through the server -------------------------------------


def test_deterministic_scheduler_reproduces_bit_exactly(client, server) -> None:
    first = generate(client, server, scheduler="DPM++ 2M Karras", seed=77)
    second = generate(client, server, scheduler="DPM++ 2M Karras", seed=77)
    assert first["seed"] == second["seed"] == 77
    assert first["imageUUID"] != second["imageUUID"]
    assert image_bytes(first) == image_bytes(second)
    assert np.array_equal(pixels(image_bytes(first)), pixels(image_bytes(second)))


def test_stochastic_scheduler_drifts_but_stays_similar(client, server) -> None:
    a = pixels(image_bytes(generate(client, server, scheduler="Euler a", seed=77)))
    b = pixels(image_bytes(generate(client, server, scheduler="Euler a", seed=77)))
    assert not np.array_equal(a, b)
    # Well above JPEG re-encoding noise (about 2 levels at quality 90) ...
    assert mean_abs_diff(a, b) > 4
    # ... but the same composition.
    assert phash_distance(a, b) <= 10


def test_jpeg_reencoding_is_smaller_than_stochastic_drift(client, server) -> None:
    a = pixels(image_bytes(generate(client, server, scheduler="Euler a", seed=5)))
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=90)
    b = pixels(image_bytes(generate(client, server, scheduler="Euler a", seed=5)))
    assert mean_abs_diff(a, pixels(buf.getvalue())) < mean_abs_diff(a, b)


@pytest.mark.parametrize(("seed_a", "seed_b"), [(1, 2), (42, 43), (1000, 999_999), (RUNWARE_SEED_MAX, 7)])
def test_different_seeds_give_different_compositions(client, server, seed_a: int, seed_b: int) -> None:
    a = pixels(image_bytes(generate(client, server, seed=seed_a)))
    b = pixels(image_bytes(generate(client, server, seed=seed_b)))
    assert phash_distance(a, b) >= 14


def test_model_revision_changes_the_output() -> None:
    task = image_task(seed=31337)
    with (
        ReferenceServer.running() as original,
        ReferenceServer.running(model_revision=2) as updated,
        httpx.Client(timeout=30) as c,
    ):
        a = pixels(image_bytes(c.post(original.url, json=[task]).json()["data"][0]))
        b = pixels(image_bytes(c.post(updated.url, json=[task]).json()["data"][0]))
        # Not near-identical: the composition moved.
        assert phash_distance(a, b) >= 8
        assert mean_abs_diff(a, b) > 15
        # Switching the revision back at runtime restores the original weights.
        updated.set_model_revision(None)
        c2 = pixels(image_bytes(c.post(updated.url, json=[task]).json()["data"][0]))
        assert np.array_equal(a, c2)
        # Changing the knob directly works too.
        updated.knobs.model_revision = 2
        assert np.array_equal(b, pixels(image_bytes(c.post(updated.url, json=[task]).json()["data"][0])))
        updated.knobs.model_revision = None
        # A per-model revision leaves other models alone.
        updated.set_model_revision({"runware:100@1": 5})
        assert np.array_equal(a, pixels(image_bytes(c.post(updated.url, json=[task]).json()["data"][0])))


@pytest.mark.parametrize("model", ["recraft:1@1", "ideogram:3@1", "klingai:5@3", "luma:1@1"])
def test_seedless_models_ignore_the_seed(client, server, model: str) -> None:
    first = generate(client, server, model=model, seed=99)
    second = generate(client, server, model=model, seed=99)
    assert "seed" not in first and "seed" not in second
    a, b = pixels(image_bytes(first)), pixels(image_bytes(second))
    assert phash_distance(a, b) >= 10


def test_missing_seed_is_picked_and_returned(client, server) -> None:
    result = generate(client, server, seed=None)
    seed = result["seed"]
    assert isinstance(seed, int) and 1 <= seed <= RUNWARE_SEED_MAX
    again = generate(client, server, seed=seed)
    assert image_bytes(again) == image_bytes(result)
    assert generate(client, server, seed=None)["seed"] != seed


def test_number_results_gives_distinct_seeds_and_images(client, server) -> None:
    resp = call(client, server, [image_task(numberResults=4, seed=500)])
    results = resp.json()["data"]
    assert len(results) == 4
    seeds = [r["seed"] for r in results]
    assert len(set(seeds)) == 4 and 500 in seeds
    assert all(1 <= s <= RUNWARE_SEED_MAX for s in seeds)
    assert len({r["imageUUID"] for r in results}) == 4
    assert len({image_bytes(r) for r in results}) == 4
    # Each output replays alone from its own returned seed.
    other = next(r for r in results if r["seed"] != 500)
    assert image_bytes(generate(client, server, seed=other["seed"])) == image_bytes(other)


def test_prompt_and_cfg_keep_the_composition() -> None:
    gen = ReferenceGenerator()
    base = ImageRequest(model=MODEL, prompt="a castle", width=256, height=256, seed=9, scheduler="DDIM")
    a = gen.render(base)[0]
    for changed in (
        ImageRequest(model=MODEL, prompt="a neon forest", width=256, height=256, seed=9, scheduler="DDIM"),
        ImageRequest(
            model=MODEL, prompt="a castle", width=256, height=256, seed=9, scheduler="DDIM", cfg_scale=3
        ),
    ):
        b = gen.render(changed)[0]
        assert mean_abs_diff(a, b) > 5  # style, palette or detail changed
        assert phash_distance(a, b) <= 6  # the seed's composition stayed


def test_more_steps_refine_and_other_models_differ() -> None:
    gen = ReferenceGenerator()

    def render(**kw: Any) -> np.ndarray:
        fields = {"model": MODEL, "prompt": "x", "width": 256, "height": 256, "seed": 3, **kw}
        return gen.render(ImageRequest(**fields))[0]

    assert mean_abs_diff(render(steps=50), render(steps=60)) < mean_abs_diff(
        render(steps=10), render(steps=20)
    )
    assert phash_distance(render(), render(model="runware:100@1")) >= 14


def test_generator_refuses_bad_formats() -> None:
    with pytest.raises(InvalidInputError, match="outputFormat"):
        ReferenceGenerator().image(ImageRequest(model=MODEL, prompt="x", seed=1, output_format="BMP"))


# --- output types and formats ----------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "content_type", "magic"),
    [
        ("PNG", "image/png", b"\x89PNG"),
        ("JPG", "image/jpeg", b"\xff\xd8\xff"),
        ("WEBP", "image/webp", b"RIFF"),
    ],
)
def test_output_types_carry_the_same_bytes(client, server, fmt: str, content_type: str, magic: bytes) -> None:
    by_url = generate(client, server, outputFormat=fmt, outputType="URL")
    assert re.fullmatch(re.escape(server.base_url) + r"/outputs/[0-9a-f-]{36}\.\w+", by_url["imageURL"])
    download = client.get(by_url["imageURL"])
    assert download.status_code == 200
    assert download.headers["content-type"] == content_type
    assert download.content.startswith(magic)
    b64 = generate(client, server, outputFormat=fmt, outputType="base64Data")
    uri = generate(client, server, outputFormat=fmt, outputType="dataURI")
    prefix = f"data:{content_type};base64,"
    assert uri["imageDataURI"].startswith(prefix)
    assert base64.b64decode(uri["imageDataURI"][len(prefix) :]) == image_bytes(b64) == download.content


def test_url_is_the_default_output_type_and_jpg_the_default_format(client, server) -> None:
    result = generate(client, server, outputType=None, outputFormat=None)
    assert result["imageURL"].endswith(".jpg")
    assert client.get(result["imageURL"]).headers["content-type"] == "image/jpeg"
    assert client.get(server.base_url + "/outputs/nope.png").status_code == 404


def test_include_cost(client, server) -> None:
    assert "cost" not in generate(client, server)
    cost = generate(client, server, includeCost=True)["cost"]
    assert isinstance(cost, float) and cost > 0


# --- envelopes and errors ----------------------------------------------------------------


def test_per_task_errors_leave_other_tasks_alone(client, server) -> None:
    good, unknown, missing = image_task(), image_task(model="nosuch:1@1"), image_task(width=None)
    resp = call(client, server, [good, unknown, missing])
    assert resp.status_code == 200
    body = resp.json()
    assert [d["taskUUID"] for d in body["data"]] == [good["taskUUID"]]
    errors = {e["taskUUID"]: e for e in body["errors"]}
    assert errors[unknown["taskUUID"]]["code"] == "invalidModel"
    assert errors[unknown["taskUUID"]]["parameter"] == "model"
    assert errors[missing["taskUUID"]]["code"] == "missingParameter"
    assert errors[missing["taskUUID"]]["parameter"] == "width"


@pytest.mark.parametrize(
    ("fields", "parameter"),
    [
        ({"seed": 0}, "seed"),
        ({"seed": 2**63}, "seed"),
        ({"seed": "12"}, "seed"),
        ({"seed": True}, "seed"),
        ({"numberResults": 21}, "numberResults"),
        ({"steps": 0}, "steps"),
        ({"outputFormat": "BMP"}, "outputFormat"),
        ({"outputType": "file"}, "outputType"),
        ({"taskUUID": "not-a-uuid"}, "taskUUID"),
        ({"model": "not an air"}, "model"),
        ({"positivePrompt": ""}, "positivePrompt"),
    ],
)
def test_invalid_parameters_fail_their_task(client, server, fields: dict[str, Any], parameter: str) -> None:
    resp = call(client, server, [image_task(**fields)])
    assert resp.status_code == 400
    body = resp.json()
    assert "data" not in body
    (error,) = body["errors"]
    assert error["parameter"] == parameter


@pytest.mark.parametrize("body", [b"{}", b"[]", b"not json", b"[1, 2]"])
def test_malformed_bodies_are_refused(client, server, body: bytes) -> None:
    resp = client.post(server.url, content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["errors"][0]["code"] == "invalidPayload"


def test_post_to_root_works_too(client, server) -> None:
    resp = client.post(server.base_url + "/", json=[image_task()])
    assert resp.status_code == 200 and len(resp.json()["data"]) == 1


def test_unknown_task_type_and_ping(client, server) -> None:
    resp = call(
        client, server, [{"taskType": "ping", "ping": True}, {"taskType": "teleport", "taskUUID": "x"}]
    )
    body = resp.json()
    assert body["data"] == [{"taskType": "ping", "pong": True}]
    assert body["errors"][0]["code"] == "unsupportedTaskType"


def test_shuffled_results_are_matched_by_task_uuid() -> None:
    tasks = [image_task(seed=i + 1, width=32, height=32) for i in range(8)]
    with ReferenceServer.running(shuffle_results=True, knob_seed=4) as srv, httpx.Client(timeout=30) as c:
        data = c.post(srv.url, json=tasks).json()["data"]
    assert sorted(d["taskUUID"] for d in data) == sorted(t["taskUUID"] for t in tasks)
    assert [d["taskUUID"] for d in data] != [t["taskUUID"] for t in tasks]
    by_uuid = {d["taskUUID"]: d["seed"] for d in data}
    assert all(by_uuid[t["taskUUID"]] == t["seed"] for t in tasks)


def test_rate_limit_answers_429_with_retry_after() -> None:
    with ReferenceServer.running(rate_limit_rate=1.0, retry_after=3) as srv, httpx.Client(timeout=30) as c:
        resp = c.post(srv.url, json=[image_task()])
        assert resp.status_code == 429
        assert resp.headers["retry-after"] == "3"
        assert resp.json()["errors"][0]["code"] == "rateLimitExceeded"
        assert srv.stats.rate_limited == 1


def test_rate_limit_rate_is_a_share_of_requests() -> None:
    with ReferenceServer.running(rate_limit_rate=0.5, knob_seed=11) as srv, httpx.Client(timeout=30) as c:
        codes = [c.post(srv.url, json=[image_task(width=16, height=16)]).status_code for _ in range(40)]
    assert set(codes) == {200, 429}
    assert 8 <= codes.count(429) <= 32
    assert srv.stats.rate_limited == codes.count(429)


def test_error_rate_answers_500() -> None:
    with ReferenceServer.running(error_rate=1.0) as srv, httpx.Client(timeout=30) as c:
        resp = c.post(srv.url, json=[image_task()])
        assert resp.status_code == 500
        assert resp.json()["errors"][0]["code"] == "internalServerError"


def test_stalled_requests_outlast_the_client_timeout() -> None:
    with ReferenceServer.running(stall_rate=1.0, stall_seconds=20) as srv:
        with httpx.Client(timeout=0.3) as c, pytest.raises(httpx.ReadTimeout):
            c.post(srv.url, json=[image_task()])
        assert srv.stats.stalled == 1
    # Leaving the block stops the server even with a stall in flight (the test timeout guards it).


def test_latency_knob_delays_but_answers() -> None:
    with ReferenceServer.running(latency_ms=50) as srv, httpx.Client(timeout=30) as c:
        assert c.post(srv.url, json=[image_task()]).status_code == 200


def test_bad_knobs_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="error_rate"):
        ReferenceServer(error_rate=1.5)
    with pytest.raises(InvalidInputError, match="unknown reference server option"):
        ReferenceServer(speed=3)


# --- async video, audio, task details ----------------------------------------------------


def test_video_is_async_by_default_and_polled_with_get_response(client, server) -> None:
    task_uuid = str(uuid.uuid4())
    task = {
        "taskType": "videoInference",
        "taskUUID": task_uuid,
        "model": "vidu:1@1",
        "positivePrompt": "waves",
        "seed": 8,
        "outputType": "URL",
    }
    ack = call(client, server, [task]).json()
    assert ack == {"data": [{"taskType": "videoInference", "taskUUID": task_uuid}]}
    poll = [{"taskType": "getResponse", "taskUUID": task_uuid}]
    first = call(client, server, poll).json()["data"]
    assert first == [{"taskType": "videoInference", "taskUUID": task_uuid, "status": "processing"}]
    (done,) = poll_until_done(client, server, poll)
    assert done["status"] == "success" and done["seed"] == 8 and done["taskUUID"] == task_uuid
    video = client.get(done["videoURL"])
    assert video.headers["content-type"] == "video/mp4"
    clip = fingerprint(video.content)  # a real H.264 MP4 with several frames
    assert clip.modality == "video" and clip.detail.codec == "h264" and clip.detail.frame_count > 1
    # Same seed, same video.
    again = dict(task, taskUUID=str(uuid.uuid4()), deliveryMethod="sync", outputType="base64Data")
    (sync_result,) = call(client, server, [again]).json()["data"]
    assert base64.b64decode(sync_result["videoBase64Data"]) == video.content


def test_audio_is_sync_by_default_and_async_on_request(client, server) -> None:
    task = {
        "taskType": "audioInference",
        "taskUUID": str(uuid.uuid4()),
        "model": "runware:1@1",
        "positivePrompt": "rain",
        "seed": 4,
        "outputType": "base64Data",
        "duration": 0.5,
    }
    (result,) = call(client, server, [task]).json()["data"]
    data = base64.b64decode(result["audioBase64Data"])
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert result["seed"] == 4
    task2 = dict(task, taskUUID=str(uuid.uuid4()), deliveryMethod="async")
    assert "audioBase64Data" not in call(client, server, [task2]).json()["data"][0]
    poll = [{"taskType": "getResponse", "taskUUID": task2["taskUUID"]}]
    (item,) = poll_until_done(client, server, poll)
    assert base64.b64decode(item["audioBase64Data"]) == data


def test_async_error_rate_fails_tasks_through_get_response() -> None:
    task = {
        "taskType": "videoInference",
        "taskUUID": str(uuid.uuid4()),
        "model": "vidu:1@1",
        "positivePrompt": "x",
    }
    with ReferenceServer.running(async_error_rate=1.0, async_polls=0) as srv, httpx.Client(timeout=30) as c:
        assert c.post(srv.url, json=[task]).status_code == 200
        resp = c.post(srv.url, json=[{"taskType": "getResponse", "taskUUID": task["taskUUID"]}])
    assert resp.status_code == 400
    (error,) = resp.json()["errors"]
    assert error["code"] == "timeoutProvider" and error["status"] == "error"
    assert error["taskUUID"] == task["taskUUID"]


def test_get_response_for_an_unknown_task(client, server) -> None:
    resp = call(client, server, [{"taskType": "getResponse", "taskUUID": str(uuid.uuid4())}])
    assert resp.status_code == 400
    assert resp.json()["errors"][0]["code"] == "taskNotFound"


def test_get_task_details_returns_the_request_without_secrets(server) -> None:
    task = image_task(seed=21, outputType="URL")
    with httpx.Client(timeout=30) as c:
        c.post(server.url, json=[{"taskType": "authentication", "apiKey": SENTINEL_KEY}, task])
        details = c.post(server.url, json=[{"taskType": "getTaskDetails", "taskUUID": task["taskUUID"]}])
    (item,) = details.json()["data"]
    assert item["taskUUID"] == task["taskUUID"]
    assert item["request"] == task
    assert item["response"]["data"][0]["seed"] == 21
    assert SENTINEL_KEY not in details.text


# --- auth ------------------------------------------------------------------------------------


def test_required_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    task = image_task()
    with ReferenceServer.running(api_key=SENTINEL_KEY) as srv, httpx.Client(timeout=30) as c:
        assert SENTINEL_KEY not in repr(srv)
        missing = c.post(srv.url, json=[task])
        wrong = c.post(srv.url, json=[task], headers={"Authorization": "Bearer wrong"})
        wrong_task = c.post(srv.url, json=[{"taskType": "authentication", "apiKey": "wrong"}, task])
        for resp in (missing, wrong, wrong_task):
            assert resp.status_code == 401
            assert resp.json()["errors"][0]["code"] == "invalidApiKey"
            assert SENTINEL_KEY not in resp.text
        ok = c.post(srv.url, json=[task], headers={"Authorization": f"Bearer {SENTINEL_KEY}"})
        assert ok.status_code == 200 and SENTINEL_KEY not in ok.text
        by_task = c.post(srv.url, json=[{"taskType": "authentication", "apiKey": SENTINEL_KEY}, image_task()])
        assert by_task.status_code == 200
        assert by_task.json()["data"][0]["taskType"] == "authentication"
        assert SENTINEL_KEY not in by_task.text
        assert srv.stats.unauthorized == 3
    assert SENTINEL_KEY not in caplog.text


def test_open_mode_accepts_any_key_but_not_an_empty_one(client, server) -> None:
    assert (
        client.post(server.url, json=[image_task()], headers={"Authorization": "Bearer whatever"}).status_code
        == 200
    )
    with httpx.Client(timeout=30) as bare:
        assert bare.post(server.url, json=[image_task()]).status_code == 200
        assert (
            bare.post(server.url, json=[image_task()], headers={"Authorization": "Bearer"}).status_code == 401
        )
        empty_task = [{"taskType": "authentication", "apiKey": ""}, image_task()]
        assert bare.post(server.url, json=empty_task).status_code == 401


# --- serving ---------------------------------------------------------------------------------


def test_health_says_reference_backend_not_a_model(client, server) -> None:
    body = client.get(server.base_url + "/health").json()
    assert body["status"] == "ok" and "not a model" in body["note"]


def test_many_concurrent_requests(server) -> None:
    async def run() -> list[int]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=64)) as c:
            tasks = [
                c.post(server.url, json=[image_task(seed=i + 1, width=64, height=64)]) for i in range(60)
            ]
            responses = await asyncio.gather(*tasks)
        return [r.json()["data"][0]["seed"] for r in responses if r.status_code == 200]

    assert sorted(asyncio.run(run())) == list(range(1, 61))


def test_running_twice_gives_separate_ports() -> None:
    with ReferenceServer.running() as a, ReferenceServer.running() as b:
        assert a.url != b.url and a.url.endswith("/v1") and a.url.startswith("http://127.0.0.1:")
    with pytest.raises(Exception, match="not running"):
        _ = a.url


def test_a_busy_port_is_a_backend_error() -> None:
    with ReferenceServer.running() as srv:
        port = int(srv.base_url.rsplit(":", 1)[1])
        with pytest.raises(BackendError, match="cannot listen"), ReferenceServer.running(port=port):
            pass


def test_a_catalog_override_admits_more_models() -> None:
    task = image_task(model="acme:1@1")
    catalog = ModelCatalog().with_overrides({"models": {"acme:*": {"seed": False}}})
    with ReferenceServer.running(catalog=catalog) as srv, httpx.Client(timeout=30) as c:
        (result,) = c.post(srv.url, json=[task]).json()["data"]
    assert "seed" not in result  # seedless per the override


def test_cli_reference_server_serves_until_terminated() -> None:
    command = [sys.executable, "-m", "ledger", "reference-server", "--port", "0", "--model-revision", "2"]
    with subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True) as proc:
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            match = re.search(r"(http://127\.0\.0\.1:\d+)/v1", line)
            assert match, line
            assert "not a model" in line
            with httpx.Client(timeout=30) as c:
                # The port is bound before the announcement, so connecting cannot be refused.
                health = c.get(match[1] + "/health")
                assert health.json()["modelRevision"] == "2"
                assert c.post(match[0], json=[image_task()]).status_code == 200
        finally:
            proc.terminate()
            proc.wait(timeout=20)
