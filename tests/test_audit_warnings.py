"""The warning catalog from the record alone, the policy, and `seedledger check`."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from ledger.audit.inputs import input_urls
from ledger.audit.policy import Policy, outcome_for
from ledger.cli import main
from ledger.core.models import ModelCatalog
from ledger.core.records import Modality, Record
from ledger.core.warnings import CATALOG, WARNING_CODES, Severity, warnings_for
from ledger.errors import InvalidInputError, UsageError
from ledger.store import Ledger
from ledger.store.schema import record_warnings
from tests.cli import Run
from tests.factories import new_record


def cli(*args: str) -> Run:
    """The CLI in process (click's CliRunner): faster than a subprocess per call."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return Run(result.exit_code, result.stdout, result.stderr)


def record(**overrides: Any) -> Record:
    values = dataclasses.asdict(new_record(**overrides))
    return Record(**values, id=1, recorded_at=datetime.now(UTC))


def codes(r: Record) -> list[str]:
    return [w.code for w in warnings_for(r)]


def test_catalog_has_every_code_with_severity_and_explanation() -> None:
    assert set(WARNING_CODES) == {
        "stochastic-scheduler",
        "seedless-model",
        "seed-not-captured",
        "scheduler-unresolved",
        "model-unpinned",
        "lossy-output",
        "inputs-unavailable",
        "batch-seed-unknown",
        "nondeterministic-settings",
        "media-not-reproducible",
        "seeded-stochastic-scheduler",
        "global-rng-noise",
        "generator-state-advanced",
        "output-unreadable",
    }
    for kind in CATALOG.values():
        assert isinstance(kind.severity, Severity)
        assert kind.explanation and "\n" not in kind.explanation
    blocking = {code for code, kind in CATALOG.items() if kind.blocks_replay}
    assert blocking == {
        "seedless-model",
        "seed-not-captured",
        "batch-seed-unknown",
        "inputs-unavailable",
        "generator-state-advanced",
    }


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, []),
        ({"scheduler": "Euler a"}, ["stochastic-scheduler"]),
        ({"scheduler": "DPM++ 2M SDE Karras"}, ["stochastic-scheduler"]),
        ({"scheduler": "DDIM"}, []),
        ({"seed": None}, ["seed-not-captured"]),
        ({"model": "openai:gpt-image@1"}, ["seedless-model"]),
        ({"model": "recraft:1@1", "seed": None, "scheduler": "Euler a"}, ["seedless-model"]),
        ({"model": "runware:101"}, ["model-unpinned"]),
        (
            {"scheduler": None, "scheduler_requested": "Default", "model": "civitai:5@1"},
            ["scheduler-unresolved"],
        ),
        ({"scheduler": None, "scheduler_requested": None, "model": "civitai:5@1"}, ["scheduler-unresolved"]),
        # FLUX dev's default scheduler is known, so Default resolves (deterministic).
        ({"scheduler": None, "scheduler_requested": "Default", "model": "runware:101@1"}, []),
        ({"scheduler": "My Secret Sampler"}, ["scheduler-unresolved"]),
        ({"output_format": "JPG"}, ["lossy-output"]),
        ({"output_format": "webp"}, ["lossy-output"]),
        ({"output_format": "PNG"}, []),
        ({"modality": Modality.VIDEO, "task_type": "videoInference"}, ["lossy-output"]),
        ({"modality": Modality.VIDEO, "output_format": "MP4"}, ["lossy-output"]),
        ({"modality": Modality.AUDIO, "output_format": "MP3"}, ["lossy-output"]),
        ({"modality": Modality.AUDIO, "output_format": "WAV"}, []),
        (
            {"seed": None, "params": {"numberResults": 4}, "output_index": 2},
            ["seed-not-captured", "batch-seed-unknown"],
        ),
    ],
)
def test_warnings_from_the_record_alone(overrides: dict[str, Any], expected: list[str]) -> None:
    got = codes(record(**overrides))
    assert sorted(got) == sorted(expected)
    assert got == [c for c in WARNING_CODES if c in got]  # catalog order


def test_a1111_settings_and_model_hash() -> None:
    params = {
        "format": "a1111-infotext",
        "parameters": {"Seed": "1", "Model hash": "abc123", "RNG": "GPU"},
        "defaulted": ["RNG"],
        "commandline_args": "--xformers --listen",
        "infotext": "a prompt about xformers",
    }
    r = record(backend="a1111", model="sd_xl_base_1.0", params=params, scheduler="DPM++ 2M")
    [warning] = warnings_for(r)
    assert warning.code == "nondeterministic-settings" and warning.severity is Severity.WARNING
    assert "RNG=GPU (defaulted" in warning.detail and "xformers" in warning.detail
    # A recorded model hash pins a non-AIR model; CPU RNG and SDP without memory
    # attention are deterministic; a prompt that mentions xformers is not a setting.
    quiet = {
        "parameters": {"Model hash": "abc123", "RNG": "CPU"},
        "commandline_args": "--opt-sdp-no-mem-attention",
        "prompt": "xformers",
    }
    assert codes(record(backend="a1111", model="sd_xl_base_1.0", params=quiet, scheduler="DPM++ 2M")) == []
    assert codes(record(params={"cross_attention_optimization": "sdp"})) == ["nondeterministic-settings"]


def test_scheduler_options_change_the_class() -> None:
    assert codes(record(scheduler="DDIMScheduler", params={"schedulerConfig": {"eta": 0.5}})) == [
        "stochastic-scheduler"
    ]
    assert codes(
        record(scheduler="DPMSolverMultistepScheduler", params={"algorithm_type": "sde-dpmsolver++"})
    ) == ["stochastic-scheduler"]


def test_input_urls_found_at_any_depth_but_not_in_prompts() -> None:
    params = {
        "positivePrompt": "https://not-an-input.example/x.png",
        "seedImage": "https://a.example/seed.png",
        "inputs": {"referenceImages": ["https://a.example/r1.png", "data:image/png;base64,AAAA"]},
        "controlNet": [{"guideImage": "https://a.example/g.png"}],
        "maskImage": "0f8fad5b-d9cb-469f-a165-70867728950e",
    }
    assert input_urls(params) == [
        "https://a.example/seed.png",
        "https://a.example/r1.png",
        "https://a.example/g.png",
    ]


def test_outcomes_and_policy() -> None:
    assert outcome_for("identical", []) == "pass"
    assert outcome_for("near-identical", ["model-unpinned"]) == "pass"
    assert outcome_for("similar", ["stochastic-scheduler"]) == "expected-drift"
    assert outcome_for("similar", []) == "fail"
    assert outcome_for("different", ["stochastic-scheduler"]) == "fail"
    assert outcome_for("skipped", []) == "skipped"
    assert outcome_for("error", []) == "error"
    counts = {"pass": 3, "expected-drift": 1, "skipped": 2}
    assert Policy().holds(counts)
    assert Policy.parse("fail,error").names == ["fail", "error"]
    assert not Policy.parse("drift").holds(counts)
    assert Policy.parse("all").violations(counts) == 3
    assert Policy.parse("none").holds({"fail": 5, "error": 5})
    assert Policy.from_dict(Policy.parse("none").to_dict()).holds({"fail": 1})
    with pytest.raises(UsageError, match="not one of"):
        Policy.parse("fail,oops")
    with pytest.raises(UsageError):
        Policy.parse(" , ")


def test_check_command_stores_and_counts_warnings(sqlite_url: str) -> None:
    with Ledger.open(sqlite_url) as ledger:
        clean, drift, seedless, jpg = ledger.add(
            [
                new_record(),
                new_record(scheduler="Euler a"),
                new_record(model="openai:gpt-image@1"),
                new_record(output_format="JPG", scheduler="Euler a"),
            ]
        )
    out = cli("--db", sqlite_url, "--json", "check")
    assert out.code == 0, out.err
    *rows, summary = out.json_lines()
    assert {r["record_id"]: [w["code"] for w in r["warnings"]] for r in rows} == {
        drift: ["stochastic-scheduler"],
        seedless: ["seedless-model"],
        jpg: ["stochastic-scheduler", "lossy-output"],
    }
    assert summary == {
        "checked": 4,
        "with_warnings": 3,
        "counts": {"seedless-model": 1, "stochastic-scheduler": 2, "lossy-output": 1},
    }
    with Ledger.open(sqlite_url) as ledger, ledger.reading() as conn:
        stored = sorted(conn.execute(select(record_warnings.c.record_id, record_warnings.c.code)).all())
    assert stored == sorted(
        [
            (drift, "stochastic-scheduler"),
            (seedless, "seedless-model"),
            (jpg, "stochastic-scheduler"),
            (jpg, "lossy-output"),
        ]
    )
    assert clean not in {rid for rid, _ in stored}
    strict = cli("--db", sqlite_url, "check", "--ids", f"{clean}-{seedless}", "--fail-on", "error")
    assert strict.code == 8 and "1 record(s)" in strict.err
    assert "seedless-model" in strict.out and "stochastic-scheduler" in strict.out
    fine = cli("--db", sqlite_url, "check", "--id", str(clean), "--fail-on", "info")
    assert fine.code == 0, fine.err


def test_rate_limiter_gives_each_start_the_next_free_slot() -> None:
    from ledger.audit.backends import RateLimiter

    async def starts() -> list[float]:
        limiter = RateLimiter(rate=1000.0)  # one start per millisecond
        loop = asyncio.get_running_loop()
        begin = loop.time()
        slots: list[float] = []

        async def one() -> None:
            await limiter.wait()
            slots.append(limiter._next - begin)

        await asyncio.gather(*(one() for _ in range(20)))
        return slots

    slots = asyncio.run(starts())
    # Twenty starts reserve twenty consecutive 1 ms slots: the last ends >= 20 ms on.
    assert max(slots) >= 0.020
    assert RateLimiter(None).interval == 0.0


def test_known_non_reproducible_media_models_are_warned_about() -> None:
    catalog = ModelCatalog().with_overrides({"models": {"acme:*": {"seed": True, "reproducible": False}}})
    video = record(model="acme:7@1", modality=Modality.VIDEO, output_format="GIF")
    still = record(model="acme:7@1")
    assert [w.code for w in warnings_for(video, catalog=catalog)] == ["media-not-reproducible"]
    assert "media-not-reproducible" not in [w.code for w in warnings_for(still, catalog=catalog)]
    with pytest.raises(InvalidInputError, match="reproducible: expected true or false"):
        ModelCatalog().with_overrides({"models": {"acme:*": {"reproducible": "no"}}})
