"""The runtime environment in `diff` and in reports (all four formats), on both engines."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
from click.testing import CliRunner
from sqlalchemy import insert

from ledger.cli import main
from ledger.core.documents import parse_documents
from ledger.core.environment import summary
from ledger.reports import FORMATS, ReportOptions, json_schema, write_report
from ledger.store import Ledger
from ledger.store.schema import audit_results, audit_runs
from tests.cli import Run
from tests.factories import exchange

ENV_A: dict[str, Any] = {
    "source": "diffusers in-process",
    "torch": "2.13.0+cpu",
    "diffusers": "0.42.1",
    "transformers": "5.24.0",
    "python": "3.11.7",
    "device": "cpu",
    "device_name": "x86_64",
    "dtype": "float32",
    "attention": ["AttnProcessor2_0"],
    "deterministic_algorithms": False,
    "tf32_matmul": False,
    "threads": 2,
    "generator_device": "cpu",
}
ENV_B: dict[str, Any] = {
    **ENV_A,
    "torch": "2.12.0+cu121",
    "python": "3.11.9",
    "device": "cuda:0",
    "dtype": "float16",
    "attention": ["XFormersAttnProcessor"],
    "deterministic_algorithms": True,
    "tf32_matmul": True,
    "generator_device": "cuda",
}


def cli(*args: str) -> Run:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return Run(result.exit_code, result.stdout, result.stderr)


def _add(ledger: Ledger, seed: int, environment: dict[str, Any] | None) -> int:
    (record,) = parse_documents(json.dumps(exchange(seed)))
    record = dataclasses.replace(record, idempotency_key=f"env-test:{uuid.uuid4()}")
    return ledger.add([record], environments=[environment])[0]


# -- diff -----------------------------------------------------------------------------


def test_diff_names_every_environment_fact_that_differs(ledger: Ledger, db_url: str) -> None:
    a, b = _add(ledger, 42, ENV_A), _add(ledger, 42, ENV_B)
    run = cli("--db", db_url, "--json", "diff", str(a), str(b))
    assert run.code == 0, run.err
    env = run.json()["environment"]
    assert env["a"] == ENV_A and env["b"] == ENV_B and env["note"] is None
    # material facts first, in the order the ledger ranks them, then the rest by name
    assert env["differences"] == [
        {"fact": "device", "a": "cpu", "b": "cuda:0", "material": True},
        {"fact": "dtype", "a": "float32", "b": "float16", "material": True},
        {"fact": "torch", "a": "2.13.0+cpu", "b": "2.12.0+cu121", "material": True},
        {"fact": "attention", "a": ["AttnProcessor2_0"], "b": ["XFormersAttnProcessor"], "material": True},
        {"fact": "deterministic_algorithms", "a": False, "b": True, "material": True},
        {"fact": "tf32_matmul", "a": False, "b": True, "material": True},
        {"fact": "generator_device", "a": "cpu", "b": "cuda", "material": True},
        {"fact": "python", "a": "3.11.7", "b": "3.11.9", "material": False},
    ]
    # the runtime is not a generation parameter: the comparison stays controlled
    assert run.json()["controlled"] is True and run.json()["changes"] == []

    text = cli("--db", db_url, "diff", str(a), str(b))
    assert text.code == 0
    lines = text.out.splitlines()
    assert "[environment] dtype: float32 → float16" in lines
    assert "[environment] tf32_matmul: False → True" in lines
    assert "[environment] attention: ['AttnProcessor2_0'] → ['XFormersAttnProcessor']" in lines
    assert "[environment, informational] python: 3.11.7 → 3.11.9" in lines
    assert sum(line.startswith("[environment") for line in lines) == 8


def test_diff_says_when_a_record_has_no_environment(ledger: Ledger, db_url: str) -> None:
    a, b, c = _add(ledger, 1, ENV_A), _add(ledger, 1, None), _add(ledger, 1, dict(ENV_A))
    run = cli("--db", db_url, "--json", "diff", str(a), str(b))
    env = run.json()["environment"]
    assert env["b"] is None and env["differences"] == []
    assert env["note"] == f"record {b} reported no runtime environment: environments not compared"
    assert "environments not compared" in cli("--db", db_url, "diff", str(a), str(b)).err
    same = cli("--db", db_url, "diff", str(a), str(c))
    assert "environment: same runtime facts" in same.out.splitlines()


# -- reports --------------------------------------------------------------------------

DTYPE_DIFF = [{"fact": "dtype", "recorded": "float32", "replay": "bfloat16"}]


def _audit(ledger: Ledger, results: list[tuple[int, str, str, dict[str, Any] | None]]) -> None:
    """One finished audit run holding (record, verdict, outcome, replay JSON) results."""
    run_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    with ledger.writing() as conn:
        conn.execute(
            insert(audit_runs).values(
                id=run_id,
                created_at=now - timedelta(minutes=5),
                finished_at=now,
                status="finished",
                backend="diffusers",
                backend_url=None,
                selection={},
                policy={"pass": ["identical", "near-identical"]},
                options={},
                selected_count=len(results),
                summary={},
            )
        )
        conn.execute(
            insert(audit_results),
            [
                {
                    "run_id": run_id,
                    "record_id": rid,
                    "verdict": verdict,
                    "outcome": outcome,
                    "warnings": [],
                    "distances": {"phash_distance": 0 if verdict == "identical" else 6},
                    "replay": replay,
                    "replay_thumbnail": None,
                    "replay_pixel_sha256": None,
                    "error_code": None,
                    "error": None,
                    "created_at": now,
                }
                for rid, verdict, outcome, replay in results
            ],
        )


def test_reports_show_environments_and_the_differences_of_drifted_replays(
    ledger: Ledger, tmp_path: Path
) -> None:
    identical = _add(ledger, 1, ENV_A)
    near = _add(ledger, 2, ENV_A)
    unrecorded = _add(ledger, 3, None)  # an imported record: no environment of its own
    never = _add(ledger, 4, ENV_B)  # not audited
    replay_env = {**ENV_A, "dtype": "bfloat16"}
    _audit(
        ledger,
        [
            (identical, "identical", "pass", {"backend": "diffusers", "environment": ENV_A}),
            (
                near,
                "near-identical",
                "pass",
                {"backend": "diffusers", "environment": replay_env, "environment_differences": DTYPE_DIFF},
            ),
            (
                unrecorded,
                "different",
                "fail",
                {"backend": "diffusers", "environment": replay_env, "environment_differences": []},
            ),
        ],
    )
    out = {}
    for fmt in FORMATS:
        out[fmt] = tmp_path / f"report.{fmt}"
        write_report(ledger, None, fmt, out[fmt], ReportOptions(verify="none"))

    report = json.loads(out["json"].read_text(encoding="utf-8"))
    jsonschema.validate(report, json_schema())
    rows = {r["id"]: r for r in report["records"]}
    assert rows[identical]["environment"] == ENV_A
    assert rows[identical]["replay_environment"] is None  # identical: nothing to explain
    assert rows[identical]["environment_differences"] is None
    assert rows[near]["environment"] == ENV_A
    assert rows[near]["replay_environment"] == replay_env
    assert rows[near]["environment_differences"] == DTYPE_DIFF
    assert rows[unrecorded]["environment"] is None and rows[unrecorded]["environment_differences"] == []
    assert rows[never]["environment"] is None  # only audited records carry theirs
    (evidence,) = report["evidence"]
    assert evidence["record_id"] == unrecorded
    assert evidence["replay_environment"] == replay_env and evidence["environment_differences"] == []

    with out["csv"].open(encoding="utf-8", newline="") as fh:
        cells = {int(r["record_id"]): r for r in csv.DictReader(fh)}
    assert cells[identical]["environment"] == summary(ENV_A)
    assert cells[identical]["environment_differences"] == ""
    assert cells[near]["environment_differences"] == "dtype float32 → bfloat16"
    assert cells[unrecorded]["environment_differences"] == "not compared: the record has no environment"
    assert cells[never]["environment"] == ""

    markdown = out["md"].read_text(encoding="utf-8")
    section = markdown[markdown.index("## Runtime environments") : markdown.index("## Integrity")]
    assert "2 audited records report their runtime, in 1 distinct environments." in section
    drift = section[section.index("### Replays that were not identical") :]
    drift_rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in drift.splitlines()
        if line.startswith("| ")
    ]
    assert drift_rows[1:] == [
        [str(near), "near-identical", "pass", "dtype float32 → bfloat16"],
        [str(unrecorded), "different", "fail", "not compared: the record has no environment"],
    ]

    page = out["html"].read_text(encoding="utf-8")
    metrics = dict(re.findall(r'data-metric="([^"]+)" data-value="([^"]*)"', page))
    assert metrics["environments.records"] == "2"
    assert metrics["environments.group:0"] == "2"
    assert metrics["environments.drifted"] == "2"
    assert metrics[f"environments.drift:{near}"] == "near-identical"
    assert "dtype float32 → bfloat16" in page
    assert 'href="#environments"' in page
