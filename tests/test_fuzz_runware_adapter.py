"""Fuzzing the Runware adapter's response parsing with malformed envelopes.

The hosted Runware API cannot run here, so this is the one place a mock transport
(httpx.MockTransport) stands in for it: each POST is answered with a drawn status and
body (arbitrary JSON, almost-right envelopes that pair with the real taskUUID, bytes
that are not JSON), each output URL with drawn bytes. `generate` must return outputs
with bytes and in-range seeds, or raise a BackendError with a one-line message that
never contains the API key — no other exception, no hang (polling is bounded).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from ledger.backends import GenerationRequest, RetryPolicy
from ledger.backends.http import PollPolicy
from ledger.backends.runware import RunwareBackend
from ledger.errors import BackendError, LedgerError
from tests.conftest import SENTINEL_KEY

_PNG = io.BytesIO()
Image.new("RGB", (8, 8), (1, 2, 3)).save(_PNG, "PNG")
PNG = _PNG.getvalue()

_SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
_RESULT_KEYS = [
    "taskType",
    "taskUUID",
    "imageUUID",
    "videoUUID",
    "imageURL",
    "videoURL",
    "imageBase64Data",
    "imageDataURI",
    "seed",
    "cost",
    "status",
    "NSFWContent",
]


@st.composite
def results(draw: st.DrawFn, task_uuid: str) -> dict[str, Any]:
    item: dict[str, Any] = {"taskType": "imageInference", "taskUUID": task_uuid, "imageUUID": "u1"}
    item["imageURL"] = "https://api.runware.test/out.png"
    item["seed"] = 42
    for key in draw(st.lists(st.sampled_from(_RESULT_KEYS), max_size=2)):
        item[key] = draw(
            _JSON
            | st.sampled_from(
                [
                    task_uuid,
                    base64.b64encode(PNG).decode(),
                    "data:image/png;base64," + base64.b64encode(PNG).decode(),
                    "not base64!",
                    "ftp://api.runware.test/x.png",
                    "http://169.254.169.254/latest/meta-data",
                    "processing",
                    "success",
                    2**64,
                    -1,
                    SENTINEL_KEY,
                ]
            )
        )
    if not draw(st.integers(0, 3)):
        item.pop(draw(st.sampled_from(sorted(item))))
    return item


@st.composite
def answers(draw: st.DrawFn, task_uuid: str) -> tuple[int, bytes]:
    status = draw(st.sampled_from([200] * 8 + [400, 401, 403, 404, 429, 500, 502]))
    shape = draw(st.sampled_from(["envelope"] * 6 + ["json", "bytes"]))
    if shape == "bytes":
        return status, draw(st.binary(max_size=100))
    if shape == "json":
        return status, json.dumps(draw(_JSON)).encode()
    envelope: dict[str, Any] = {}
    if draw(st.integers(0, 4)):
        envelope["data"] = draw(st.lists(results(task_uuid), min_size=1, max_size=3) | _JSON)
    if not draw(st.integers(0, 3)):
        error = {"code": draw(st.text(max_size=10)), "message": f"bad key {SENTINEL_KEY}"}
        error["taskUUID"] = task_uuid
        envelope["errors"] = draw(st.just([error]) | _JSON)
    return status, json.dumps(envelope).encode()


async def _no_sleep(_: float) -> None:
    return None


def _run(data: st.DataObject, output_type: str | None) -> None:
    request = GenerationRequest(
        protocol="runware",
        params={"taskType": "imageInference", "model": "runware:101@1", "positivePrompt": "x"},
        seed=7,
    )
    downloads = data.draw(st.sampled_from([PNG, b"", b"garbage", PNG[:20]]))

    def handle(req: httpx.Request) -> httpx.Response:
        if req.method == "GET":
            return httpx.Response(200, content=downloads, headers={"content-type": "image/png"})
        tasks = json.loads(req.content)
        task_uuid = next((t.get("taskUUID") for t in tasks if t.get("taskType") != "authentication"), "none")
        status, body = data.draw(answers(task_uuid))
        return httpx.Response(status, content=body, headers={"content-type": "application/json"})

    async def main() -> None:
        backend = RunwareBackend(
            "https://api.runware.test/v1",
            api_key=SENTINEL_KEY,
            read_env=False,
            output_type=output_type,
            retry=RetryPolicy(max_attempts=2, base_delay=0, max_delay=0),
            poll=PollPolicy(initial=0, factor=1, max_interval=0, timeout=0.5),
            transport=httpx.MockTransport(handle),
            sleep=_no_sleep,
        )
        try:
            async with asyncio.timeout(20):
                result = await backend.generate(request)
        except BackendError as exc:
            assert isinstance(exc, LedgerError)
            message = str(exc)
            assert message.strip() and "\n" not in message.strip()
            assert SENTINEL_KEY not in message
            return
        finally:
            await backend.aclose()
        assert result.outputs
        for output in result.outputs:
            assert output.data
            assert output.seed is None or 0 <= output.seed < 2**64
            assert SENTINEL_KEY not in json.dumps(dict(output.metadata), default=str)

    asyncio.run(main())


@settings(max_examples=250)
@given(st.data(), st.sampled_from([None, "URL", "base64Data", "dataURI"]))
def test_malformed_envelopes_give_outputs_or_backend_errors(
    data: st.DataObject, output_type: str | None
) -> None:
    _run(data, output_type)
