"""Capture end to end: the httpx transports and the proxy against the reference server.

Each scenario sends seeded and unseeded tasks, ``numberResults: 4``, a failing task and
an async video task (polled with getResponse), then checks the ledger holds exactly
the expected records with the seeds the server returned, and that the client received
byte-identical responses (compared with what the upstream transport delivered).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from ledger.backends.reference.server import ReferenceServer
from ledger.capture import AsyncRecordingTransport, Recorder, RecordingTransport
from ledger.capture.proxy import RecordingProxy
from ledger.core.records import Source, Status
from ledger.store import Ledger
from tests.conftest import SENTINEL_KEY

AUTH = {"Authorization": f"Bearer {SENTINEL_KEY}"}
WEBHOOK_SECRET = "webhook-secret-0123456789"
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"}


# -- helpers shared with the other capture tests -------------------------------------------


def image_task(**extra: Any) -> dict[str, Any]:
    return {
        "taskType": "imageInference",
        "taskUUID": str(uuid.uuid4()),
        "model": "runware:101@1",
        "positivePrompt": "a lighthouse at dusk",
        "width": 64,
        "height": 64,
        "steps": 4,
        "scheduler": "Euler",
        **extra,
    }


def video_task() -> dict[str, Any]:
    return {
        "taskType": "videoInference",
        "taskUUID": str(uuid.uuid4()),
        "model": "runware:101@1",
        "positivePrompt": "waves",
        "width": 64,
        "height": 64,
        "seed": 7,
    }


class Seen:
    """What the upstream transport delivered, per request body (the ground truth)."""

    def __init__(self) -> None:
        self.by_request: dict[bytes, tuple[int, list[tuple[bytes, bytes]], bytes]] = {}

    def expect(
        self, request_body: bytes, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        got = self.by_request[request_body]
        assert got[0] == status
        assert [h for h in got[1] if h[0].decode().lower() not in HOP] == [
            h for h in headers if h[0].decode().lower() not in HOP
        ]
        assert got[2] == body


class SpyTransport(httpx.BaseTransport):
    def __init__(self, seen: Seen) -> None:
        self.inner = httpx.HTTPTransport()
        self.seen = seen

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        body = b"".join(response.stream)
        response.stream.close()
        self.seen.by_request[request.content] = (response.status_code, list(response.headers.raw), body)
        return httpx.Response(
            response.status_code, headers=response.headers.raw, stream=httpx.ByteStream(body)
        )

    def close(self) -> None:
        self.inner.close()


class AsyncSpyTransport(httpx.AsyncBaseTransport):
    def __init__(self, seen: Seen) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.seen = seen

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        chunks: list[bytes] = []
        original_stream = request.stream

        async def read_request() -> Any:
            async for chunk in original_stream:  # type: ignore[union-attr]
                chunks.append(chunk)
                yield chunk

        response = await self.inner.handle_async_request(
            httpx.Request(request.method, request.url, headers=request.headers, content=read_request())
        )
        body = b"".join([chunk async for chunk in response.stream])
        await response.stream.aclose()
        self.seen.by_request[b"".join(chunks)] = (response.status_code, list(response.headers.raw), body)
        return httpx.Response(
            response.status_code, headers=response.headers.raw, stream=httpx.ByteStream(body)
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


@contextlib.contextmanager
def running_proxy(upstream: str, recorder: Recorder, **options: Any) -> Iterator[str]:
    """The recording proxy on an ephemeral loopback port, in a thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = RecordingProxy(upstream, recorder, owns_recorder=False, **options)
    config = uvicorn.Config(
        app,
        lifespan="on",
        http="h11",
        log_level="warning",
        access_log=False,
        server_header=False,
        date_header=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "proxy did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def poll_video(post: Any, task_uuid: str) -> dict[str, Any]:
    for _ in range(200):
        body = post([{"taskType": "getResponse", "taskUUID": task_uuid}])
        items = body.get("data", [])
        if items and items[0].get("status") == "success":
            return items[0]
        time.sleep(0.02)
    raise AssertionError("video never delivered")


def run_scenario(post: Any) -> dict[str, Any]:
    """Send the standard traffic through ``post(tasks) -> parsed body``; return what
    the records must be: {taskUUID: [(seed, output_uuid, status)]}."""
    seeded, unseeded, four, failing = (
        image_task(seed=42),
        image_task(),
        image_task(numberResults=4),
        image_task(model="nosuch:1@1"),
    )
    video = video_task()
    body = post([seeded, unseeded, four, failing, video])
    expected: dict[str, list[tuple[int | None, str | None, Status]]] = {}
    for item in body["data"]:
        if "imageUUID" in item:
            expected.setdefault(item["taskUUID"], []).append((item["seed"], item["imageUUID"], Status.OK))
    for item in body["errors"]:
        expected.setdefault(item["taskUUID"], []).append((None, None, Status.FAILED))
    assert [s for s, _, _ in expected[seeded["taskUUID"]]] == [42]
    assert len(expected[four["taskUUID"]]) == 4
    assert len({s for s, _, _ in expected[four["taskUUID"]]}) == 4
    assert expected[failing["taskUUID"]][0][2] is Status.FAILED
    assert video["taskUUID"] not in expected  # acknowledged, not delivered yet
    delivered = poll_video(post, video["taskUUID"])
    expected[video["taskUUID"]] = [(delivered["seed"], delivered["videoUUID"], Status.OK)]
    return expected


def check_ledger(db_url: str, expected: dict[str, Any], source: Source) -> None:
    with Ledger.open(db_url) as ledger:
        records = ledger.query()
    got: dict[str, list[tuple[int | None, str | None, Status]]] = {}
    for r in records:
        assert r.source == source
        got.setdefault(r.task_uuid or "", []).append((r.seed, r.output_uuid, r.status))
    assert {k: sorted(v, key=str) for k, v in got.items()} == {
        k: sorted(v, key=str) for k, v in expected.items()
    }
    assert len(records) == 8


def assert_no_secret(db_url: str, spool_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    token = SENTINEL_KEY.encode()
    for path in spool_dir.rglob("*"):
        if path.is_file():
            assert token not in path.read_bytes(), path
    if db_url.startswith("sqlite"):
        db_file = Path(db_url.split("///", 1)[1])
        for path in db_file.parent.glob(db_file.name + "*"):
            assert token not in path.read_bytes(), path
    else:
        with Ledger.open(db_url) as ledger, ledger.reading() as conn:
            dump = conn.exec_driver_sql("SELECT r::text FROM records r").scalars().all()
        assert dump and not any(SENTINEL_KEY in row for row in dump)
    assert SENTINEL_KEY not in caplog.text


@pytest.fixture(scope="module")
def reference() -> Iterator[ReferenceServer]:
    with ReferenceServer.running(async_polls=1) as server:
        yield server


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def make_recorder(tmp_path: Path, db_url: str, **options: Any) -> Recorder:
    return Recorder(tmp_path / "spool", db_url, max_backoff=0.2, allow_private_downloads=True, **options)


# -- end to end --------------------------------------------------------------------------


def test_transport_records_every_output_and_changes_nothing(
    reference: ReferenceServer, db_url: str, tmp_path: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    seen = Seen()
    recorder = make_recorder(tmp_path, db_url)
    client = httpx.Client(transport=RecordingTransport(SpyTransport(seen), recorder=recorder), headers=AUTH)

    def post(tasks: list[dict[str, Any]]) -> Any:
        response = client.post(reference.url, json=tasks)
        seen.expect(
            response.request.content, response.status_code, list(response.headers.raw), response.content
        )
        return response.json()

    expected = run_scenario(post)
    client.close()
    assert recorder.close(drain_timeout=30)
    counters = recorder.counters.snapshot()
    assert counters["spooled"] == counters["recorded"] == 8
    assert counters["failed"] == counters["parse_errors"] == 0
    assert counters["fingerprinted"] == 7  # every output, the video too (URL results, downloaded)
    check_ledger(db_url, expected, Source.HOOK)
    assert_no_secret(db_url, tmp_path / "spool", debug_logs)


def test_async_transport_records_the_same(
    reference: ReferenceServer, sqlite_url: str, tmp_path: Path
) -> None:
    recorder = make_recorder(tmp_path, sqlite_url, fingerprint=False)

    async def main() -> dict[str, Any]:
        async with httpx.AsyncClient(
            transport=AsyncRecordingTransport(recorder=recorder), headers=AUTH
        ) as client:

            async def apost(tasks: list[dict[str, Any]]) -> Any:
                return (await client.post(reference.url, json=tasks)).json()

            loop = asyncio.get_running_loop()

            def post(tasks: list[dict[str, Any]]) -> Any:
                return asyncio.run_coroutine_threadsafe(apost(tasks), loop).result()

            return await asyncio.to_thread(run_scenario, post)

    expected = asyncio.run(main())
    assert recorder.close(drain_timeout=30)
    check_ledger(sqlite_url, expected, Source.HOOK)


def test_proxy_records_every_output_and_relays_bytes_unchanged(
    reference: ReferenceServer, db_url: str, tmp_path: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    seen = Seen()
    recorder = make_recorder(tmp_path, db_url, source=Source.PROXY)
    with (
        running_proxy(reference.base_url, recorder, transport=AsyncSpyTransport(seen)) as proxy,
        httpx.Client(base_url=proxy, headers=AUTH) as client,
    ):
        # What a Runware SDK does with its base URL pointed at the proxy.
        def post(tasks: list[dict[str, Any]]) -> Any:
            response = client.post("/v1", content=json.dumps(tasks).encode())
            seen.expect(
                response.request.content, response.status_code, list(response.headers.raw), response.content
            )
            return response.json()

        expected = run_scenario(post)
        health = client.get("/_seedledger/health").json()
        assert health["status"] == "ok" and health["spooled"] == 8
    assert recorder.close(drain_timeout=30)
    check_ledger(db_url, expected, Source.PROXY)
    assert_no_secret(db_url, tmp_path / "spool", debug_logs)


def test_proxy_forwards_non_task_requests_and_errors_unchanged(
    reference: ReferenceServer, sqlite_url: str, tmp_path: Path
) -> None:
    recorder = make_recorder(tmp_path, sqlite_url, fingerprint=False)
    with running_proxy(reference.base_url, recorder) as proxy, httpx.Client(base_url=proxy) as client:
        direct = httpx.get(reference.base_url + "/health")
        via = client.get("/health")
        assert (via.status_code, via.content) == (direct.status_code, direct.content)
        bad = client.post("/v1", content=b"not json")
        assert bad.status_code == 400
        missing = client.get("/nowhere")
        assert missing.status_code == 404
    assert recorder.close(drain_timeout=10)
    assert recorder.counters.snapshot()["spooled"] == 0


def test_webhook_delivery_is_paired_with_the_request_that_went_through_the_proxy(
    reference: ReferenceServer, sqlite_url: str, tmp_path: Path
) -> None:
    recorder = make_recorder(tmp_path, sqlite_url, fingerprint=False, source=Source.PROXY)
    task = video_task()
    with (
        running_proxy(reference.base_url, recorder, webhook_token=WEBHOOK_SECRET) as proxy,
        httpx.Client(base_url=proxy) as client,
    ):
        task["webhookURL"] = f"{proxy}/_seedledger/webhook/{WEBHOOK_SECRET}"
        ack = client.post("/v1", json=[task]).json()
        assert ack["data"][0]["taskUUID"] == task["taskUUID"]
        # The backend's webhook POST (simulated: the reference server does not call webhooks).
        delivery = {
            "data": [
                {
                    "taskType": "videoInference",
                    "taskUUID": task["taskUUID"],
                    "videoUUID": "v-1",
                    "videoURL": "https://example.invalid/v-1.mp4",
                    "seed": 2**63 + 5,
                    "status": "success",
                }
            ]
        }
        assert client.post("/_seedledger/webhook/wrong", json=delivery).status_code == 404
        assert client.post(f"/_seedledger/webhook/{WEBHOOK_SECRET}", json=delivery).json() == {"recorded": 1}
        stranger = {**delivery["data"][0], "taskUUID": str(uuid.uuid4())}
        assert client.post(f"/_seedledger/webhook/{WEBHOOK_SECRET}", json=stranger).json() == {"recorded": 0}
    assert recorder.close(drain_timeout=10)
    with Ledger.open(sqlite_url) as ledger:
        (record,) = ledger.query()
    assert (record.task_uuid, record.output_uuid, record.seed) == (task["taskUUID"], "v-1", 2**63 + 5)
    # The secret in webhookURL is cut out of what is recorded.
    assert record.params["webhookURL"].endswith("/_seedledger/webhook/[redacted]")
    assert recorder.counters.snapshot()["unpaired"] == 1


def test_unparseable_response_never_reaches_the_caller(sqlite_url: str, tmp_path: Path) -> None:
    body = b'{"data": [ this is not json'

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=httpx.ByteStream(body), headers={"x-upstream": "1"})

    recorder = make_recorder(tmp_path, sqlite_url)
    with httpx.Client(
        transport=RecordingTransport(httpx.MockTransport(handler), recorder=recorder)
    ) as client:
        response = client.post("http://upstream.invalid/v1", json=[image_task()])
        assert (response.status_code, response.content, response.headers["x-upstream"]) == (200, body, "1")
        with client.stream("POST", "http://upstream.invalid/v1", json=[image_task()]) as streamed:
            assert b"".join(streamed.iter_raw()) == body
    assert recorder.close(drain_timeout=5)
    counters = recorder.counters.snapshot()
    assert counters["parse_errors"] == 2 and counters["spooled"] == 0


def test_a_body_read_before_the_tee_is_still_recorded(sqlite_url: str, tmp_path: Path) -> None:
    task = image_task(seed=3)
    payload = {
        "data": [{"taskType": "imageInference", "taskUUID": task["taskUUID"], "imageUUID": "x", "seed": 3}]
    }
    recorder = make_recorder(tmp_path, sqlite_url, fingerprint=False)
    transport = RecordingTransport(
        httpx.MockTransport(lambda r: httpx.Response(200, json=payload)), recorder=recorder
    )
    with httpx.Client(transport=transport) as client:
        assert client.post("http://upstream.invalid/v1", json=[task]).json() == payload
    assert recorder.close(drain_timeout=5)
    assert recorder.counters.snapshot()["recorded"] == 1


def test_gzip_and_streamed_bodies_are_recorded(sqlite_url: str, tmp_path: Path) -> None:
    import gzip

    task = image_task(seed=9)
    payload = {
        "data": [{"taskType": "imageInference", "taskUUID": task["taskUUID"], "imageUUID": "i-1", "seed": 9}]
    }
    compressed = gzip.compress(json.dumps(payload).encode())

    def handler(request: httpx.Request) -> httpx.Response:
        assert json.loads(request.read()) == [task]
        return httpx.Response(200, stream=httpx.ByteStream(compressed), headers={"content-encoding": "gzip"})

    recorder = make_recorder(tmp_path, sqlite_url, fingerprint=False)
    with httpx.Client(
        transport=RecordingTransport(httpx.MockTransport(handler), recorder=recorder)
    ) as client:

        def chunks() -> Iterator[bytes]:
            data = json.dumps([task]).encode()
            yield data[:10]
            yield data[10:]

        response = client.post("http://upstream.invalid/v1", content=chunks())
        assert response.json() == payload
    assert recorder.close(drain_timeout=5)
    with Ledger.open(sqlite_url) as ledger:
        (record,) = ledger.query()
    assert (record.seed, record.output_uuid) == (9, "i-1")


def test_in_process_api(sqlite_url: str, tmp_path: Path, reference: ReferenceServer) -> None:
    from ledger.capture import generation, record_generation

    png = httpx.post(
        reference.url, json=[image_task(seed=5, outputType="base64Data", outputFormat="PNG")]
    ).json()["data"][0]["imageBase64Data"]
    import base64

    data = base64.b64decode(png)
    recorder = make_recorder(tmp_path, sqlite_url)
    keys = record_generation(
        model="sdxl-base-1.0",
        seed=2**64 - 1,
        scheduler="DPM++ 2M Karras",
        parameters={"prompt": "a fox", "steps": 30, "guidance_scale": 6.5, "api_key": SENTINEL_KEY},
        output=data,
        recorder=recorder,
    )
    assert len(keys) == 1
    with pytest.raises(RuntimeError), generation(model="sdxl-base-1.0", seed=3, recorder=recorder) as gen:
        gen.add_output(data)
        raise RuntimeError("CUDA out of memory")
    with generation(model="sdxl-base-1.0", seed=None, parameters={"prompt": "b"}, recorder=recorder) as gen:
        gen.add_output(data, seed=11)
        gen.add_output(data, seed=12)
    assert recorder.close(drain_timeout=10)
    with Ledger.open(sqlite_url) as ledger:
        records = ledger.query()
    assert [(r.seed, r.status, r.steps, r.cfg_scale) for r in records] == [
        (2**64 - 1, Status.OK, 30, 6.5),
        (3, Status.FAILED, None, None),
        (11, Status.OK, None, None),
        (12, Status.OK, None, None),
    ]
    assert records[0].params["api_key"] == "[redacted]"
    assert "CUDA out of memory" in (records[1].error or "")
    assert recorder.counters.snapshot()["fingerprinted"] == 3


def test_proxy_relays_a_streamed_response_chunk_for_chunk(sqlite_url: str, tmp_path: Path) -> None:
    task = image_task(seed=4)
    payload = json.dumps(
        {
            "data": [
                {"taskType": "imageInference", "taskUUID": task["taskUUID"], "imageUUID": "s-1", "seed": 4}
            ]
        }
    ).encode()
    parts = [payload[:7], payload[7:40], payload[40:]]

    class Chunks(httpx.AsyncByteStream):
        async def __aiter__(self) -> Any:
            for part in parts:
                yield part

    async def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "application/json", "x-trace": "a"}, stream=Chunks()
        )

    recorder = make_recorder(tmp_path, sqlite_url, fingerprint=False, source=Source.PROXY)
    with (
        running_proxy("http://upstream.invalid", recorder, transport=httpx.MockTransport(upstream)) as proxy,
        httpx.Client(base_url=proxy) as client,
        client.stream("POST", "/v1", json=[task]) as response,
    ):
        assert response.headers["transfer-encoding"] == "chunked"  # no length invented
        assert response.headers["x-trace"] == "a"
        assert b"".join(response.iter_raw()) == payload
    assert recorder.close(drain_timeout=10)
    with Ledger.open(sqlite_url) as ledger:
        (record,) = ledger.query()
    assert (record.output_uuid, record.seed) == ("s-1", 4)


def test_recording_client_owns_its_recorder(sqlite_url: str, tmp_path: Path) -> None:
    from ledger.capture import recording_client
    from ledger.capture.spool import lock_owner

    task = image_task(seed=8)
    payload = {
        "data": [{"taskType": "imageInference", "taskUUID": task["taskUUID"], "imageUUID": "o-1", "seed": 8}]
    }
    mock = httpx.MockTransport(
        lambda request: httpx.Response(200, stream=httpx.ByteStream(json.dumps(payload).encode()))
    )
    spool = tmp_path / "spool"
    client = recording_client(
        spool=str(spool), db=sqlite_url, transport=mock, recorder_options={"fingerprint": False}
    )
    assert client.post("http://upstream.invalid/v1", json=[task]).json() == payload
    assert lock_owner(spool) is not None
    client.close()  # drains and releases the spool
    assert lock_owner(spool) is None
    with Ledger.open(sqlite_url) as ledger:
        assert [(r.output_uuid, r.seed) for r in ledger.query()] == [("o-1", 8)]
