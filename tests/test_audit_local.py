"""Records from `record_generation` (backend `local`) replayed with `--replay-backend`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ledger.backends import open_sync_backend, request_from_params
from ledger.backends.reference.server import ReferenceServer
from ledger.capture import record_generation
from ledger.capture.recorder import Recorder
from tests.cli import seedledger
from tests.fakes.a1111 import FakeA1111
from tests.fakes.server import live_server
from tests.test_audit import image_request

MODEL = "runware:101@1"
PROMPT = "a lighthouse at dusk"


def _original(url: str) -> bytes:
    # The same generation as the audit tests' reference request (128x128, 20 steps, CFG 7).
    with open_sync_backend("reference", url) as backend:
        return backend.generate(image_request(seed=1234)).outputs[0].data


def _record_locally(db: str, spool: Path, image: bytes) -> None:
    recorder = Recorder(spool, db, signer=None)
    common: dict[str, Any] = {"model": MODEL, "seed": 1234, "scheduler": "DPM++ 2M Karras"}
    common["recorder"] = recorder
    # In a diffusers pipeline's own words: each of these is also a record column.
    full = {"prompt": PROMPT, "width": 128, "height": 128, "num_inference_steps": 20, "guidance_scale": 7.0}
    record_generation(parameters=full, output=image, **common)
    record_generation(parameters={"prompt": PROMPT}, output=image, **common)  # no size
    record_generation(parameters={**full, "eta": 0.3}, output=image, **common)  # eta: not expressible
    assert recorder.close()


def test_local_records_replay_on_the_reference_backend(sqlite_url: str, tmp_path: Path) -> None:
    with ReferenceServer.running() as server:
        _record_locally(sqlite_url, tmp_path / "spool", _original(server.url))
        done = seedledger(
            "--db", sqlite_url, "--json", "audit", "--replay-backend", "reference",
            "--backend-url", server.url, "--fail-on", "none",
        )  # fmt: skip
    assert done.code == 0, done.err
    run = done.json()["id"]
    shown = seedledger("--db", sqlite_url, "audit", "show", run, "--json")
    results = {r["record_id"]: r for r in shown.json()["results"]}
    assert sorted(results) == [1, 2, 3]
    assert (results[1]["verdict"], results[1]["outcome"]) == ("identical", "pass")
    assert results[1]["replay"]["seed"] == "1234"
    assert results[2]["outcome"] == "error"
    assert "has no width, height (needs model, prompt, width, height)" in results[2]["error"]
    assert results[3]["outcome"] == "error"
    assert "cannot express the parameter(s) eta" in results[3]["error"]
    # One name for whether the policy held, in every text output.
    listed = seedledger("--db", sqlite_url, "audit", "list")
    assert listed.out.splitlines()[0].split()[-1] == "POLICY"
    assert listed.out.splitlines()[1].split()[-1] == "held"
    text = seedledger("--db", sqlite_url, "audit", "show", run).out
    assert re.search(r"^policy\s+held$", text, re.M) and re.search(r"^fail_on\s+none$", text, re.M)
    assert "policy_held" not in text
    # `show` lists the record's audit history.
    shown_record = seedledger("--db", sqlite_url, "--json", "show", "1").json()
    assert [(a["run_id"], a["outcome"]) for a in shown_record["audits"]] == [(run, "pass")]
    assert f"error (error) in run {run}" in seedledger("--db", sqlite_url, "show", "2").out
    # The report names the run's state once ("finished <time>", not "finished, finished").
    html = tmp_path / "r.html"
    assert seedledger("--db", sqlite_url, "report", "--format", "html", "--out", str(html)).code == 0
    text = html.read_text(encoding="utf-8")
    assert "finished, finished" not in text
    # the run is listed with when it started and finished (one row of "Audit runs aggregated")
    row = rf"<td><code>{run}</code></td><td>[^<]+</td><td>[^<]*\d[^<]*</td><td>finished</td>"
    assert re.search(row, text)


def test_audit_text_names_the_policy_outcome(sqlite_url: str, tmp_path: Path) -> None:
    with ReferenceServer.running() as server:
        _record_locally(sqlite_url, tmp_path / "spool", _original(server.url))
        done = seedledger(
            "--db", sqlite_url, "audit", "--ids", "1", "--replay-backend", "reference",
            "--backend-url", server.url,
        )  # fmt: skip
    assert done.code == 0, done.err
    assert re.search(r"^policy\s+held$", done.out, re.M), done.out


def test_a_protocol_that_cannot_take_the_record_says_what_it_needs(sqlite_url: str, tmp_path: Path) -> None:
    with ReferenceServer.running() as server:
        _record_locally(sqlite_url, tmp_path / "spool", _original(server.url))
    done = seedledger(
        "--db", sqlite_url, "--json", "audit", "--ids", "1", "--replay-backend", "comfyui",
        "--backend-url", "http://127.0.0.1:9/", "--fail-on", "none",
    )  # fmt: skip
    assert done.code == 0, done.err
    shown = seedledger("--db", sqlite_url, "audit", "show", done.json()["id"], "--json")
    [result] = shown.json()["results"]
    assert result["outcome"] == "error"
    assert "needs the original comfyui request" in result["error"]


def test_local_records_replay_on_an_a1111_server(sqlite_url: str, tmp_path: Path) -> None:
    server = FakeA1111()
    with live_server(server.app()) as url:
        params = {"prompt": PROMPT, "width": 64, "height": 64, "steps": 20, "cfg_scale": 7.0}
        original = request_from_params("a1111", {**params, "sampler_name": "Euler"}, seed=1234, model="m")
        with open_sync_backend("a1111", url) as backend:
            image = backend.generate(original).outputs[0].data
        recorder = Recorder(tmp_path / "spool", sqlite_url, signer=None)
        record_generation(
            model="m", seed=1234, scheduler="Euler", parameters=params, output=image, recorder=recorder
        )
        assert recorder.close()
        done = seedledger(
            "--db", sqlite_url, "--json", "audit", "--replay-backend", "a1111", "--backend-url", url,
        )  # fmt: skip
    assert done.code == 0, done.err
    [result] = seedledger("--db", sqlite_url, "audit", "show", done.json()["id"], "--json").json()["results"]
    assert (result["verdict"], result["outcome"]) == ("identical", "pass")
    # what the WebUI told about itself (this one has no /internal/sysinfo): its version
    assert result["replay"]["environment"] == {
        "source": "a1111 info",
        "app": "a1111",
        "app_version": "v1.10.1",
    }
    sent = server.payloads[-1]
    assert (sent["prompt"], sent["sampler_name"], sent["seed"], sent["steps"]) == (PROMPT, "Euler", 1234, 20)
    assert sent["override_settings"]["sd_model_checkpoint"] == "m"
