"""The spool (framing, torn tails, locking, release) and the writer (exactly once,
bulk path equal to Ledger.add, dead letters), plus `seedledger spool status|drain`."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ledger.capture.entries import ENTRY_COLUMNS, encode_entry
from ledger.capture.spool import HEADER_SIZE, Spool, SpoolLockedError, list_segments, lock_owner, segment_path
from ledger.capture.writer import Counters, SpoolWriter
from ledger.core.records import Modality, NewRecord, SeedOrigin, Source
from ledger.store import Ledger
from tests.cli import Run


def seedledger(*args: str) -> Run:
    """The CLI in-process (click's runner): same parsing, error handler and output."""
    from click.testing import CliRunner

    from ledger.cli import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return Run(result.exit_code, result.stdout, result.stderr)


def record(seed: int | None = 1, **extra: object) -> NewRecord:
    task = str(uuid.uuid4())
    fields: dict[str, object] = {
        "backend": "runware",
        "task_type": "imageInference",
        "modality": Modality.IMAGE,
        "model": "runware:101@1",
        "seed": seed,
        "seed_origin": SeedOrigin.RESPONSE,
        "task_uuid": task,
        "output_uuid": str(uuid.uuid4()),
        "source": Source.HOOK,
        "idempotency_key": f"runware:{task}:{uuid.uuid4()}",
    }
    fields.update(extra)
    return NewRecord(**fields)  # type: ignore[arg-type]


def test_append_read_release(tmp_path: Path) -> None:
    with Spool(tmp_path, segment_bytes=200) as spool:
        ends = [spool.append(f"entry {i}".encode() * 10) for i in range(5)]
        assert spool.sync(timeout=5)
        entries = spool.read(spool.start())
        assert [e.payload for e in entries] == [f"entry {i}".encode() * 10 for i in range(5)]
        assert [e.end for e in entries] == ends
        assert len(list_segments(tmp_path)) >= 2  # small segments rotate
        spool.release(entries[2].end)
        remaining = spool.read(spool.start())
        assert [e.payload for e in remaining][-2:] == [e.payload for e in entries[-2:]]
        spool.release(entries[-1].end, rotate=True)
        assert list_segments(tmp_path) == []
        spool.append(b"after", sync=True)
        assert [e.payload for e in spool.read(spool.start())] == [b"after"]


def test_torn_tail_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Spool(tmp_path) as spool:
        for i in range(3):
            spool.append(b"x%d" % i * 100)
    (seq,) = list_segments(tmp_path)
    path = segment_path(tmp_path, seq)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])  # the last entry cut short by a crash
    with Spool(tmp_path) as spool:
        spool.append(b"new")
        got = [e.payload for e in spool.read(spool.start())]
    assert got == [b"x0" * 100, b"x1" * 100, b"new"]
    assert "truncated entry" in caplog.text


def test_damaged_entry_costs_only_its_own_bytes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Spool(tmp_path) as spool:
        for i in range(3):
            spool.append(b"y%d" % i * 50)
    (seq,) = list_segments(tmp_path)
    path = segment_path(tmp_path, seq)
    data = bytearray(path.read_bytes())
    second = HEADER_SIZE + 100
    data[second + HEADER_SIZE + 5] ^= 0xFF  # a bit flip inside the second payload
    path.write_bytes(bytes(data))
    with Spool(tmp_path) as spool:
        # Resynchronised on the third entry; the damaged one is kept in dead/, once.
        assert [e.payload for e in spool.read(spool.start())] == [b"y0" * 50, b"y2" * 50]
        assert [e.payload for e in spool.read(spool.start())] == [b"y0" * 50, b"y2" * 50]
        assert (spool.damaged, spool.torn_tails) == (1, 0)
    assert "checksum mismatch" in caplog.text
    (kept,) = (tmp_path / "dead").iterdir()
    assert kept.read_bytes() == bytes(data[second : second + HEADER_SIZE + 100])


def test_one_owner_per_spool(tmp_path: Path) -> None:
    with Spool(tmp_path):
        assert lock_owner(tmp_path) is not None
        with pytest.raises(SpoolLockedError, match="in use by process"):
            Spool(tmp_path)
    assert lock_owner(tmp_path) is None
    Spool(tmp_path).close()


def test_writer_lands_each_record_exactly_once_after_replay(db_url: str, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    saved = tmp_path / "saved"
    batches = [[record(seed=i * 10 + j) for j in range(3)] for i in range(4)]
    with Spool(spool_dir) as spool:
        for batch in batches:
            spool.append(encode_entry(batch))
    shutil.copytree(spool_dir, saved)  # the spool as a crash would leave it
    for attempt in range(2):
        with Spool(spool_dir) as spool:
            counters = Counters()
            writer = SpoolWriter(spool, db_url, counters)
            assert writer.drain(timeout=10)
            writer.stop(drain=False)
        assert counters.recorded == 12
        assert list_segments(spool_dir) == []  # released once committed
        if attempt == 0:  # replay everything: landed records must not double
            shutil.rmtree(spool_dir)
            shutil.copytree(saved, spool_dir)
    with Ledger.open(db_url) as ledger:
        stored = ledger.query()
    assert sorted(r.seed for r in stored) == sorted(r.seed for b in batches for r in b)


def test_bulk_path_stores_what_ledger_add_stores(db_url: str, tmp_path: Path) -> None:
    base = record(
        seed=2**64 - 1,
        prompt='ein Leuchtturm ☂ "quoted"',
        params={"positivePrompt": "ein Leuchtturm ☂", "nested": {"a": [1, 2.5, None]}},
        response={"seed": 2**64 - 1},
        tags=("prod", "batch-7"),
        cfg_scale=7.5,
        width=512,
        cost=0.0013,
        created_at=datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
    )
    other = dataclasses.replace(base, idempotency_key="direct:1")
    with Ledger.open(db_url) as ledger:
        (direct_id,) = ledger.add([other])
        with Spool(tmp_path) as spool:
            spool.append(encode_entry([base]))
            writer = SpoolWriter(spool, db_url)
            assert writer.drain(timeout=10)
            writer.stop(drain=False)
        direct = ledger.get(direct_id)
        (bulk,) = [r for r in ledger.query() if r.id != direct_id]
        from ledger.store import RecordFilter

        assert [r.id for r in ledger.query(RecordFilter(tags=("batch-7",)))] == [direct_id, bulk.id]

    def comparable(r: object) -> dict[str, object]:
        data = dataclasses.asdict(r)  # type: ignore[call-overload]
        for name in ("id", "recorded_at", "idempotency_key"):
            data.pop(name)
        return data

    assert comparable(bulk) == comparable(direct)


def test_rejected_entry_goes_to_dead_letters_and_the_rest_land(sqlite_url: str, tmp_path: Path) -> None:
    good = [record(seed=1), record(seed=2)]
    bad = json.loads(encode_entry([record(seed=3)]))
    bad["records"][0][ENTRY_COLUMNS.index("backend")] = None  # NOT NULL: refused for good
    with Spool(tmp_path) as spool:
        spool.append(encode_entry(good[:1]))
        spool.append(json.dumps(bad).encode())
        spool.append(b"{not json")
        spool.append(encode_entry(good[1:]))
        counters = Counters()
        writer = SpoolWriter(spool, sqlite_url, counters)
        assert writer.drain(timeout=10)
        writer.stop(drain=False)
    assert (counters.recorded, counters.failed) == (2, 2)
    assert len(list((tmp_path / "dead").iterdir())) == 1
    with Ledger.open(sqlite_url) as ledger:
        assert sorted(r.seed for r in ledger.query()) == [1, 2]


def test_unreachable_store_keeps_records_in_the_spool(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    missing = f"sqlite:///{tmp_path}/no/such/dir/ledger.db"
    with Spool(tmp_path / "spool") as spool:
        spool.append(encode_entry([record()]))
        counters = Counters()
        writer = SpoolWriter(spool, missing, counters, max_backoff=0.05)
        assert not writer.drain(timeout=0.3)
        writer.stop(drain=False)
    assert counters.retried >= 1 and counters.recorded == 0
    assert len(list_segments(tmp_path / "spool")) == 1
    assert "records wait in the spool" in caplog.text


def test_cli_spool_status_and_drain(sqlite_url: str, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    with Spool(spool_dir) as spool:
        spool.append(encode_entry([record(seed=5), record(seed=6)]))
        spool.append(encode_entry([record(seed=7)]))
    status = seedledger("--json", "spool", "status", "--spool", str(spool_dir))
    assert status.code == 0, status.err
    assert {k: status.json()[k] for k in ("entries", "records", "torn_segments", "owner_pid")} == {
        "entries": 2,
        "records": 3,
        "torn_segments": 0,
        "owner_pid": None,
    }
    with Spool(spool_dir):  # owned by a running process: drain refuses
        locked = seedledger("--db", sqlite_url, "spool", "drain", "--spool", str(spool_dir))
    assert locked.code == 2 and "in use by process" in locked.err
    drained = seedledger("--json", "--db", sqlite_url, "spool", "drain", "--spool", str(spool_dir))
    assert drained.code == 0, drained.err
    assert drained.json()["recorded"] == 3
    after = seedledger("--json", "spool", "status", "--spool", str(spool_dir))
    assert after.json()["records"] == 0
    with Ledger.open(sqlite_url) as ledger:
        assert sorted(r.seed for r in ledger.query()) == [5, 6, 7]
    missing = seedledger("spool", "status", "--spool", str(tmp_path / "nope"))
    assert missing.code == 2 and "no spool directory" in missing.err


def test_recorder_seals_when_a_signing_key_is_configured(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ledger.capture import Recorder
    from ledger.integrity.note import ENV_SIGNING_KEY, Signer
    from ledger.integrity.seal import latest_checkpoint

    monkeypatch.setenv(ENV_SIGNING_KEY, Signer.generate("capture-test").private_key_string())
    recorder = Recorder(tmp_path / "spool", sqlite_url, fingerprint=False)
    recorder.record([record(seed=1), record(seed=2)])
    assert recorder.close(drain_timeout=10)
    assert recorder.counters.sealed == 2
    with Ledger.open(sqlite_url) as ledger, ledger.reading() as conn:
        checkpoint = latest_checkpoint(conn)
    assert checkpoint is not None and checkpoint.size == 2


def test_proxy_refuses_bad_options(tmp_path: Path) -> None:
    bad = seedledger(
        "proxy",
        "--upstream",
        "ftp://example.invalid",
        "--listen",
        "127.0.0.1:0",
        "--spool",
        str(tmp_path / "s"),
    )
    assert bad.code == 2 and "--upstream must be an http(s) URL" in bad.err
    listen = seedledger(
        "proxy", "--upstream", "http://example.invalid", "--listen", "nowhere", "--spool", str(tmp_path / "s")
    )
    assert listen.code == 2 and "--listen must be HOST:PORT" in listen.err
