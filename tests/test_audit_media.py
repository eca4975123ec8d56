"""Audits of video, audio and 3D records against the reference server: deterministic
schedulers pass, stochastic ones drift, a model revision fails; none ends in error."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.backends import GenerationRequest, request_from_params
from ledger.backends.reference.server import ReferenceServer
from ledger.core.records import Source
from ledger.store import Ledger
from tests.conftest import SENTINEL_KEY
from tests.test_audit import REVISED_MODEL, audit, by_record, make_originals
from tests.test_capture import AUTH, make_recorder, running_proxy

TASKS: dict[str, dict[str, Any]] = {
    "video": {"taskType": "videoInference", "width": 64, "height": 64, "duration": 2, "fps": 12},
    "audio": {"taskType": "audioInference", "duration": 5},
    "3d": {"taskType": "3dInference", "outputFormat": "GLB"},
}


def media_request(kind: str, scheduler: str, model: str = "runware:101@1") -> GenerationRequest:
    task = {
        **TASKS[kind],
        "model": model,
        "positivePrompt": "waves on rocks",
        "scheduler": scheduler,
        "deliveryMethod": "sync",
    }
    return request_from_params("reference", task, seed=4242)


@pytest.mark.parametrize("kind", ["video", "audio", "3d"])
def test_media_audits_pass_drift_and_fail(ledger: Ledger, kind: str) -> None:
    with ReferenceServer.running() as original:
        ids = make_originals(
            ledger,
            original.url,
            [
                media_request(kind, "Euler"),
                media_request(kind, "Euler a"),
                media_request(kind, "Euler", REVISED_MODEL),
            ],
        )
    with ReferenceServer.running(model_revision={REVISED_MODEL: 2}) as updated:
        outcome = audit(ledger, updated.url)
    results = by_record(ledger, outcome.run.id)
    deterministic, stochastic, revised = (results[i] for i in ids)
    assert (deterministic.verdict, deterministic.outcome) == ("identical", "pass"), deterministic.error
    drift = {("similar", "expected-drift")}
    if kind == "audio":  # fresh noise moves Chromaprint little: some draws stay near-identical
        drift.add(("near-identical", "pass"))
    assert (stochastic.verdict, stochastic.outcome) in drift, stochastic.distances
    assert revised.verdict in ("similar", "different") and revised.outcome == "fail"
    assert not any(r.outcome == "error" for r in results.values())
    assert deterministic.distances["modality"] == ("3d" if kind == "3d" else kind)


def test_media_captured_through_the_proxy_audit_pass_drift_and_fail(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Video, audio and 3D results recorded by the proxy (URL outputs downloaded and
    fingerprinted by the writer; a 3dInference result is one record, its file in
    outputs.files), then audited against a server whose one model was revised."""
    plan = [("video", "Euler"), ("audio", "Euler a"), ("3d", "Euler"), ("3d", "Euler a")]
    tasks = [dict(media_request(k, s).params, taskUUID=str(uuid.uuid4()), seed=4242) for k, s in plan]
    tasks.append(
        dict(media_request("video", "Euler", REVISED_MODEL).params, taskUUID=str(uuid.uuid4()), seed=7)
    )
    monkeypatch.setenv("RUNWARE_API_KEY", SENTINEL_KEY)  # captured records replay as runware
    recorder = make_recorder(tmp_path, sqlite_url, source=Source.PROXY)
    with (
        ReferenceServer.running() as original,
        running_proxy(original.base_url, recorder) as proxy,
        httpx.Client(base_url=proxy, headers=AUTH, timeout=120) as client,
    ):
        body = client.post("/v1", content=json.dumps(tasks).encode()).json()
        assert not body.get("errors") and len(body["data"]) == len(tasks)
        assert recorder.close(drain_timeout=60)
    with Ledger.open(sqlite_url) as ledger:
        records = {r.task_uuid: r for r in ledger.query()}
        assert len(records) == len(tasks)
        mesh = records[tasks[2]["taskUUID"]]
        assert str(mesh.modality) == "3d" and mesh.output_uuid
        for task in tasks:
            fp = ledger.fingerprint_of(records[task["taskUUID"]].id)
            assert fp.modality == str(records[task["taskUUID"]].modality)
        with ReferenceServer.running(model_revision={REVISED_MODEL: 2}) as updated:
            outcome = audit(ledger, updated.url)
        results = by_record(ledger, outcome.run.id)
    got = [
        (results[records[t["taskUUID"]].id].verdict, results[records[t["taskUUID"]].id].outcome)
        for t in tasks
    ]
    assert got[0] == ("identical", "pass")
    assert got[1] in {("similar", "expected-drift"), ("near-identical", "pass")}  # audio, see above
    assert got[2] == ("identical", "pass")
    assert got[3] == ("similar", "expected-drift")
    assert got[4][1] == "fail"
