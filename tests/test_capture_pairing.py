"""The one pairing module: tasks and results matched by taskUUID, pending tasks,
errors, secrets, outputs."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

from ledger.capture.entries import as_dict, decode_entry, encode_entry
from ledger.capture.pairing import Pairer, PendingTasks, decode_body, secrets_from_headers
from ledger.core.records import Status
from tests.conftest import SENTINEL_KEY


def task(**extra: Any) -> dict[str, Any]:
    return {
        "taskType": "imageInference",
        "taskUUID": str(uuid.uuid4()),
        "model": "runware:101@1",
        "positivePrompt": "p",
        "width": 64,
        "height": 64,
        **extra,
    }


def result(t: dict[str, Any], seed: int, **extra: Any) -> dict[str, Any]:
    return {
        "taskType": t["taskType"],
        "taskUUID": t["taskUUID"],
        "imageUUID": str(uuid.uuid4()),
        "seed": seed,
        **extra,
    }


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


def test_results_in_any_order_are_paired_by_task(tmp_path: Path) -> None:
    a, b = task(numberResults=2), task(seed=9)
    ra1, ra2, rb = result(a, 1), result(a, 2), result(b, 9)
    pairer = Pairer(PendingTasks(tmp_path / "p.json"))
    captured = pairer.exchange(body([a, b]), body({"data": [ra2, rb, ra1]}))
    assert captured is not None
    got = {(r.task_uuid, r.output_uuid, r.seed) for r in captured.records}
    assert got == {
        (a["taskUUID"], ra1["imageUUID"], 1),
        (a["taskUUID"], ra2["imageUUID"], 2),
        (b["taskUUID"], rb["imageUUID"], 9),
    }
    assert len(pairer.pending) == 0


def test_request_level_errors_record_nothing_and_leave_nothing_pending(tmp_path: Path) -> None:
    pairer = Pairer(PendingTasks(tmp_path / "p.json"))
    t = task()
    captured = pairer.exchange(
        body([t]), body({"errors": [{"code": "rateLimitExceeded", "message": "slow down"}]})
    )
    assert captured is not None and captured.records == []
    assert len(pairer.pending) == 0


def test_task_error_is_a_failed_record_without_secrets(tmp_path: Path) -> None:
    pairer = Pairer(PendingTasks(tmp_path / "p.json"))
    t = task()
    error = {
        "taskUUID": t["taskUUID"],
        "code": "invalidModel",
        "message": f"bad model for key {SENTINEL_KEY}",
    }
    auth = {"taskType": "authentication", "apiKey": SENTINEL_KEY}
    captured = pairer.exchange(body([auth, t]), body({"errors": [error]}))
    assert captured is not None
    (record,) = captured.records
    assert (record.status, record.error_code) == (Status.FAILED, "invalidModel")
    payload = encode_entry(captured.records, captured.outputs, known_secrets=captured.known_secrets)
    assert SENTINEL_KEY.encode() not in payload
    assert as_dict(decode_entry(payload).records[0])["error"] == "bad model for key [redacted]"


def test_async_task_is_pending_until_polling_delivers_it_and_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "pending.jsonl"
    video = task(taskType="videoInference", numberResults=2)
    first = Pairer(PendingTasks(path)).exchange(
        body([video]), body({"data": [{"taskType": "videoInference", "taskUUID": video["taskUUID"]}]})
    )
    assert first is not None and first.records == []
    restarted = Pairer(PendingTasks(path))  # a new process
    poll = [{"taskType": "getResponse", "taskUUID": video["taskUUID"]}]
    processing = {"data": [{"taskUUID": video["taskUUID"], "status": "processing"}]}
    assert restarted.exchange(body(poll), body(processing)).records == []  # type: ignore[union-attr]
    one = {**result(video, 5), "videoUUID": "v1", "status": "success"}
    del one["imageUUID"]
    got = restarted.exchange(body(poll), body({"data": [one]}))
    assert got is not None and [(r.seed, r.output_uuid) for r in got.records] == [(5, "v1")]
    assert len(restarted.pending) == 1  # one of two outputs so far
    two = {**one, "videoUUID": "v2", "seed": 6}
    got = restarted.exchange(body(poll), body({"data": [one, two]}))
    assert got is not None and {r.output_uuid for r in got.records} == {"v1", "v2"}
    assert len(restarted.pending) == 0


def test_outputs_to_fingerprint(tmp_path: Path) -> None:
    pairer = Pairer(PendingTasks(None))
    t1, t2, t3 = task(), task(), task()
    png = b"\x89PNG fake"
    data = [
        result(t1, 1, imageBase64Data=base64.b64encode(png).decode()),
        result(t2, 2, imageDataURI="data:image/png;base64," + base64.b64encode(png).decode()),
        result(t3, 3, imageURL="https://im.example/x.png?X-Amz-Signature=SIGVALUE"),
    ]
    captured = pairer.exchange(body([t1, t2, t3]), body({"data": data}))
    assert captured is not None
    by_task = {r.task_uuid: captured.outputs.get(r.idempotency_key or "") for r in captured.records}
    assert by_task[t1["taskUUID"]].data == png  # type: ignore[union-attr]
    assert by_task[t2["taskUUID"]].data == png  # type: ignore[union-attr]
    decoded = decode_entry(encode_entry(captured.records, captured.outputs))
    assert len(decoded.outputs) == 2  # the signed URL is a credential: not spooled
    responses = [as_dict(r)["response"] for r in decoded.records]
    assert all('"imageBase64Data"' not in r for r in responses)  # payloads are not kept
    assert all("SIGVALUE" not in r for r in responses)  # the URL signature is removed


def test_not_runware_traffic_is_ignored(tmp_path: Path) -> None:
    pairer = Pairer(PendingTasks(None))
    assert pairer.exchange(b'{"hello": 1}', b"{}") is None
    assert (
        pairer.exchange(body([{"taskType": "ping", "ping": True}]), body({"data": [{"pong": True}]})) is None
    )


def test_helpers() -> None:
    import gzip

    assert decode_body(gzip.compress(b"abc"), "gzip") == b"abc"
    assert decode_body(b"abc", None) == b"abc"
    assert secrets_from_headers([("Authorization", f"Bearer {SENTINEL_KEY}"), ("X-Other", "x")]) == (
        SENTINEL_KEY,
    )


def test_pending_journal_compacts_and_survives_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "pending.jsonl"
    pending = PendingTasks(path)
    tasks = [task(taskType="videoInference") for _ in range(1500)]
    for t in tasks:
        pending.add(t)
    for t in tasks[:1400]:
        pending.delivered(t["taskUUID"], 1, False)
    assert len(pending) == 100
    assert len(path.read_text().splitlines()) < 1500  # compacted, not 2,900 lines
    with path.open("a") as handle:
        handle.write('{"k": "torn", "v": {"ta')  # a kill mid-append
    reloaded = PendingTasks(path)
    assert len(reloaded) == 100
    assert reloaded.get(tasks[-1]["taskUUID"]) == tasks[-1]
