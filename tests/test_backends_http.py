"""The shared HTTP plumbing: retry policy, Retry-After, host policy, bounded downloads."""

from __future__ import annotations

import asyncio
import gzip
import logging
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from ledger.backends import (
    BackendHTTPError,
    BackendTimeout,
    BackendUnavailable,
    DownloadError,
    GenerationRequest,
    MalformedResponse,
    SyncBackend,
    open_backend,
    request_from_params,
)
from ledger.backends.base import AsyncBackend, GeneratedOutput, GenerationResult, sniff_media_type
from ledger.backends.http import (
    CallStats,
    HostPolicy,
    HttpClient,
    RetryPolicy,
    describe_error,
    parse_retry_after,
    safe_url,
)
from ledger.errors import UsageError
from tests.conftest import SENTINEL_KEY
from tests.fakes.runware import tiny_png
from tests.fakes.server import live_server

PNG = tiny_png("http-tests")
LOOPBACK = HostPolicy(allow_loopback=True)


@dataclass
class Files:
    streamed: int = 0
    flaky_left: int = 0

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/png", self.png),
                Route("/bare", self.bare),
                Route("/html", self.html),
                Route("/endless", self.endless),
                Route("/declared", self.declared),
                Route("/slow", self.slow),
                Route("/badgzip", self.badgzip),
                Route("/gzip", self.gzipped),
                Route("/flaky", self.flaky),
                Route("/hop/{n:int}", self.hop),
                Route("/away", self.away),
                Route("/json-deep", self.json_deep),
            ]
        )

    async def png(self, request: Request) -> Response:
        return Response(PNG, media_type="image/png")

    async def bare(self, request: Request) -> Response:
        return Response(PNG)  # no Content-Type at all

    async def html(self, request: Request) -> Response:
        return Response("<html></html>", media_type="text/html")

    async def endless(self, request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            chunk = b"\0" * 65536
            for _ in range(3000):  # ~200 MB if anyone reads it all
                self.streamed += len(chunk)
                yield chunk

        return StreamingResponse(body(), media_type="image/png")

    async def declared(self, request: Request) -> Response:
        return Response(b"\0" * 200_000, media_type="image/png")

    async def slow(self, request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield PNG[:10]
            await asyncio.sleep(5)
            yield PNG[10:]

        return StreamingResponse(body(), media_type="image/png")

    async def badgzip(self, request: Request) -> Response:
        return Response(b"this is not gzip", media_type="image/png", headers={"Content-Encoding": "gzip"})

    async def gzipped(self, request: Request) -> Response:
        # A "zip bomb": 5 MB of zeros in a few kB; the cap counts decoded bytes.
        return Response(
            gzip.compress(b"\0" * 5_000_000), media_type="image/png", headers={"Content-Encoding": "gzip"}
        )

    async def flaky(self, request: Request) -> Response:
        if self.flaky_left > 0:
            self.flaky_left -= 1
            return JSONResponse({"error": "busy"}, status_code=503, headers={"Retry-After": "0"})
        return Response(PNG, media_type="image/png")

    async def hop(self, request: Request) -> Response:
        n = request.path_params["n"]
        if n == 0:
            return Response(PNG, media_type="image/png")
        return RedirectResponse(f"/hop/{n - 1}", status_code=302)

    async def away(self, request: Request) -> Response:
        return RedirectResponse(request.query_params["to"], status_code=307)

    async def json_deep(self, request: Request) -> Response:
        return Response("[" * 100_000 + "]" * 100_000, media_type="application/json")


@pytest.fixture
def files() -> Iterator[tuple[Files, str]]:
    state = Files()
    with live_server(state.app()) as base:
        yield state, base


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def download(url: str, **options: Any) -> Any:
    options.setdefault("host_policy", LOOPBACK)
    options.setdefault("retry", RetryPolicy(max_attempts=3, base_delay=0.001))
    client = HttpClient(backend="test", **options)
    try:
        return await client.download(url, stats=CallStats())
    finally:
        await client.aclose()


# -- policies ------------------------------------------------------------------------


def test_retry_policy_full_jitter_bounds() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    rng = random.Random(1)
    for n in range(1, 10):
        ceiling = min(4.0, 0.5 * 2 ** (n - 1))
        draws = [policy.backoff(n, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.8  # jitter spans the range, not a constant
    assert policy.should_retry(408) and policy.should_retry(429) and policy.should_retry(599)
    assert not policy.should_retry(400) and not policy.should_retry(404) and not policy.should_retry(200)


def test_retry_policy_refuses_nonsense() -> None:
    with pytest.raises(UsageError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(UsageError, match="negative"):
        RetryPolicy(base_delay=-1)


def test_parse_retry_after() -> None:
    now = datetime(2026, 11, 25, 17, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 12 ") == 12.0
    assert (
        parse_retry_after(
            format_datetime(datetime(2026, 11, 25, 17, 0, 30, tzinfo=UTC), usegmt=True), now=now
        )
        == 30.0
    )
    assert parse_retry_after("Wed, 25 Nov 2026 16:00:00 GMT", now=now) == 0.0  # in the past
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    ("url", "policy", "allowed"),
    [
        ("http://127.0.0.1/x.png", HostPolicy(), False),
        ("http://127.0.0.1/x.png", HostPolicy(allow_loopback=True), True),
        ("http://[::1]:8080/x.png", HostPolicy(), False),
        ("http://[::ffff:127.0.0.1]/x.png", HostPolicy(allow_loopback=True), False),
        ("http://2130706433/x.png", HostPolicy(), False),  # 127.0.0.1 as one number
        ("http://127.1/x.png", HostPolicy(), False),
        ("http://0x7f.0.0.1/x.png", HostPolicy(), False),
        ("http://localhost/x.png", HostPolicy(), False),
        ("http://localhost/x.png", HostPolicy(allowed_hosts=frozenset({"localhost"})), True),
        ("http://10.0.0.7/x.png", HostPolicy(allow_loopback=True), False),
        ("http://10.0.0.7/x.png", HostPolicy(allow_private=True), True),
        ("http://192.168.1.1/x.png", HostPolicy(), False),
        ("http://169.254.169.254/latest/meta-data/", HostPolicy(), False),
        ("http://[fe80::1]/x", HostPolicy(), False),
        ("http://0.0.0.0/x", HostPolicy(), False),
        ("http://8.8.8.8/x.png", HostPolicy(), True),
        ("https://[2606:4700::1111]/x.png", HostPolicy(), True),
        ("file:///etc/passwd", HostPolicy(allow_private=True), False),
        ("gopher://8.8.8.8/", HostPolicy(), False),
        ("http:///nohost", HostPolicy(), False),
        ("http://[::1/broken", HostPolicy(), False),
    ],
)
def test_host_policy(url: str, policy: HostPolicy, allowed: bool) -> None:
    if allowed:
        run(policy.check(url))
    else:
        with pytest.raises(DownloadError) as caught:
            run(policy.check(url))
        assert caught.value.code == "url-refused"


def test_host_policy_message_has_no_credentials() -> None:
    with pytest.raises(DownloadError) as caught:
        run(HostPolicy().check(f"http://user:{SENTINEL_KEY}@127.0.0.1/x?token={SENTINEL_KEY}"))
    assert SENTINEL_KEY not in str(caught.value)


def test_safe_url_drops_userinfo_and_query() -> None:
    assert (
        safe_url(f"https://u:{SENTINEL_KEY}@cdn.example/a/b.png?sig={SENTINEL_KEY}#x")
        == "https://cdn.example/a/b.png"
    )


def test_describe_error_bodies() -> None:
    assert describe_error({"errors": [{"code": "invalidModel", "message": "no such model"}]}) == (
        "invalidModel: no such model"
    )
    assert describe_error({"error": "OutOfMemoryError", "errors": "CUDA out of memory"}) == (
        "OutOfMemoryError: CUDA out of memory"
    )
    assert describe_error({"detail": f"Bearer {SENTINEL_KEY}"}, (SENTINEL_KEY,)) == "Bearer [redacted]"
    assert describe_error([1, 2]) == ""
    assert len(describe_error({"message": "x" * 1000})) == 200


def test_sniff_media_type() -> None:
    assert sniff_media_type(PNG) == "image/png"
    assert sniff_media_type(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sniff_media_type(b"RIFF\0\0\0\0WEBPVP8 ") == "image/webp"
    assert sniff_media_type(b"RIFF\0\0\0\0WAVEfmt ") == "audio/wav"
    assert sniff_media_type(b"GIF89a...") == "image/gif"
    assert sniff_media_type(b"\0\0\0\x18ftypmp42") == "video/mp4"
    assert sniff_media_type(b"hello") == "application/octet-stream"


# -- downloads -----------------------------------------------------------------------


def test_download_png(files: tuple[Files, str]) -> None:
    _, base = files
    got = run(download(f"{base}/png"))
    assert got.data == PNG and got.media_type == "image/png"


def test_download_without_content_type_is_sniffed(files: tuple[Files, str]) -> None:
    _, base = files
    assert run(download(f"{base}/bare")).media_type == "image/png"


def test_download_refused_on_loopback_by_default(files: tuple[Files, str]) -> None:
    _, base = files
    with pytest.raises(DownloadError, match="loopback"):
        run(download(f"{base}/png", host_policy=HostPolicy()))


def test_wrong_content_type(files: tuple[Files, str]) -> None:
    _, base = files
    with pytest.raises(DownloadError, match="text/html") as caught:
        run(download(f"{base}/html"))
    assert caught.value.code == "content-type"


class CountingTransport(httpx.AsyncBaseTransport):
    """Counts the body bytes the client actually pulled off the wire."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.received = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        inner_stream = response.stream
        assert isinstance(inner_stream, httpx.AsyncByteStream)
        counter = self

        class Counted(httpx.AsyncByteStream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                async for chunk in inner_stream:
                    counter.received += len(chunk)
                    yield chunk

            async def aclose(self) -> None:
                await inner_stream.aclose()

        response.stream = Counted()
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_endless_body_is_aborted_at_the_cap_without_reading_it_all(files: tuple[Files, str]) -> None:
    _, base = files
    transport = CountingTransport()
    with pytest.raises(DownloadError, match="100000-byte cap") as caught:
        run(download(f"{base}/endless", max_download_bytes=100_000, transport=transport))
    assert caught.value.code == "too-large"
    # Read stopped within one network chunk of the cap, not at the ~200 MB end.
    assert 100_000 < transport.received < 100_000 + 1_000_000


def test_declared_length_over_the_cap(files: tuple[Files, str]) -> None:
    _, base = files
    with pytest.raises(DownloadError, match="cap"):
        run(download(f"{base}/declared", max_download_bytes=1000))


def test_cap_counts_decoded_bytes(files: tuple[Files, str]) -> None:
    _, base = files
    with pytest.raises(DownloadError, match="cap"):
        run(download(f"{base}/gzip", max_download_bytes=1_000_000))


def test_bad_content_encoding_is_malformed(files: tuple[Files, str]) -> None:
    _, base = files
    with pytest.raises(MalformedResponse, match="content encoding"):
        run(download(f"{base}/badgzip"))


def test_total_download_deadline(files: tuple[Files, str]) -> None:
    _, base = files
    with pytest.raises(BackendTimeout, match=r"longer than 0\.2s"):
        run(download(f"{base}/slow", download_deadline=0.2))


def test_download_retries_503(files: tuple[Files, str]) -> None:
    state, base = files
    state.flaky_left = 2
    client = HttpClient(backend="test", host_policy=LOOPBACK, retry=RetryPolicy(base_delay=0.001))
    stats = CallStats()

    async def go() -> Any:
        try:
            return await client.download(f"{base}/flaky", stats=stats)
        finally:
            await client.aclose()

    assert run(go()).data == PNG
    assert stats.attempts == 3 and stats.retries == 2


def test_redirects_are_followed_and_bounded(files: tuple[Files, str]) -> None:
    _, base = files
    assert run(download(f"{base}/hop/3")).data == PNG
    with pytest.raises(DownloadError, match="more than 2 times") as caught:
        run(download(f"{base}/hop/5", max_redirects=2))
    assert caught.value.code == "too-many-redirects"


def test_every_redirect_hop_is_checked(files: tuple[Files, str]) -> None:
    _, base = files
    policy = HostPolicy(allowed_hosts=frozenset({"127.0.0.1"}))
    with pytest.raises(DownloadError, match=r"10\.9\.8\.7") as caught:
        run(download(f"{base}/away?to=http://10.9.8.7/secret.png", host_policy=policy))
    assert caught.value.code == "url-refused"
    with pytest.raises(DownloadError, match="only http and https"):
        run(download(f"{base}/away?to=file:///etc/passwd", host_policy=policy))


def test_deeply_nested_json_is_malformed_not_a_recursion_error(files: tuple[Files, str]) -> None:
    _, base = files
    client = HttpClient(backend="test")

    async def go() -> Any:
        try:
            return await client.request_json("GET", f"{base}/json-deep", stats=CallStats())
        finally:
            await client.aclose()

    with pytest.raises(MalformedResponse, match="not JSON"):
        run(go())


def test_unsupported_scheme_for_api_is_not_retried() -> None:
    client = HttpClient(backend="test", retry=RetryPolicy(max_attempts=5, base_delay=0.001))
    stats = CallStats()

    async def go() -> Any:
        try:
            return await client.request_json("POST", "ftp://127.0.0.1/v1", stats=stats)
        finally:
            await client.aclose()

    with pytest.raises(BackendUnavailable, match="cannot send"):
        run(go())
    assert stats.attempts == 1


def test_signed_url_credentials_stay_out_of_logs(
    files: tuple[Files, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _, base = files
    got = run(download(f"{base}/png?X-Amz-Signature={SENTINEL_KEY}&X-Amz-Credential={SENTINEL_KEY}"))
    assert got.data == PNG
    assert "HTTP Request" in caplog.text  # httpx did log the request line
    assert SENTINEL_KEY not in caplog.text


def test_server_error_reason_reaches_the_message(files: tuple[Files, str]) -> None:
    state, base = files
    state.flaky_left = 10
    with pytest.raises(BackendHTTPError, match=r"HTTP 503 from .*: busy after 2 attempts"):
        run(download(f"{base}/flaky", retry=RetryPolicy(max_attempts=2, base_delay=0.001)))


# -- the protocol and the sync wrapper -----------------------------------------------


class EchoBackend(AsyncBackend):
    """A minimal in-memory backend: proves the base class's shared behaviour."""

    name = "echo"
    protocol = "runware"

    def __init__(self) -> None:
        self.closed = False

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        self.check_protocol(request)
        if request.seed == 13:
            raise BackendUnavailable("unlucky")
        await asyncio.sleep(0)
        out = GeneratedOutput(data=b"x", seed=request.seed, media_type="image/png")
        return GenerationResult(backend=self.name, request=request, task_uuid=None, outputs=(out,))

    async def aclose(self) -> None:
        self.closed = True


def test_generate_many_keeps_order_and_isolates_failures() -> None:
    requests = [request_from_params("runware", {"model": "m"}, seed=s) for s in (11, 12, 13, 14)]
    outcomes = run(EchoBackend().generate_many(requests, concurrency=2))
    assert [o.outputs[0].seed if isinstance(o, GenerationResult) else "error" for o in outcomes] == [
        11,
        12,
        "error",
        14,
    ]


def test_sync_wrapper_works_inside_a_running_loop() -> None:
    backend = EchoBackend()
    sync = SyncBackend(backend)

    async def inside() -> Any:
        return sync.generate(request_from_params("runware", {"model": "m"}, seed=5))

    assert run(inside()).outputs[0].seed == 5
    sync.close()
    sync.close()  # idempotent
    assert backend.closed


def test_generation_result_repr_hides_bytes() -> None:
    out = GeneratedOutput(data=PNG, seed=1, media_type="image/png")
    assert "data=" not in repr(out)
    assert out.size == len(PNG) and len(out.sha256) == 64


def test_open_backend_url_validation() -> None:
    with pytest.raises(UsageError, match="http"):
        open_backend("a1111", url="ftp://x")
    with pytest.raises(UsageError, match="in-process"):
        open_backend("reference", url="http://127.0.0.1:9/v1", server_options={"latency_ms": 1})
