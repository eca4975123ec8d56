"""record_pipeline is durable when the call returns (issue 18): each call is one spool
entry of the call's records and its images' decoded pixels; the spool writer encodes
the PNGs and fingerprints them. A process killed (SIGKILL) right after its last call
loses nothing, the PNG (and so ``file_sha256``) is the one the hook always wrote, a
full spool follows ``on_spool_full``, and failures never reach the caller.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch") if not os.environ.get("CI") else __import__("torch")
diffusers = pytest.importorskip("diffusers") if not os.environ.get("CI") else __import__("diffusers")

from ledger.capture import Recorder, record_pipeline  # noqa: E402
from ledger.capture.entries import CALL_VERSION, decode_entry  # noqa: E402
from ledger.capture.pixels import png  # noqa: E402
from ledger.capture.spool import Position  # noqa: E402
from ledger.store import Ledger  # noqa: E402
from tests.cli import seedledger  # noqa: E402
from tests.test_capture_faults import fill, small_disk  # noqa: E402, F401  (a fixture)
from tests.test_capture_pixels import old_png  # noqa: E402
from tests.tiny_pipeline import build_tiny_pipeline  # noqa: E402

PROMPT = "a lighthouse at dusk"
CALL = {"num_inference_steps": 2, "guidance_scale": 6.0, "height": 32, "width": 32}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def pipe(model_dir: Path) -> Any:
    loaded = diffusers.StableDiffusionPipeline.from_pretrained(model_dir)
    loaded.set_progress_bar_config(disable=True)
    return loaded


KILLED = r"""
import hashlib, json, os, signal, sys
import torch
from diffusers import StableDiffusionPipeline
from ledger.capture import record_pipeline
from tests.test_capture_pixels import old_png
model, db, spool, call = sys.argv[1:5]
pipe = StableDiffusionPipeline.from_pretrained(model)
pipe.set_progress_bar_config(disable=True)
pipe = record_pipeline(pipe, db=db, spool=spool, hash_weights=False)
made = []
def record(seeds, **extra):
    gens = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    out = pipe("a lighthouse", generator=gens if len(gens) > 1 else gens[0],
               num_images_per_prompt=len(gens), **json.loads(call), **extra)
    made.extend([s, hashlib.sha256(old_png(i)).hexdigest()] for s, i in zip(seeds, out.images))
record([100])
record([101])
record([102, 103])  # a list of generators: a seed per image
record([104], output_type="np")
print(json.dumps(made), flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # right after the last call returned
"""


def test_sigkill_right_after_the_last_call_loses_no_record(
    model_dir: Path, sqlite_url: str, tmp_path: Path
) -> None:
    """The process dies before any exit handler: each call must already be in the spool
    (the background writer may have landed some; the drain lands the rest, once)."""
    spool = tmp_path / "spool"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEDLEDGER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parents[1]), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", KILLED, str(model_dir), sqlite_url, str(spool), json.dumps(CALL)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    made = {seed: sha for seed, sha in json.loads(done.stdout.splitlines()[-1])}
    drained = seedledger("--json", "--db", sqlite_url, "spool", "drain", "--spool", str(spool))
    assert drained.code == 0, drained.err
    with Ledger.open(sqlite_url) as ledger:
        records = ledger.query()
        assert sorted(r.seed or 0 for r in records) == [100, 101, 102, 103, 104]  # each once
        for r in records:
            fp = ledger.fingerprint_of(r.id)
            assert fp is not None and fp.width == 32
            assert fp.file_sha256 == made[r.seed]  # the PNG the hook always wrote
            assert ledger.environment_of(r.id) is not None
        batch = sorted((r for r in records if r.seed in (102, 103)), key=lambda r: r.output_index or 0)
        assert [r.output_index for r in batch] == [0, 1] and batch[0].task_uuid == batch[1].task_uuid
        assert batch[0].params["generator"]["kind"] == "list"


def test_the_call_is_in_the_spool_when_it_returns(pipe: Any, sqlite_url: str, tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "spool", sqlite_url, writer=False)  # nothing lands by itself
    recorded = record_pipeline(pipe, recorder=recorder, hash_weights=False)
    out = recorded(PROMPT, generator=torch.Generator("cpu").manual_seed(9), **CALL)
    (entry,) = recorder.spool.read(Position(0, 0))
    decoded = decode_entry(entry.payload)
    ((key, output),) = decoded.outputs.items()
    assert json.loads(entry.payload)["v"] == CALL_VERSION and output.pixels is not None
    assert png(output.pixels) == old_png(out.images[0])
    assert list(decoded.environments) == [key] and recorder.counters.spooled == 1
    assert recorder.writer.drain(timeout=30)
    with Ledger.open(sqlite_url) as ledger:
        (record,) = ledger.query()
        assert record.seed == 9 and record.idempotency_key == key
        fp = ledger.fingerprint_of(record.id)
        assert fp is not None and fp.file_sha256 == hashlib.sha256(old_png(out.images[0])).hexdigest()
    recorder.close(drain_timeout=0)


def test_large_calls_are_spooled_as_a_few_entries(
    pipe: Any, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ledger.capture import pipelines

    monkeypatch.setattr(pipelines, "MAX_ENTRY_PIXELS", 32 * 32 * 3)  # one image per entry
    recorder = Recorder(tmp_path / "spool", sqlite_url, writer=False)
    recorded = record_pipeline(pipe, recorder=recorder, hash_weights=False)
    gens = [torch.Generator("cpu").manual_seed(s) for s in (1, 2, 3)]
    recorded(PROMPT, generator=gens, num_images_per_prompt=3, **CALL)
    assert len(recorder.spool.read(Position(0, 0))) == 3
    assert recorder.writer.drain(timeout=30)
    recorder.close(drain_timeout=0)
    with Ledger.open(sqlite_url) as ledger:
        records = ledger.query()
        assert sorted(r.seed or 0 for r in records) == [1, 2, 3]
        assert all(ledger.fingerprint_of(r.id) is not None for r in records)


def test_failures_are_counted_once_and_never_raised(pipe: Any, sqlite_url: str, tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "spool", sqlite_url, writer=False)
    recorded = record_pipeline(pipe, recorder=recorder, hash_weights=False)
    recorder.close(drain_timeout=0)  # the spool is closed: nothing can be kept
    gens = [torch.Generator("cpu").manual_seed(s) for s in (1, 2)]
    out = recorded(PROMPT, generator=gens, num_images_per_prompt=2, **CALL)
    assert len(out.images) == 2
    assert recorder.counters.failed == 2 and recorder.counters.spooled == 0


@pytest.mark.parametrize("policy", ["direct", "raise"])
def test_a_full_spool_follows_on_spool_full(
    policy: str,
    pipe: Any,
    sqlite_url: str,
    small_disk: Path,  # noqa: F811
) -> None:
    disk = small_disk
    recorder = Recorder(disk / "spool", sqlite_url, writer=False, on_spool_full=policy)
    recorded = record_pipeline(pipe, recorder=recorder, hash_weights=False)
    fill(disk)
    out = recorded(PROMPT, generator=torch.Generator("cpu").manual_seed(5), **CALL)
    assert len(out.images) == 1  # the caller never sees the full disk
    with Ledger.open(sqlite_url) as ledger:
        records = ledger.query()
        if policy == "direct":  # written to the ledger on the caller's thread, fingerprinted
            (record,) = records
            assert record.seed == 5 and recorder.counters.direct == 1 and recorder.counters.failed == 0
            fp = ledger.fingerprint_of(record.id)
            assert fp is not None and fp.file_sha256 == hashlib.sha256(old_png(out.images[0])).hexdigest()
        else:
            assert records == [] and recorder.counters.failed == 1
    recorder.close(drain_timeout=0)


def test_images_encoded_at_once_count_toward_the_entry_size(
    pipe: Any, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Images kept as PNG bytes (too large for raw pixels, or carrying PIL info) weigh
    on their entry like pixels do: a call of several is still split, never one entry
    over the spool's limit."""
    from ledger.capture import pipelines, pixels

    monkeypatch.setattr(pixels, "MAX_RAW_BYTES", 16)  # every image is PNG-encoded at once
    monkeypatch.setattr(pipelines, "MAX_ENTRY_PIXELS", 1)  # any weight fills an entry
    recorder = Recorder(tmp_path / "spool", sqlite_url, writer=False)
    recorded = record_pipeline(pipe, recorder=recorder, hash_weights=False)
    gens = [torch.Generator("cpu").manual_seed(s) for s in (4, 5, 6)]
    recorded(PROMPT, generator=gens, num_images_per_prompt=3, **CALL)
    entries = recorder.spool.read(Position(0, 0))
    assert len(entries) == 3
    assert all(o.data is not None for e in entries for o in decode_entry(e.payload).outputs.values())
    assert recorder.writer.drain(timeout=30)
    recorder.close(drain_timeout=0)
    with Ledger.open(sqlite_url) as ledger:
        assert sorted(r.seed or 0 for r in ledger.query()) == [4, 5, 6]


def _child_ids(recorded: Any, queue: Any) -> None:
    queue.put(recorded._id_prefix)


def test_a_forked_child_draws_its_own_call_ids(pipe: Any, sqlite_url: str, tmp_path: Path) -> None:
    """Ids copied into a forked child would give parent and child the same idempotency
    keys, and the ledger would keep one record of two."""
    import multiprocessing

    recorder = Recorder(tmp_path / "spool", sqlite_url, writer=False)
    recorded = record_pipeline(pipe, recorder=recorder, hash_weights=False)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_ids, args=(recorded, queue))
    child.start()
    prefix = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0 and prefix != recorded._id_prefix
    recorder.close(drain_timeout=0)
