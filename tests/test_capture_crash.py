"""Capture under failure: kill -9 of the recording process mid-traffic (transport and
proxy), and PostgreSQL unreachable for a stretch of traffic. Nothing received by a
client may be lost, and nothing may be stored twice."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.backends.reference.server import ReferenceServer
from ledger.capture import Recorder, RecordingTransport
from ledger.store import Ledger
from tests.cli import COMMAND, seedledger
from tests.conftest import SENTINEL_KEY
from tests.test_capture import image_task

TARGET_RESPONSES = 25

CLIENT = r"""
import json, sys, uuid
import httpx
from ledger.capture import recording_client
spool, db, url, key = sys.argv[1:5]
client = recording_client(spool=spool, db=db, recorder_options={"fingerprint": False})
while True:
    task = {"taskType": "imageInference", "taskUUID": str(uuid.uuid4()), "model": "runware:101@1",
            "positivePrompt": "x", "width": 64, "height": 64, "steps": 2, "numberResults": 2}
    body = client.post(url, json=[task], headers={"Authorization": "Bearer " + key}).json()
    print(json.dumps([item["imageUUID"] for item in body["data"]]), flush=True)
"""


@pytest.fixture(scope="module")
def reference() -> Iterator[ReferenceServer]:
    with ReferenceServer.running() as server:
        yield server


def received_outputs(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if line.endswith("\n"):  # a line cut by the kill is not a received response
            out.extend(json.loads(line))
    return out


def drain_and_check(db_url: str, spool: Path, received: list[str]) -> None:
    drained = seedledger(
        "--json", "--db", db_url, "spool", "drain", "--spool", str(spool), "--no-fingerprint"
    )
    assert drained.code == 0, drained.err
    assert SENTINEL_KEY not in drained.out + drained.err
    with Ledger.open(db_url) as ledger:
        records = ledger.query()
    by_output: dict[str, int] = {}
    for r in records:
        by_output[r.output_uuid or ""] = by_output.get(r.output_uuid or "", 0) + 1
    assert len(received) >= TARGET_RESPONSES * 2
    assert {uuid: by_output.get(uuid, 0) for uuid in received} == dict.fromkeys(received, 1)
    assert all(count == 1 for count in by_output.values())
    for path in spool.rglob("*"):
        if path.is_file():
            assert SENTINEL_KEY.encode() not in path.read_bytes()


def test_kill_9_of_a_transport_client_loses_nothing(
    reference: ReferenceServer, db_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    child = subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(spool), db_url, reference.url, SENTINEL_KEY],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    with child:
        assert child.stdout is not None and child.stderr is not None
        try:
            while len(lines) < TARGET_RESPONSES:
                line = child.stdout.readline()
                assert line, child.stderr.read()
                lines.append(line)
            os.kill(child.pid, signal.SIGKILL)
            lines.extend(child.stdout.readlines())
        finally:
            child.kill()
            child.wait()
            stderr = child.stderr.read()
    assert SENTINEL_KEY not in stderr
    drain_and_check(db_url, spool, received_outputs(lines))


def test_kill_9_of_the_proxy_loses_nothing(
    reference: ReferenceServer, sqlite_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    proxy = subprocess.Popen(
        [
            *COMMAND,
            "--db",
            sqlite_url,
            "proxy",
            "--upstream",
            reference.base_url,
            "--listen",
            "127.0.0.1:0",
            "--spool",
            str(spool),
            "--no-fingerprint",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proxy.stderr is not None
    try:
        banner = proxy.stderr.readline()
        match = re.search(r"listening on (http://\S+)", banner)
        assert match, banner
        base = match.group(1)
        received: list[list[str]] = []
        lock = threading.Lock()

        def client() -> None:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {SENTINEL_KEY}"}) as http:
                while True:
                    try:
                        response = http.post("/v1", json=[image_task(numberResults=2)])
                        uuids = [item["imageUUID"] for item in response.json()["data"]]
                    except (httpx.HTTPError, ValueError, KeyError):
                        return  # the proxy is gone
                    with lock:
                        received.append(uuids)

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(received) < TARGET_RESPONSES and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proxy.pid, signal.SIGKILL)  # mid-traffic: four clients are in flight
        for thread in threads:
            thread.join(30)
    finally:
        proxy.kill()
        proxy.wait()
        proxy.stderr.close()
    drain_and_check(sqlite_url, spool, [u for uuids in received for u in uuids])


class Forwarder:
    """A TCP forwarder to PostgreSQL that can be stopped (connections cut, port
    closed: connection refused) and started again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        if self._listener is not None:
            # shutdown wakes the thread blocked in accept(); close alone would not
            # release the port while accept() holds the descriptor.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def wait_for(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.postgres
def test_postgresql_outage_loses_nothing(reference: ReferenceServer, pg_url: str, tmp_path: Path) -> None:
    forwarder = Forwarder(("127.0.0.1", 5432))
    forwarder.start()
    via = pg_url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{forwarder.port}/")
    assert via != pg_url
    recorder = Recorder(tmp_path / "spool", via, fingerprint=False, max_backoff=0.1)
    client = httpx.Client(transport=RecordingTransport(recorder=recorder))
    expected: list[str] = []

    def send(n: int) -> None:
        for _ in range(n):
            body = client.post(reference.url, json=[image_task(numberResults=2)]).json()
            expected.extend(item["imageUUID"] for item in body["data"])

    try:
        send(5)
        wait_for(lambda: recorder.counters.recorded == 10, "the first records to land")
        forwarder.stop()  # PostgreSQL unreachable: pooled connections cut, port refused
        send(10)
        wait_for(lambda: recorder.counters.retried > 0, "the writer to retry")
        assert recorder.counters.recorded < len(expected)
        send(5)
        forwarder.start()
        wait_for(lambda: recorder.counters.recorded >= len(expected), "the spool to drain")
    finally:
        client.close()
        drained = recorder.close(drain_timeout=30)
        forwarder.stop()
    assert drained
    with Ledger.open(pg_url) as ledger:
        stored = sorted(r.output_uuid or "" for r in ledger.query())
    assert stored == sorted(expected) and len(stored) == 40
    counters = recorder.counters.snapshot()
    assert counters["spooled"] == 40 and counters["failed"] == 0


def test_sigterm_drains_the_proxy_spool_before_exit(
    reference: ReferenceServer, sqlite_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    with subprocess.Popen(
        [
            *COMMAND,
            "--db",
            sqlite_url,
            "proxy",
            "--upstream",
            reference.base_url,
            "--listen",
            "127.0.0.1:0",
            "--spool",
            str(spool),
            "--no-fingerprint",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proxy:
        assert proxy.stderr is not None
        match = re.search(r"listening on (http://\S+)", proxy.stderr.readline())
        assert match
        sent: list[str] = []
        with httpx.Client(
            base_url=match.group(1), headers={"Authorization": f"Bearer {SENTINEL_KEY}"}
        ) as http:
            for _ in range(5):
                body = http.post("/v1", json=[image_task(numberResults=2)]).json()
                sent.extend(item["imageUUID"] for item in body["data"])
            assert http.get("/_seedledger/health").json()["spooled"] == 10
        proxy.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal after its graceful shutdown, for process managers.
        assert proxy.wait(60) in (0, -signal.SIGTERM)
        stderr = proxy.stderr.read()
    assert SENTINEL_KEY not in stderr
    with Ledger.open(sqlite_url) as ledger:  # landed by the shutdown drain, no `spool drain`
        assert sorted(r.output_uuid or "" for r in ledger.query()) == sorted(sent)
    status = seedledger("--json", "spool", "status", "--spool", str(spool))
    assert status.json()["records"] == 0
