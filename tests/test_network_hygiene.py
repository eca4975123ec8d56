"""Download host policy (every non-public range refused; the checked address is the
one connected to) and capture of every Content-Encoding httpx negotiates.

Real servers on loopback; the only stand-in is the name resolver in the pinning test,
which answers once with the loopback server's address and then fails, so a client
that resolved the name a second time (the DNS-rebinding gap) cannot connect.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import brotli
import httpx
import pytest
import zstandard

from ledger.backends import DownloadError, HostPolicy
from ledger.backends.hostpolicy import address_kind
from ledger.backends.http import CallStats, HttpClient
from ledger.capture import Recorder, RecordingTransport
from ledger.store import Ledger
from tests.test_capture import image_task

REFUSED = [
    "100.100.100.200",  # cloud metadata in shared address space
    "100.64.0.1",
    "192.0.0.8",
    "192.0.2.1",
    "198.18.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "0.0.0.0",
    "240.0.0.1",
    "224.0.0.1",
    "2002:7f00:1::1",  # 6to4 spelling of 127.0.0.1
    "2002:a00:1::1",  # 6to4 spelling of 10.0.0.1
    "64:ff9b::7f00:1",  # NAT64 spelling of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 spelling of 169.254.169.254
    "64:ff9b:1::1",
    "::ffff:127.0.0.1",
    "::ffff:100.100.100.200",
    "::127.0.0.1",
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo wrapping 127.0.0.1
    "2001:db8::1",
    "fc00::1",
    "fe80::1",
    "ff02::1",
    "::1",
    "::",
    "100::1",
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "192.0.0.9", "2606:4700:4700::1111", "2002:808:808::1", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert address_kind(address) != "global"
    literal = f"[{address}]" if ":" in address else address
    with pytest.raises(DownloadError, match="not a public one"):
        asyncio.run(HostPolicy().check(f"http://{literal}/out.png"))


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_pass(address: str) -> None:
    literal = f"[{address}]" if ":" in address else address
    pinned = asyncio.run(HostPolicy().check(f"http://{literal}/out.png"))
    assert pinned.address is None  # a literal needs no pinning


def test_allow_loopback_allows_plain_loopback_only() -> None:
    policy = HostPolicy(allow_loopback=True)
    for address in ("127.0.0.1", "127.9.9.9", "::1"):
        literal = f"[{address}]" if ":" in address else address
        asyncio.run(policy.check(f"http://{literal}/out.png"))
    for address in ("2002:7f00:1::1", "64:ff9b::7f00:1", "::ffff:127.0.0.1", "100.100.100.200"):
        literal = f"[{address}]" if ":" in address else address
        with pytest.raises(DownloadError):
            asyncio.run(policy.check(f"http://{literal}/out.png"))


class _Files(BaseHTTPRequestHandler):
    hosts: ClassVar[list[str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        type(self).hosts.append(self.headers.get("Host", ""))
        body = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def file_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_download_connects_to_the_address_the_policy_checked(
    file_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = asyncio.base_events.BaseEventLoop.getaddrinfo

    async def resolve_once(self: Any, host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.invalid":
            calls.append(host)
            if len(calls) > 1:  # a second look-up would be answered by the attacker
                raise socket.gaierror(socket.EAI_NONAME, "rebound")
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", file_server))]
        return await real(self, host, *args, **kwargs)

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", resolve_once)
    _Files.hosts = []

    async def fetch() -> bytes:
        client = HttpClient(backend="test", host_policy=HostPolicy(allow_loopback=True))
        try:
            got = await client.download(f"http://rebind.invalid:{file_server}/a.png", stats=CallStats())
        finally:
            await client.aclose()
        return got.data

    assert asyncio.run(fetch()).startswith(b"\x89PNG")
    assert calls == ["rebind.invalid"]  # resolved once, by the policy
    assert _Files.hosts == [f"rebind.invalid:{file_server}"]  # the name kept in Host


# -- every Content-Encoding httpx can negotiate is recorded -----------------------------

ENCODERS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
}


class _Api(BaseHTTPRequestHandler):
    seen_accept: ClassVar[list[str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        tasks = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        accept = self.headers.get("Accept-Encoding", "")
        type(self).seen_accept.append(accept)
        wanted = self.path.rsplit("/", 1)[-1]
        payload = {
            "data": [
                {
                    "taskType": t["taskType"],
                    "taskUUID": t["taskUUID"],
                    "imageUUID": "out-" + wanted,
                    "seed": 77,
                }
                for t in tasks
            ]
        }
        body = ENCODERS[wanted](json.dumps(payload).encode())
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", wanted)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def api_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_every_negotiated_encoding_is_recorded(
    encoding: str, api_server: str, sqlite_url: str, tmp_path: Path
) -> None:
    _Api.seen_accept = []
    recorder = Recorder(tmp_path / "spool", sqlite_url, max_backoff=0.2, fingerprint=False)
    with httpx.Client(transport=RecordingTransport(recorder=recorder)) as client:
        response = client.post(f"{api_server}/v1/{encoding}", json=[image_task(seed=77)])
        assert response.json()["data"][0]["seed"] == 77  # the caller got it decoded
    assert recorder.close(drain_timeout=10)
    assert recorder.counters.snapshot()["recorded"] == 1
    with Ledger.open(sqlite_url) as ledger:
        (record,) = ledger.query()
    assert (record.seed, record.output_uuid) == (77, f"out-{encoding}")
    if encoding in ("br", "zstd"):  # httpx asked for it because the library is installed
        assert encoding in _Api.seen_accept[0]


def test_a_result_echoing_the_key_in_any_field_is_redacted(tmp_path: Path) -> None:
    # Found by tests/test_fuzz_capture.py: strip_payloads dropped the known secrets.
    from ledger.capture.pairing import Pairer, PendingTasks
    from ledger.core.records import Source
    from tests.conftest import SENTINEL_KEY

    pairer = Pairer(PendingTasks(tmp_path / "pending.json"), source=Source.PROXY)
    request = [{"taskType": "authentication", "apiKey": SENTINEL_KEY}, image_task(taskUUID="t1")]
    response = {"data": [{"taskType": SENTINEL_KEY, "taskUUID": "t1", "imageUUID": "o1", "seed": 3}]}
    captured = pairer.exchange(json.dumps(request).encode(), json.dumps(response).encode())
    assert captured is not None and len(captured.records) == 1
    assert SENTINEL_KEY not in json.dumps([r.response for r in captured.records])
