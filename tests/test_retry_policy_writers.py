"""The store writers (capture's spool writer, the audit result writer) retry as their
RetryPolicy says: attempts and waits come from the policy, not from a loop of their own."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ledger.audit import writer as audit_writer
from ledger.audit.store import AuditResult
from ledger.backends.policies import RetryPolicy
from ledger.capture import writer as capture_writer
from ledger.capture.entries import encode_entry
from ledger.capture.spool import Spool
from ledger.capture.writer import Counters, SpoolWriter
from ledger.errors import StoreError
from tests.factories import new_record


def test_a_policy_without_jitter_waits_its_ceiling() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0, jitter=False)
    assert [policy.backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert [policy.ceiling(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    # A writer retrying for days counts far past any float exponent.
    assert policy.backoff(100_000) == 3.0
    assert RetryPolicy(base_delay=0.5, max_delay=3.0).backoff(100_000) <= 3.0


class _DownLedger:
    """A ledger whose every write transaction fails as a locked database does."""

    def __init__(self) -> None:
        self.attempts = 0

    def writing(self) -> Any:
        self.attempts += 1
        raise StoreError("database is locked")


def _store_one(policy: RetryPolicy | None) -> tuple[int, list[float]]:
    ledger = _DownLedger()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    options: dict[str, Any] = {"retry": policy} if policy is not None else {}
    run = SimpleNamespace(selected_count=1)
    writer = audit_writer.ResultWriter(ledger, run, progress=None, sleep=sleep, **options)

    async def go() -> None:
        await writer.put(AuditResult(run_id="r", record_id=1, verdict="identical", outcome="pass"))
        await writer.close()
        await writer.run()

    with pytest.raises(StoreError, match="locked"):
        asyncio.run(go())
    return ledger.attempts, slept


def test_the_audit_writer_follows_its_policy() -> None:
    policy = RetryPolicy(max_attempts=5, base_delay=0.25, max_delay=0.75, jitter=False)
    assert _store_one(policy) == (5, [0.25, 0.5, 0.75, 0.75])
    assert _store_one(RetryPolicy(max_attempts=1, jitter=False)) == (1, [])
    # The default keeps the old schedule: three attempts, 0.5 s then 1 s apart.
    assert audit_writer.STORE_RETRY.max_attempts == 3
    assert _store_one(None) == (3, [0.5, 1.0])


class _Clock:
    """Virtual time for the spool writer: sleeping advances it, nothing waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _drain_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, timeout: float, **options: Any
) -> tuple[bool, list[float], Counters]:
    clock = _Clock()
    monkeypatch.setattr(capture_writer, "time", clock)
    missing = f"sqlite:///{tmp_path}/no/such/dir/ledger.db"
    counters = Counters()
    with Spool(tmp_path / "spool") as spool:
        spool.append(encode_entry([new_record(idempotency_key="runware:retry-test:0")]))
        writer = SpoolWriter(spool, missing, counters, **options)
        done = writer.drain(timeout=timeout)
        writer.stop(drain=False)
    return done, clock.slept, counters


def test_the_spool_writer_waits_as_its_policy_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = RetryPolicy(base_delay=0.01, max_delay=0.04, jitter=False)
    done, slept, counters = _drain_unreachable(tmp_path / "a", monkeypatch, 0.2, retry=policy)
    assert not done and counters.recorded == 0
    # max_attempts does not cut a spool writer short: the records wait in the spool.
    assert slept[:4] == [0.01, 0.02, 0.04, 0.04] and set(slept[2:]) == {0.04} and len(slept) >= 5
    assert counters.retried == len(slept) + 1
    # The default policy, shaped by max_backoff, is the old schedule: 0.05 s doubling.
    _, slept, _ = _drain_unreachable(tmp_path / "b", monkeypatch, 1.2, max_backoff=0.4)
    assert slept[:5] == [0.05, 0.1, 0.2, 0.4, 0.4]


def test_unexpected_writer_errors_back_off_by_the_fault_policy() -> None:
    assert capture_writer.FAULT_RETRY.jitter is False
    waits = [capture_writer.FAULT_RETRY.backoff(n) for n in range(1, 12)]
    assert waits[:3] == [0.1, 0.2, 0.4] and waits[-1] == capture_writer.MAX_FAULT_BACKOFF
