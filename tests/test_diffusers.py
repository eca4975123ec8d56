"""diffusers, for real: record calls of a tiny pipeline (random weights, built from
configs and loaded with ``from_pretrained``) through ``record_pipeline`` and the
spool, then audit them with ``--replay-backend diffusers`` (the CLI as a
subprocess): exact replays are ``identical``; new weights behind the same path are
``different`` and fail the run; another dtype is not bit-exact and names the
environment difference; a Runware-style record replays through a catalog mapping.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch") if not __import__("os").environ.get("CI") else __import__("torch")
diffusers = (
    pytest.importorskip("diffusers") if not __import__("os").environ.get("CI") else __import__("diffusers")
)

from ledger.audit import results_of  # noqa: E402
from ledger.capture import Recorder, record_pipeline  # noqa: E402
from ledger.core.warnings import warnings_for  # noqa: E402
from ledger.store import Ledger  # noqa: E402
from tests.cli import seedledger  # noqa: E402
from tests.tiny_pipeline import build_tiny_pipeline  # noqa: E402

PROMPT = "a lighthouse at dusk"
CALL = {"num_inference_steps": 4, "guidance_scale": 6.0, "height": 32, "width": 32}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "model")


def _load(path: Path) -> Any:
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(path)  # float32
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _audit(url: str, *extra: str, env: dict[str, str] | None = None) -> tuple[int, list[Any], str]:
    done = seedledger(
        "--db", url, "--json", "audit", "--replay-backend", "diffusers", *extra, env=env, timeout=600
    )
    run = json.loads(done.out)
    with Ledger.open(url) as ledger:
        return done.code, results_of(ledger, run["id"]), done.err


@pytest.fixture(scope="module")
def recorded(_sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Three calls: DPM++ 2M, Euler ancestral, DPM++ 2M with another seed. Shared by the
    tests below in file order; the last one replaces the weights."""
    tmp_path = tmp_path_factory.mktemp("recorded")
    shutil.copyfile(_sqlite_template, tmp_path / "ledger.db")
    sqlite_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    work = tmp_path / "model"
    build_tiny_pipeline(work)
    recorder = Recorder(tmp_path / "spool", sqlite_url, max_backoff=0.2)
    pipe = record_pipeline(_load(work), recorder=recorder, tags=["tiny"])
    dpm = pipe.scheduler
    pipe(PROMPT, generator=torch.Generator("cpu").manual_seed(42), **CALL)
    pipe.scheduler = diffusers.EulerAncestralDiscreteScheduler.from_config(dpm.config)
    pipe(PROMPT, generator=torch.Generator("cpu").manual_seed(42), **CALL)
    pipe.scheduler = dpm
    pipe(PROMPT, generator=torch.Generator("cpu").manual_seed(2**63 - 1), **CALL)
    assert recorder.close(drain_timeout=30)
    yield sqlite_url, work


def test_records_keep_seed_scheduler_environment(recorded: tuple[str, Path]) -> None:
    url, _ = recorded
    with Ledger.open(url) as ledger:
        records = ledger.query()
        assert [r.seed for r in records] == [42, 42, 2**63 - 1]
        assert [r.params["scheduler_class"] for r in records] == [
            "DPMSolverMultistepScheduler",
            "EulerAncestralDiscreteScheduler",
            "DPMSolverMultistepScheduler",
        ]
        assert records[0].scheduler == "DPM++ 2M" and records[1].scheduler == "Euler a"
        assert records[0].params["scheduler_config"]["lambda_min_clipped"] == {"float": "-inf"}
        assert records[0].params["num_inference_steps"] == 4 and records[0].cfg_scale == 6.0
        assert records[0].params["generator"] == {"kind": "single", "device": "cpu", "state": "fresh"}
        assert records[0].params["model_info"]["weights"]  # the safetensors files, hashed
        assert (records[0].width, records[0].height) == (32, 32)
        env = ledger.environment_of(records[0].id)
        assert env is not None and env["torch"] == torch.__version__ and env["device"] == "cpu"
        assert env["dtype"] == "float32" and env["diffusers"] == diffusers.__version__
        # Fingerprinted by the writer, off the caller's path.
        assert all(ledger.fingerprint_of(r.id).width == 32 for r in records)
        codes = [[w.code for w in warnings_for(r)] for r in records]
    assert "seeded-stochastic-scheduler" in codes[1] and "stochastic-scheduler" not in codes[1]
    assert all("model-unpinned" not in c for c in codes)  # pinned by the weights' hashes
    shown = seedledger("--db", url, "--json", "show", "1")
    assert shown.code == 0 and shown.json()["environment"]["torch"] == torch.__version__
    text = seedledger("--db", url, "show", "1")
    assert f"torch {torch.__version__}" in text.out and "dtype float32" in text.out


def test_another_dtype_is_not_exact_and_names_the_difference(recorded: tuple[str, Path]) -> None:
    url, _ = recorded
    code, results, err = _audit(url, "--fail-on", "none", env={"SEEDLEDGER_DIFFUSERS_DTYPE": "bfloat16"})
    assert code == 0, err
    for result in results:
        assert result.verdict in ("near-identical", "similar"), result.distances
        facts = {d["fact"]: d for d in result.replay["environment_differences"]}
        assert facts["dtype"]["recorded"] == "float32" and facts["dtype"]["replay"] == "bfloat16"


def test_runware_record_replays_through_a_catalog_mapping(
    model_dir: Path, sqlite_url: str, tmp_path: Path
) -> None:
    from ledger.backends import SyncBackend, request_from_params
    from ledger.backends.diffusers.backend import DiffusersBackend

    task = {
        "taskType": "imageInference",
        "taskUUID": "11111111-2222-3333-4444-555555555555",
        "model": "civitai:4384@128713",
        "positivePrompt": PROMPT,
        "width": 32,
        "height": 32,
        "steps": 4,
        "CFGScale": 6.0,
        "scheduler": "DPM++ 2M Karras",
        "seed": 1234,
    }
    result = {"taskType": "imageInference", "taskUUID": task["taskUUID"], "imageUUID": "o-1", "seed": 1234}
    doc = json.dumps({"request": [task], "response": {"data": [result]}})
    assert seedledger("--db", sqlite_url, "record", "-", input=doc).code == 0
    catalog = tmp_path / "models.toml"
    catalog.write_text(f'[models."civitai:4384@128713"]\ndiffusers_path = "{model_dir}"\n')
    # The original output: what that pipeline made for this request (as the team's
    # service would have), attached as the record's fingerprint.
    from ledger.core.models import ModelCatalog

    backend = SyncBackend(DiffusersBackend(catalog=ModelCatalog().with_overrides(catalog)))
    try:
        made = backend.generate(request_from_params("runware", task, seed=1234))
    finally:
        backend.close()
    original = tmp_path / "original.png"
    original.write_bytes(made.outputs[0].data)
    assert seedledger("--db", sqlite_url, "fingerprint", "1", str(original)).code == 0
    code, results, err = _audit(sqlite_url, env={"SEEDLEDGER_MODELS": str(catalog)})
    assert code == 0, err
    (only,) = results
    assert only.verdict == "identical"
    mapping = only.replay["scheduler_mapping"]
    assert "DPMSolverMultistepScheduler" in mapping and "use_karras_sigmas=True" in mapping
    # Without the mapping the error says what is missing.
    code, results, _ = _audit(sqlite_url, "--fail-on", "none")
    assert results[0].verdict == "error" and "diffusers_path" in (results[0].error or "")


def test_an_advanced_generator_is_not_claimed(model_dir: Path, sqlite_url: str, tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "spool", sqlite_url, max_backoff=0.2)
    pipe = record_pipeline(_load(model_dir), recorder=recorder, hash_weights=False)
    generator = torch.Generator("cpu").manual_seed(7)
    torch.randn(3, generator=generator)  # the state moved past seed 7
    out = pipe(PROMPT, generator=generator, **CALL)
    assert len(out.images) == 1  # the caller gets the pipeline's output unchanged
    generators = [torch.Generator("cpu").manual_seed(s) for s in (5, 6)]
    pipe(PROMPT, generator=generators, num_images_per_prompt=2, **CALL)
    assert recorder.close(drain_timeout=30)
    with Ledger.open(sqlite_url) as ledger:
        first, *batch = ledger.query()
    assert first.seed is None and first.params["generator"]["state"] == "advanced"
    assert {"generator-state-advanced", "seed-not-captured"} <= {w.code for w in warnings_for(first)}
    assert [r.seed for r in batch] == [5, 6] and [r.output_index for r in batch] == [0, 1]


def test_sde_without_noise_seed_warns_global_rng(sqlite_url: str) -> None:
    from tests.factories import new_record

    params = {
        "scheduler_class": "DPMSolverSDEScheduler",
        "scheduler_config": {},
        "generator": {"state": "fresh"},
    }
    with Ledger.open(sqlite_url) as ledger:
        (rid,) = ledger.add([new_record(seed=3, backend="diffusers", scheduler="DPM++ SDE", params=params)])
        codes = {w.code for w in warnings_for(ledger.get(rid))}
    assert "global-rng-noise" in codes and "seeded-stochastic-scheduler" not in codes


def test_seedledger_does_not_import_torch() -> None:
    code = "import sys, ledger, ledger.capture, ledger.backends, ledger.cli; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_png_of_numpy_output(model_dir: Path, sqlite_url: str, tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "spool", sqlite_url, max_backoff=0.2)
    pipe = record_pipeline(_load(model_dir), recorder=recorder, hash_weights=False)
    pipe(PROMPT, generator=torch.Generator("cpu").manual_seed(1), output_type="np", **CALL)
    assert recorder.close(drain_timeout=30)
    with Ledger.open(sqlite_url) as ledger:
        (record,) = ledger.query()
        assert ledger.fingerprint_of(record.id).width == 32


def test_audit_replays_identical_then_new_weights_fail(recorded: tuple[str, Path]) -> None:
    url, work = recorded
    code, results, err = _audit(url)
    assert code == 0, err
    assert [r.verdict for r in results] == ["identical"] * 3
    assert all(r.outcome == "pass" for r in results)
    build_tiny_pipeline(work, weights_seed=1)  # other weights behind the same path
    code, results, err = _audit(url)
    assert code == 8, err
    assert [r.verdict for r in results] == ["different"] * 3


def test_bench_diffusers_smoke() -> None:
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, str(root / "bench" / "bench_diffusers.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [r["bench"] for r in rows] == ["diffusers.record_pipeline", "diffusers.record_pipeline.sustained"]
    for row in rows:
        assert row["baseline"] > 0 and row["ratio"] > 0
        # warm-up calls, isolated rounds and sustained rounds, each recorded once
        assert row["records_landed"] == row["records_expected"] == 3 + 3 + 3
    assert rows[0]["offpath_ms"] > 0  # the landing was waited for, outside the timed span


def test_sweep_on_diffusers_records_replay_identical(
    model_dir: Path, sqlite_url: str, tmp_path: Path
) -> None:
    catalog = tmp_path / "models.toml"
    catalog.write_text(f'[models."civitai:4384@128713"]\ndiffusers_path = "{model_dir}"\n')
    env = {"SEEDLEDGER_MODELS": str(catalog)}
    done = seedledger(
        "--db", sqlite_url, "--json", "sweep", "--backend", "diffusers",
        "--model", "civitai:4384@128713", "--prompt", PROMPT, "--width", "64", "--height", "64",
        "--steps", "4", "--cfg-scale", "6", "--scheduler", "DPM++ 2M Karras", "--seeds", "7,8",
        "--concurrency", "2", "--out", str(tmp_path / "sheet"),
        env=env, timeout=600,
    )  # fmt: skip
    assert done.code == 0, done.err
    ids = done.json()["records"]
    with Ledger.open(sqlite_url) as ledger:
        records = [ledger.get(i) for i in ids]
        assert sorted(r.seed for r in records) == [7, 8]
        assert all(r.backend == "diffusers" and r.scheduler == "DPM++ 2M Karras" for r in records)
        for r in records:
            # the scheduler that ran, class and full config, as record_pipeline keeps it
            assert r.response["scheduler_class"] == "DPMSolverMultistepScheduler"
            assert r.response["scheduler_config"]["use_karras_sigmas"] is True
            assert r.response["scheduler_config"]["lambda_min_clipped"] == {"float": "-inf"}
            environment = ledger.environment_of(r.id)
            assert environment is not None and environment["source"] == "diffusers in-process"
            assert environment["torch"] == torch.__version__ and environment["device"] == "cpu"
            assert environment["dtype"] == "float32" and environment["generator_device"] == "cpu"
            assert ledger.fingerprint_of(r.id).width == 64
    code, results, err = _audit(sqlite_url, env=env)
    assert code == 0, err
    assert sorted(r.record_id for r in results) == sorted(ids)
    assert [r.verdict for r in results] == ["identical", "identical"]
    assert all("use_karras_sigmas=True" in r.replay["scheduler_mapping"] for r in results)


def test_the_record_is_of_the_output_as_returned(model_dir: Path, sqlite_url: str, tmp_path: Path) -> None:
    """The writer encodes the images after the call returned: from the pixels copied on
    the caller's path, so a caller changing the output in place does not change what
    was recorded."""
    import io

    from ledger.fingerprint import fingerprint

    recorder = Recorder(tmp_path / "spool", sqlite_url, max_backoff=0.2)
    pipe = record_pipeline(_load(model_dir), recorder=recorder, hash_weights=False)
    out = pipe(PROMPT, generator=torch.Generator("cpu").manual_seed(3), **CALL)
    buffer = io.BytesIO()
    out.images[0].save(buffer, "PNG")
    returned = fingerprint(buffer.getvalue(), "image").pixel_sha256
    out.images[0].paste((0, 0, 0), (0, 0, 32, 32))  # the caller reuses the image at once
    pipe.flush()
    assert recorder.close(drain_timeout=30)
    with Ledger.open(sqlite_url) as ledger:
        (record,) = ledger.query()
        stored = ledger.fingerprint_of(record.id).pixel_sha256
    mutated = io.BytesIO()
    out.images[0].save(mutated, "PNG")
    assert stored == returned != fingerprint(mutated.getvalue(), "image").pixel_sha256


def test_a_script_that_exits_right_after_a_call_keeps_its_record(
    model_dir: Path, sqlite_url: str, tmp_path: Path
) -> None:
    """The call is in the spool when it returns; the recorder's exit drain lands it
    before the script ends."""
    import os
    import textwrap

    script = textwrap.dedent(
        f"""
        import torch
        from diffusers import StableDiffusionPipeline
        from ledger.capture import record_pipeline
        pipe = StableDiffusionPipeline.from_pretrained({str(model_dir)!r})
        pipe.set_progress_bar_config(disable=True)
        pipe = record_pipeline(pipe, db={sqlite_url!r}, spool={str(tmp_path / "spool")!r}, hash_weights=False)
        pipe({PROMPT!r}, generator=torch.Generator("cpu").manual_seed(11), **{CALL!r})
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEDLEDGER_")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr
    with Ledger.open(sqlite_url) as ledger:  # no drain
        (record,) = ledger.query()
        assert record.seed == 11 and ledger.environment_of(record.id) is not None
        assert ledger.fingerprint_of(record.id).width == 32
