"""The Runware adapter against a live Runware-protocol server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from ledger.backends import (
    AuthenticationError,
    BackendHTTPError,
    BackendTimeout,
    BackendUnavailable,
    DownloadError,
    GenerationRequest,
    GenerationResult,
    HostPolicy,
    MalformedResponse,
    RateLimited,
    RetryPolicy,
    TaskFailed,
    UnsupportedRequest,
    open_backend,
    open_sync_backend,
    request_from_params,
    request_from_record,
)
from ledger.backends.runware import PollPolicy, RunwareBackend
from ledger.core.records import Modality, Record, SeedOrigin, Source, utcnow
from ledger.errors import BackendError, UsageError
from tests.conftest import SENTINEL_KEY
from tests.fakes.runware import FakeRunware, tiny_png
from tests.fakes.server import SwappableApp, live_server

FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.01)
FAST_POLL = PollPolicy(initial=0.001, factor=1.5, max_interval=0.01, timeout=5.0)


@pytest.fixture(scope="module")
def _live() -> Iterator[tuple[SwappableApp, str]]:
    app = SwappableApp()
    with live_server(app) as base:
        yield app, base


@pytest.fixture
def fake(_live: tuple[SwappableApp, str]) -> FakeRunware:
    app, base = _live
    server = FakeRunware(api_key=SENTINEL_KEY, base_url=base)
    app.target = server.app()
    return server


def backend(fake: FakeRunware, **options: Any) -> RunwareBackend:
    options.setdefault("api_key", SENTINEL_KEY)
    options.setdefault("retry", FAST_RETRY)
    options.setdefault("poll", FAST_POLL)
    opened = open_backend("runware", url=f"{fake.base_url}/v1", **options)
    assert isinstance(opened, RunwareBackend)
    return opened


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def generate(fake: FakeRunware, request: GenerationRequest, **options: Any) -> GenerationResult:
    async with backend(fake, **options) as b:
        return await b.generate(request)


async def batch(fake: FakeRunware, requests: list[GenerationRequest], **options: Any) -> list[Any]:
    async with backend(fake, **options) as b:
        return await b.generate_batch(requests)


def task(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "taskType": "imageInference",
        "taskUUID": "11111111-1111-4111-8111-111111111111",
        "model": "runware:101@1",
        "positivePrompt": "a lighthouse at dusk",
        "width": 512,
        "height": 512,
        "steps": 25,
        "scheduler": "DPM++ 2M Karras",
        "outputFormat": "PNG",
    }
    params.update(overrides)
    return params


def record(seed: int | None = 1234, **params: Any) -> Record:
    stored = task(
        numberResults=4,
        webhookURL="https://hooks.example/cb",
        uploadEndpoint="https://bucket.example/put",
        seed=seed,
        **params,
    )
    return Record(
        id=7,
        recorded_at=utcnow(),
        backend="runware",
        task_type="imageInference",
        modality=Modality.IMAGE,
        model=stored["model"],
        seed=seed,
        seed_origin=SeedOrigin.REQUEST,
        output_format="PNG",
        params=stored,
        task_uuid=stored["taskUUID"],
        source=Source.HOOK,
    )


def expected_png(seed: int, t: dict[str, Any] | None = None) -> bytes:
    t = t or task()
    return tiny_png(seed, t["model"], t["positivePrompt"], "image")


# -- requests ------------------------------------------------------------------------


def test_request_from_record_replays_one_output_with_its_seed() -> None:
    request = request_from_record(record(seed=99))
    assert request.protocol == "runware"
    assert request.seed == 99
    assert request.number_results == 1
    assert request.record_id == 7
    for field in ("taskUUID", "webhookURL", "uploadEndpoint"):
        assert field not in request.params
    assert request.params["scheduler"] == "DPM++ 2M Karras"


def test_request_params_are_a_private_copy() -> None:
    params = task(lora=[{"model": "civitai:1@1", "weight": 1}])
    request = request_from_params("runware", params, seed=5)
    params["lora"][0]["weight"] = 0
    assert request.params["lora"][0]["weight"] == 1


def test_unknown_backend_name_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown backend"):
        open_backend("midjourney")


# -- replays and output types --------------------------------------------------------


@pytest.mark.parametrize("output_type", ["URL", "base64Data", "dataURI"])
def test_replay_returns_bytes_seed_and_metadata(fake: FakeRunware, output_type: str) -> None:
    rec = record(seed=4242, outputType=output_type)
    result = run(generate(fake, request_from_record(rec)))
    (out,) = result.outputs
    assert out.data == expected_png(4242)
    assert out.media_type == "image/png"
    assert out.seed == 4242
    assert out.cost == pytest.approx(0.0013)
    assert out.task_uuid == result.task_uuid
    assert out.output_uuid and out.output_uuid == out.metadata["imageUUID"]
    assert "imageBase64Data" not in out.metadata and "imageDataURI" not in out.metadata
    sent = fake.tasks_seen[-1]
    assert sent["taskUUID"] == result.task_uuid != rec.task_uuid
    assert sent["seed"] == 4242 and sent["numberResults"] == 1
    assert "webhookURL" not in sent and "uploadEndpoint" not in sent
    assert result.retries == 0 and result.attempts >= 1


def test_several_results_each_keep_their_own_seed(fake: FakeRunware) -> None:
    request = request_from_params("runware", task(), seed=77, number_results=3)
    result = run(generate(fake, request))
    assert len(result.outputs) == 3
    assert len(set(result.seeds)) == 3
    assert 77 in result.seeds
    for out in result.outputs:
        assert out.data == expected_png(out.seed)  # each seed is the one that made it


def test_missing_seed_is_reported_by_the_backend(fake: FakeRunware) -> None:
    result = run(generate(fake, request_from_params("runware", task())))
    (out,) = result.outputs
    assert out.seed is not None and out.data == expected_png(out.seed)
    assert "seed" not in fake.tasks_seen[-1]


def test_seed_outside_runware_range_is_refused_before_sending(fake: FakeRunware) -> None:
    with pytest.raises(UnsupportedRequest, match="outside the range"):
        run(generate(fake, request_from_params("runware", task(), seed=2**63)))
    assert fake.posts == 0


def test_a1111_request_is_refused_by_the_runware_adapter(fake: FakeRunware) -> None:
    request = request_from_params("a1111", {"prompt": "x"}, seed=1)
    with pytest.raises(UnsupportedRequest, match="runware protocol"):
        run(generate(fake, request))


# -- envelopes -----------------------------------------------------------------------


def test_per_task_errors_beside_successes_matched_by_task_uuid(fake: FakeRunware) -> None:
    requests = [
        request_from_params("runware", task(positivePrompt="one"), seed=1),
        request_from_params("runware", task(model="fail:nope"), seed=2),
        request_from_params("runware", task(positivePrompt="three"), seed=3),
    ]
    outcomes = run(batch(fake, requests))
    assert fake.posts == 1  # one request carried all three tasks
    first, failed, third = outcomes
    assert isinstance(failed, TaskFailed)
    assert failed.code == "invalidModel"
    assert "parameter model" in str(failed)
    sent = {t["taskUUID"]: t for t in fake.tasks_seen}
    assert sent[failed.task_uuid]["model"] == "fail:nope"
    # The server answered in reverse order; each result still lands on its own task.
    assert first.outputs[0].data == expected_png(1, task(positivePrompt="one"))
    assert third.outputs[0].data == expected_png(3, task(positivePrompt="three"))
    assert sent[first.task_uuid]["positivePrompt"] == "one"


def test_single_failed_task_is_task_failed_not_http_error(fake: FakeRunware) -> None:
    with pytest.raises(TaskFailed) as caught:
        run(generate(fake, request_from_params("runware", task(model="fail:x"), seed=1)))
    assert caught.value.code == "invalidModel"
    assert caught.value.exit_code == 6


def test_error_without_task_uuid_is_an_http_error(fake: FakeRunware) -> None:
    fake.mode = "error-no-uuid"
    with pytest.raises(BackendHTTPError) as caught:
        run(generate(fake, request_from_params("runware", task(), seed=1)))
    assert caught.value.status == 402
    assert caught.value.code == "insufficientCredits"
    assert "top up" in str(caught.value)


def test_bare_list_answer_is_accepted(fake: FakeRunware) -> None:
    fake.mode = "bare-list"
    result = run(generate(fake, request_from_params("runware", task(outputType="base64Data"), seed=8)))
    assert result.outputs[0].data == expected_png(8)


@pytest.mark.parametrize(
    ("mode", "match"),
    [
        ("not-json", "not JSON"),
        ("wrong-shape", "unexpected shape"),
        ("empty-data", "no result for task"),
    ],
)
def test_malformed_answers_are_backend_errors(fake: FakeRunware, mode: str, match: str) -> None:
    fake.mode = mode
    with pytest.raises(MalformedResponse, match=match):
        run(generate(fake, request_from_params("runware", task(), seed=1)))


def test_wrong_api_key_is_an_authentication_error(fake: FakeRunware) -> None:
    with pytest.raises(AuthenticationError, match="HTTP 401"):
        run(generate(fake, request_from_params("runware", task(), seed=1), api_key="sk-wrong-key-123"))


def test_no_api_key_is_refused_at_open(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AuthenticationError, match="RUNWARE_API_KEY"):
        open_backend("runware")


def test_api_key_from_environment(fake: FakeRunware, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNWARE_API_KEY", SENTINEL_KEY)

    async def go() -> GenerationResult:
        async with open_backend("runware", url=f"{fake.base_url}/v1", retry=FAST_RETRY) as b:
            return await b.generate(request_from_params("runware", task(), seed=3))

    assert run(go()).outputs[0].seed == 3


def test_reference_backend_never_sends_the_environment_key(
    fake: FakeRunware, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNWARE_API_KEY", SENTINEL_KEY)
    fake.api_key = None

    async def go() -> GenerationResult:
        async with open_backend("reference", url=f"{fake.base_url}/v1") as b:
            return await b.generate(request_from_params("reference", task(), seed=3))

    assert run(go()).outputs[0].seed == 3
    assert fake.auth_seen == [""]


# -- retries, timeouts, connection failures -------------------------------------------


class SleepRecorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def test_429_is_retried_honouring_retry_after_capped(fake: FakeRunware) -> None:
    fake.rate_limit_every = 2  # the 2nd, 4th… POST is refused
    fake.retry_after = "120"
    sleeps = SleepRecorder()
    retry = RetryPolicy(max_attempts=4, base_delay=0.001, retry_after_cap=0.75)

    async def go() -> list[GenerationResult]:
        async with backend(fake, retry=retry, sleep=sleeps) as b:
            return [await b.generate(request_from_params("runware", task(), seed=s)) for s in (1, 2)]

    first, second = run(go())
    assert first.retries == 0
    assert second.retries == 1
    assert sleeps.delays == [0.75]
    assert fake.rate_limited == 1


def test_retry_after_as_http_date(fake: FakeRunware) -> None:
    fake.rate_limit_every = 1
    fake.retry_after = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    sleeps = SleepRecorder()
    retry = RetryPolicy(max_attempts=2, retry_after_cap=5.0)
    with pytest.raises(RateLimited, match="after 2 attempts") as caught:
        run(generate(fake, request_from_params("runware", task(), seed=1), retry=retry, sleep=sleeps))
    assert sleeps.delays == [5.0]  # ~30 s asked for, capped at 5
    assert caught.value.attempts == 2 and caught.value.retries == 1
    assert fake.posts == 2


def test_backoff_without_retry_after_is_full_jitter_exponential(fake: FakeRunware) -> None:
    fake.rate_limit_every = 1
    fake.retry_after = None
    sleeps = SleepRecorder()
    retry = RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=3.0)
    with pytest.raises(RateLimited):
        run(generate(fake, request_from_params("runware", task(), seed=1), retry=retry, sleep=sleeps))
    assert len(sleeps.delays) == 4
    for n, delay in enumerate(sleeps.delays, start=1):
        assert 0.0 <= delay <= min(3.0, 2 ** (n - 1))


def test_503_with_html_is_retried_then_succeeds(fake: FakeRunware) -> None:
    fake.unavailable_every = 1

    async def go() -> GenerationResult:
        async with backend(fake) as b:
            task_ = asyncio.ensure_future(b.generate(request_from_params("runware", task(), seed=5)))
            while fake.posts < 2:
                await asyncio.sleep(0.001)
            fake.unavailable_every = 0
            return await task_

    result = run(go())
    assert result.retries >= 1
    assert result.outputs[0].seed == 5


def test_slow_server_times_out_after_all_attempts(fake: FakeRunware) -> None:
    fake.delay = 0.5
    retry = RetryPolicy(max_attempts=2, base_delay=0.001)
    with pytest.raises(BackendTimeout, match="timed out") as caught:
        run(generate(fake, request_from_params("runware", task(), seed=1), timeout=0.05, retry=retry))
    assert caught.value.attempts == 2


def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # nothing listens on that port any more

    async def go() -> None:
        async with open_backend(
            "runware", url=f"http://127.0.0.1:{port}/v1", api_key="k", retry=FAST_RETRY
        ) as b:
            await b.generate(request_from_params("runware", task(), seed=1))

    with pytest.raises(BackendUnavailable, match="cannot reach") as caught:
        run(go())
    assert caught.value.attempts == FAST_RETRY.max_attempts


def test_half_the_requests_429_a_run_of_100_replays_completes(fake: FakeRunware) -> None:
    fake.rate_limit_every = 2
    retry = RetryPolicy(max_attempts=30, base_delay=0.001, max_delay=0.005)
    requests = [request_from_params("runware", task(), seed=1000 + i) for i in range(100)]

    async def go() -> list[Any]:
        async with backend(fake, retry=retry) as b:
            return await b.generate_many(requests, concurrency=8)

    outcomes = run(go())
    assert all(isinstance(o, GenerationResult) for o in outcomes), [
        o for o in outcomes if not isinstance(o, GenerationResult)
    ]
    outputs = [out for o in outcomes for out in o.outputs]
    assert len(outputs) == 100
    assert len({out.output_uuid for out in outputs}) == 100  # no duplicates
    assert [out.seed for out in outputs] == [1000 + i for i in range(100)]
    assert all(out.data == expected_png(out.seed) for out in outputs)
    total_retries = sum(o.retries for o in outcomes)
    assert fake.rate_limited >= 50
    assert total_retries == fake.rate_limited  # every 429 was counted once, and retried


# -- downloads -----------------------------------------------------------------------


def test_oversized_download_is_aborted_at_the_cap(fake: FakeRunware) -> None:
    fake.download_bytes = 5_000_000
    with pytest.raises(DownloadError, match="larger than the 100000-byte cap") as caught:
        run(generate(fake, request_from_params("runware", task(), seed=1), max_download_bytes=100_000))
    assert caught.value.code == "too-large"


def test_oversized_inline_output_is_refused(fake: FakeRunware) -> None:
    request = request_from_params("runware", task(outputType="base64Data"), seed=1)
    with pytest.raises(DownloadError, match="cap") as caught:
        run(generate(fake, request, max_download_bytes=10))
    assert caught.value.code == "too-large"


def test_wrong_content_type_is_refused(fake: FakeRunware) -> None:
    fake.file_content_type = "text/html; charset=utf-8"
    with pytest.raises(DownloadError, match="content type 'text/html'") as caught:
        run(generate(fake, request_from_params("runware", task(), seed=1)))
    assert caught.value.code == "content-type"


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "http://10.1.2.3/x.png", "http://169.254.169.254/latest/meta-data", "ftp://x/y"],
)
def test_output_urls_to_private_hosts_or_other_schemes_are_refused(fake: FakeRunware, url: str) -> None:
    fake.url_override = url
    with pytest.raises(DownloadError, match="refused") as caught:
        run(generate(fake, request_from_params("runware", task(), seed=1)))
    assert caught.value.code == "url-refused"


def test_output_url_on_another_loopback_name_needs_permission(fake: FakeRunware) -> None:
    port = fake.base_url.rsplit(":", 1)[1]
    fake.url_override = f"http://localhost:{port}/redirect/0"
    with pytest.raises(DownloadError, match="loopback"):
        run(generate(fake, request_from_params("runware", task(), seed=1)))
    result = run(
        generate(
            fake,
            request_from_params("runware", task(), seed=1),
            host_policy=HostPolicy(allow_loopback=True),
        )
    )
    assert result.outputs[0].data == tiny_png("redirected")


def test_base64_that_is_not_base64_is_malformed(fake: FakeRunware) -> None:
    original = fake.results

    def broken(t: dict[str, Any]) -> list[dict[str, Any]]:
        results = original(t)
        results[0]["imageBase64Data"] = "!!!not base64!!!"
        return results

    fake.results = broken  # type: ignore[method-assign]
    request = request_from_params("runware", task(outputType="base64Data"), seed=1)
    with pytest.raises(MalformedResponse, match="not valid base64"):
        run(generate(fake, request))


# -- async delivery ------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "prefix"), [("videoInference", "video"), ("audioInference", "audio")])
def test_async_tasks_are_collected_by_polling(fake: FakeRunware, kind: str, prefix: str) -> None:
    fake.async_polls = 3
    params = task(taskType=kind, deliveryMethod="async", outputType="base64Data")
    request = request_from_params("runware", params, seed=31)
    assert request.modality == (Modality.VIDEO if prefix == "video" else Modality.AUDIO)
    result = run(generate(fake, request))
    assert result.polls == 4  # three "processing" answers, then the result
    (out,) = result.outputs
    assert out.seed == 31
    assert out.data == tiny_png(31, params["model"], params["positivePrompt"], prefix)
    polls = [t for t in fake.tasks_seen if t["taskType"] == "getResponse"]
    assert {t["taskUUID"] for t in polls} == {result.task_uuid}


def test_async_failure_is_task_failed(fake: FakeRunware) -> None:
    params = task(taskType="videoInference", model="fail-async:1")
    with pytest.raises(TaskFailed) as caught:
        run(generate(fake, request_from_params("runware", params, seed=1)))
    assert caught.value.code == "timeoutProvider"


def test_polling_gives_up_at_its_deadline(fake: FakeRunware) -> None:
    fake.async_polls = 10_000
    poll = PollPolicy(initial=0.01, factor=1.5, max_interval=0.02, timeout=0.2)
    with pytest.raises(BackendTimeout) as caught:
        run(
            generate(fake, request_from_params("runware", task(taskType="videoInference"), seed=1), poll=poll)
        )
    assert caught.value.code == "poll-timeout"


# -- task details --------------------------------------------------------------------


def test_get_task_details_returns_the_original_request(fake: FakeRunware) -> None:
    async def go() -> Any:
        async with backend(fake) as b:
            result = await b.generate(request_from_params("runware", task(), seed=12))
            details = await b.get_task_details(result.task_uuid)
            return result, details

    result, details = run(go())
    assert details.task_uuid == result.task_uuid
    assert details.request[0]["seed"] == 12
    assert details.task["seed"] == 12
    assert details.response["data"][0]["taskUUID"] == result.task_uuid


def test_get_task_details_of_unknown_task(fake: FakeRunware) -> None:
    async def go() -> Any:
        async with backend(fake) as b:
            return await b.get_task_details("00000000-0000-4000-8000-000000000000")

    with pytest.raises(TaskFailed) as caught:
        run(go())
    assert caught.value.code == "taskNotFound"


# -- sync wrapper --------------------------------------------------------------------


def test_sync_backend(fake: FakeRunware) -> None:
    with open_sync_backend(
        "runware", url=f"{fake.base_url}/v1", api_key=SENTINEL_KEY, retry=FAST_RETRY
    ) as sync:
        result = sync.replay(record(seed=55))
        many = sync.generate_many([request_from_params("runware", task(), seed=s) for s in (1, 2)])
        details = sync.call(sync.backend.get_task_details, result.task_uuid)  # type: ignore[attr-defined]
    assert result.outputs[0].seed == 55
    assert [m.outputs[0].seed for m in many] == [1, 2]
    assert details.task_uuid == result.task_uuid
    with pytest.raises(UsageError, match="closed"):
        sync.generate(request_from_params("runware", task(), seed=1))


# -- secrets -------------------------------------------------------------------------


def test_sentinel_key_never_in_logs_errors_or_results(
    fake: FakeRunware, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.echo_auth = True  # a careless server that echoes the Authorization header
    fake.rate_limit_every = 3
    texts: list[str] = []

    async def go() -> None:
        async with backend(fake) as b:
            texts.append(repr(b))
            texts.append(repr(vars(b)))
            texts.append(repr(vars(b._http)))  # what a debugger or error reporter would show
            ok = await b.generate_batch(
                [
                    request_from_params("runware", task(), seed=1),
                    request_from_params("runware", task(model="fail:x"), seed=2),
                    request_from_params("runware", task(outputType="base64Data"), seed=3),
                ]
            )
            texts.extend(repr(o) for o in ok)
            texts.extend(str(o) for o in ok)
            texts.extend(
                repr(out.metadata) for o in ok if isinstance(o, GenerationResult) for out in o.outputs
            )
            details = await b.get_task_details(ok[0].task_uuid)
            texts.append(repr(details))
        async with backend(fake, api_key=SENTINEL_KEY + "-wrong") as wrong:
            try:
                await wrong.generate(request_from_params("runware", task(), seed=1))
            except BackendError as exc:
                texts.append(str(exc))
                texts.append(repr(exc))
                texts.append(repr(exc.args))

    run(go())
    assert any("invalidModel" in t for t in texts)
    assert any("HTTP 401" in t for t in texts)
    captured = capsys.readouterr()
    for text in [*texts, caplog.text, captured.out, captured.err]:
        assert SENTINEL_KEY not in text
    assert any("retry" in r.getMessage() for r in caplog.records)  # the logs did run at DEBUG


def test_task_failed_message_cuts_out_an_echoed_key(fake: FakeRunware) -> None:
    fake.echo_auth = True
    with pytest.raises(TaskFailed) as caught:
        run(generate(fake, request_from_params("runware", task(model="fail:z"), seed=1)))
    assert "model not found" in str(caught.value)
    assert SENTINEL_KEY not in str(caught.value)
