"""Fuzzing the capture pairing: what the transport and the proxy read off the wire.

Request and response bodies (arbitrary bytes, arbitrary JSON, almost-right Runware
task lists and envelopes carrying an API key) go through ``Pairer.exchange`` and
``Pairer.webhook``. Each gives records, None (not a task request) or a
CaptureParseError — never another exception — and no record keeps the key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.capture.pairing import CaptureParseError, Pairer, PendingTasks
from ledger.core.records import Source
from tests.conftest import SENTINEL_KEY

_SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
_TASK_KEYS = ["taskType", "taskUUID", "model", "positivePrompt", "seed", "numberResults", "apiKey", "width"]
_RESULT_KEYS = ["taskType", "taskUUID", "imageUUID", "imageURL", "imageBase64Data", "seed", "status", "cost"]


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, bytes]:
    uuid = draw(st.sampled_from(["t1", "t2", ""]))
    task: dict[str, Any] = {
        "taskType": "imageInference",
        "taskUUID": uuid,
        "model": "runware:101@1",
        "apiKey": SENTINEL_KEY,
    }
    for key in draw(st.lists(st.sampled_from(_TASK_KEYS), max_size=3)):
        task[key] = draw(_JSON | st.sampled_from(["getResponse", "authentication", "videoInference", 2**64]))
    tasks: Any = [{"taskType": "authentication", "apiKey": SENTINEL_KEY}, task]
    result: dict[str, Any] = {"taskType": "imageInference", "taskUUID": uuid, "imageUUID": "o1", "seed": 3}
    result["imageURL"] = f"https://cdn.example/o1.png?token={SENTINEL_KEY}"
    for key in draw(st.lists(st.sampled_from(_RESULT_KEYS), max_size=3)):
        result[key] = draw(_JSON | st.sampled_from(["processing", "success", SENTINEL_KEY, -1]))
    envelope: Any = {"data": [result]}
    if draw(st.booleans()):
        envelope["errors"] = draw(_JSON)
    if not draw(st.integers(0, 5)):
        tasks = draw(_JSON)
    if not draw(st.integers(0, 5)):
        envelope = draw(_JSON)
    request = json.dumps(tasks).encode()
    response = json.dumps(envelope).encode()
    if not draw(st.integers(0, 8)):
        request = draw(st.binary(max_size=60))
    if not draw(st.integers(0, 8)):
        response = draw(st.binary(max_size=60))
    return request, response


def _check(captured: Any) -> None:
    if captured is None:
        return
    for record in captured.records:
        assert record.seed is None or 0 <= record.seed < 2**64
        dumped = json.dumps([record.params, record.response, record.error], default=str)
        assert SENTINEL_KEY not in dumped


def test_pairing_reads_hostile_exchanges_cleanly(tmp_path_factory: Any) -> None:
    root: Path = tmp_path_factory.mktemp("fuzz-capture")
    pairer = Pairer(PendingTasks(root / "pending.json"), source=Source.PROXY)

    @settings(max_examples=300)
    @given(bodies(), st.sampled_from([None, "identity", "gzip", "br", "bogus"]))
    def run(pair: tuple[bytes, bytes], encoding: str | None) -> None:
        request, response = pair
        try:
            captured = pairer.exchange(request, response, content_encoding=encoding)
        except CaptureParseError as exc:
            assert str(exc)
        else:
            _check(captured)
        try:
            _check(pairer.webhook(response, known_secrets=(SENTINEL_KEY,)))
        except CaptureParseError as exc:
            assert str(exc)

    run()
