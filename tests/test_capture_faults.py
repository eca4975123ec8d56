"""Capture under faults (issue 23, records lost): a full disk, damaged bytes, a stray
directory, an unexpected writer error, fingerprints during an outage.

The invariant checked in every fault test: what the caller was told was recorded (a
returned key, a 200) = records landed exactly once, and everything else was reported
as failed (an exception or a 503 to the caller, and the ``failed`` counter); `spool
drain` exits 0 only when nothing was skipped.
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.backends.reference.server import ReferenceServer
from ledger.capture import Recorder, record_generation
from ledger.capture.entries import encode_entry
from ledger.capture.spool import HEADER_SIZE, Spool, SpoolFullError, list_segments, scan, segment_path
from ledger.capture.writer import Counters, SpoolWriter
from ledger.errors import StoreError
from ledger.store import Ledger
from tests.cli import seedledger
from tests.conftest import IN_CI
from tests.test_capture import AUTH, image_task, running_proxy
from tests.test_capture_spool import record


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs, mounted for this test (needs root, as in CI)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}"
        if IN_CI:
            pytest.fail(f"{reason} (CI runs the full-disk tests as root)")
        pytest.skip(reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk`` with a ballast file."""
    ballast = disk / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (64 * 1024, 4096, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return ballast


def quiet_recorder(spool_dir: Path, db_url: str, **options: Any) -> Recorder:
    """A recorder without fingerprints or sealing (what these tests do not look at)."""
    return Recorder(spool_dir, db_url, fingerprint=False, signer=None, **options)


def landed_keys(db_url: str) -> list[str]:
    with Ledger.open(db_url) as ledger:
        return [r.idempotency_key or "" for r in ledger.query()]


def generate(recorder: Recorder, n: int, size: int = 4000) -> tuple[list[str], int]:
    """In-process traffic: (keys the caller was given, calls that raised SpoolFullError)."""
    kept: list[str] = []
    refused = 0
    for i in range(n):
        try:
            kept += record_generation(
                model="sdxl-base-1.0", seed=i, parameters={"prompt": "p" * size}, recorder=recorder
            )
        except SpoolFullError:
            refused += 1
    return kept, refused


def test_full_disk_filled_freed_and_filled_again(small_disk: Path, sqlite_url: str) -> None:
    # writer=False: nothing lands meanwhile (the database "away"), so the spool must hold
    # everything and the disk really fills.
    spool_dir = small_disk / "spool"
    recorder = quiet_recorder(spool_dir, sqlite_url, writer=False, on_spool_full="raise")
    kept, refused = generate(recorder, 50)
    assert refused == 0
    ballast = fill(small_disk)
    more, refused_full = generate(recorder, 100)
    assert refused_full > 0 and recorder.spool.under_pressure  # the disk really was full
    # A refused append left nothing behind: every segment still reads to its end.
    assert scan(spool_dir).torn == 0
    assert not recorder.accepting() and recorder.status()["status"] == "error"
    ballast.unlink()
    assert recorder.accepting()
    after, refused_after = generate(recorder, 100)
    assert refused_after == 0 and len(after) == 100  # the bug: 0 of these landed, silently
    ballast = fill(small_disk)
    again, refused_again = generate(recorder, 100)
    assert refused_again > 0
    ballast.unlink()
    last, _ = generate(recorder, 10)
    recorder.close(drain_timeout=0)
    kept += more + after + again + last
    assert recorder.counters.failed == refused_full + refused_again
    assert len(kept) + recorder.counters.failed == 360
    drained = seedledger("--json", "--db", sqlite_url, "spool", "drain", "--spool", str(spool_dir))
    assert drained.code == 0, drained.err
    assert drained.json()["damaged_ranges"] == 0
    assert sorted(landed_keys(sqlite_url)) == sorted(kept)  # each exactly once


def test_full_disk_with_direct_writes_loses_nothing(small_disk: Path, sqlite_url: str) -> None:
    spool_dir = small_disk / "spool"
    recorder = Recorder(spool_dir, sqlite_url, writer=False, fingerprint=False, signer=None)
    fill(small_disk)
    kept, refused = generate(recorder, 400)
    assert refused == 0 and recorder.counters.direct > 0 and recorder.counters.failed == 0
    recorder.close(drain_timeout=0)
    assert seedledger("--db", sqlite_url, "spool", "drain", "--spool", str(spool_dir)).code == 0
    assert sorted(landed_keys(sqlite_url)) == sorted(kept)


def test_small_disk_with_a_healthy_database_takes_everything(small_disk: Path, sqlite_url: str) -> None:
    # 3,000 records of ~1 KB through a 2 MB spool: landed space must be released promptly.
    recorder = quiet_recorder(small_disk / "spool", sqlite_url, on_spool_full="raise")
    kept: list[str] = []
    refused = 0
    for _burst in range(30):
        got, lost = generate(recorder, 100, size=1000)
        kept, refused = kept + got, refused + lost
        time.sleep(0.05)  # traffic (~2 MB/s), not one burst
    assert recorder.close(drain_timeout=30)
    assert refused == 0 and recorder.counters.failed == 0
    assert sorted(landed_keys(sqlite_url)) == sorted(kept)


@pytest.fixture(scope="module")
def reference() -> Iterator[ReferenceServer]:
    with ReferenceServer.running() as server:
        yield server


@pytest.mark.parametrize("policy", ["raise", "direct"])
def test_transport_never_returns_a_response_whose_record_was_lost(
    small_disk: Path, sqlite_url: str, reference: ReferenceServer, policy: str
) -> None:
    spool_dir = small_disk / "spool"
    recorder = quiet_recorder(spool_dir, sqlite_url, writer=False, on_spool_full=policy)
    from ledger.capture import RecordingTransport

    client = httpx.Client(transport=RecordingTransport(recorder=recorder), headers=AUTH)
    received: list[str] = []
    raised = 0

    def traffic(n: int) -> None:
        nonlocal raised
        for _ in range(n):
            try:
                response = client.post(reference.url, json=[image_task(positivePrompt="q" * 20000)])
            except SpoolFullError:
                raised += 1
                continue
            assert response.status_code == 200
            received.extend(item["imageUUID"] for item in response.json()["data"])

    traffic(5)
    ballast = fill(small_disk)
    traffic(40)
    if policy == "raise":
        assert raised > 0
    else:  # the ledger took what the spool could not
        assert raised == 0 and recorder.counters.direct > 0
    ballast.unlink()
    traffic(5)
    client.close()
    recorder.close(drain_timeout=0)
    assert recorder.counters.failed == raised
    assert seedledger("--db", sqlite_url, "spool", "drain", "--spool", str(spool_dir)).code == 0
    with Ledger.open(sqlite_url) as ledger:
        stored = sorted(r.output_uuid or "" for r in ledger.query())
    assert stored == sorted(received)


def test_proxy_answers_503_before_forwarding_while_the_spool_is_full(
    small_disk: Path, sqlite_url: str, reference: ReferenceServer
) -> None:
    spool_dir = small_disk / "spool"
    recorder = quiet_recorder(spool_dir, sqlite_url, writer=False, on_spool_full="raise")
    received: list[str] = []
    statuses: list[int] = []
    with (
        running_proxy(reference.base_url, recorder) as proxy,
        httpx.Client(base_url=proxy, headers=AUTH) as client,
    ):

        def traffic(n: int) -> None:
            for _ in range(n):
                try:
                    response = client.post(
                        "/v1", content=json.dumps([image_task(positivePrompt="q" * 20000)])
                    )
                except httpx.RemoteProtocolError:  # forwarded, then not recordable: cut, never a 200
                    statuses.append(0)
                    continue
                statuses.append(response.status_code)
                if response.status_code == 200:
                    received.extend(item["imageUUID"] for item in response.json()["data"])

        traffic(3)
        ballast = fill(small_disk)
        traffic(30)
        assert 503 in statuses
        forwarded = reference.stats.requests
        refused = client.post("/v1", content=json.dumps([image_task()]))
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert reference.stats.requests == forwarded  # nothing generated unrecorded
        health = client.get("/_seedledger/health").json()
        assert health["status"] == "error" and any("spool full" in p for p in health["problems"])
        ballast.unlink()
        traffic(3)
        assert statuses[-3:] == [200, 200, 200]
    recorder.close(drain_timeout=0)
    assert set(statuses) <= {0, 200, 503}
    # A request that raced past the 503 check (the disk filled while it ran) is cut.
    assert recorder.counters.failed == statuses.count(0)
    assert seedledger("--db", sqlite_url, "spool", "drain", "--spool", str(spool_dir)).code == 0
    with Ledger.open(sqlite_url) as ledger:
        stored = sorted(r.output_uuid or "" for r in ledger.query())
    assert stored == sorted(received)  # every 200 landed, exactly once


# -- damaged bytes, strays, writer errors --------------------------------------------------


def test_flipped_bytes_in_the_middle_cost_one_entry_and_drain_says_so(
    tmp_path: Path, sqlite_url: str
) -> None:
    spool_dir = tmp_path / "spool"
    batches = [[record(seed=i)] for i in range(100)]
    with Spool(spool_dir) as spool:
        ends = [spool.append(encode_entry(batch)) for batch in batches]
    path = segment_path(spool_dir, list_segments(spool_dir)[0])
    data = bytearray(path.read_bytes())
    start = ends[48].offset + HEADER_SIZE + 40  # inside entry 50
    data[start : start + 8] = bytes(b ^ 0xFF for b in data[start : start + 8])
    path.write_bytes(bytes(data))
    status = seedledger("--json", "spool", "status", "--spool", str(spool_dir))
    assert status.code == 0 and status.json()["damaged_ranges"] == 1 and status.json()["records"] == 99
    drained = seedledger("--json", "--db", sqlite_url, "spool", "drain", "--spool", str(spool_dir))
    assert drained.code == 4, drained.err
    assert "1 damaged byte range(s) skipped" in drained.err
    assert drained.json()["recorded"] == 99 and drained.json()["damaged_ranges"] == 1
    with Ledger.open(sqlite_url) as ledger:
        assert sorted(r.seed for r in ledger.query()) == [i for i in range(100) if i != 49]
    (kept,) = (spool_dir / "dead").glob("*.damaged")
    assert kept.stat().st_size == ends[49].offset - ends[48].offset  # exactly entry 50's bytes
    assert seedledger("--db", sqlite_url, "spool", "drain", "--spool", str(spool_dir)).code == 0


def test_a_directory_named_like_a_segment_stops_nothing(
    tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    (spool_dir / f"{1:016d}.spool").mkdir()
    (spool_dir / f"{3:016d}.spool").mkdir()
    recorder = Recorder(spool_dir, sqlite_url, fingerprint=False, signer=None, on_spool_full="raise")
    kept, refused = generate(recorder, 300, size=100)
    health = recorder.status()
    assert health["status"] == "degraded"
    assert any(f"{3:016d}.spool" in p for p in health["problems"])
    assert recorder.close(drain_timeout=30)
    assert refused == 0 and sorted(landed_keys(sqlite_url)) == sorted(kept)
    assert "Traceback" not in caplog.text
    status = seedledger("--json", "spool", "status", "--spool", str(spool_dir))
    assert status.code == 0 and status.json()["stray"] == [f"{1:016d}.spool", f"{3:016d}.spool"]
    assert seedledger("--db", sqlite_url, "spool", "drain", "--spool", str(spool_dir)).code == 0


def test_unexpected_writer_errors_back_off_and_show_in_health(
    tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[float] = []

    def broken(ledger: Ledger, work: list[Any]) -> int:
        calls.append(time.monotonic())
        if len(calls) < 4:
            raise RuntimeError("fingerprinter bug")
        return 0

    recorder = Recorder(tmp_path / "spool", sqlite_url, signer=None)
    recorder.writer.fingerprinter = broken
    record_generation(model="m", seed=1, output=b"bytes", recorder=recorder)
    deadline = time.monotonic() + 10
    while recorder.status()["status"] != "error" and time.monotonic() < deadline:
        time.sleep(0.02)
    health = recorder.status()
    assert health["status"] == "error"
    assert any("RuntimeError: fingerprinter bug" in p for p in health["problems"])
    while (len(calls) < 4 or recorder.status()["status"] != "ok") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert recorder.status()["status"] == "ok"  # recovered
    assert recorder.close(drain_timeout=10)
    gaps = [b - a for a, b in itertools.pairwise(calls[:4])]
    assert gaps[1] > gaps[0] >= 0.09  # backoff, no spinning
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "Traceback" not in caplog.text
    assert len(landed_keys(sqlite_url)) == 1


def test_fingerprints_that_fail_in_an_outage_are_retried_with_their_records(
    tmp_path: Path, sqlite_url: str
) -> None:
    from ledger.capture.fingerprints import default_fingerprinter
    from tests.test_capture_hook_exit import png

    real = default_fingerprinter()
    assert real is not None
    outage = [2]

    def flaky(ledger: Ledger, work: list[Any]) -> int:
        if outage[0]:
            outage[0] -= 1
            raise StoreError("database unreachable: connection refused")
        return real(ledger, work)

    with Spool(tmp_path / "spool") as spool:
        counters = Counters()
        writer = SpoolWriter(spool, sqlite_url, counters, max_backoff=0.05, fingerprinter=flaky)
        record_generation(model="m", seed=7, output=png(), recorder=_SpoolOnly(spool))
        assert writer.drain(timeout=10)
        writer.stop(drain=False)
    assert (counters.recorded, counters.fingerprinted, counters.fingerprint_retried) == (1, 1, 2)
    with Ledger.open(sqlite_url) as ledger:
        (stored,) = ledger.query()
        assert ledger.fingerprint_of(stored.id).pixel_sha256


class _SpoolOnly:
    """A recorder stand-in that only appends (the writer under test lands)."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool

    def record(self, records: Any, outputs: Any = None) -> int:
        self.spool.append(encode_entry(records, outputs))
        return len(records)
