"""Drive an official Runware SDK, unchanged, on its default WebSocket transport.

Run with the Python of an SDK venv (``runware`` = legacy, ``runware-sdk`` = new; both
install the module ``runware``), never with the project's: it imports nothing from
seedledger. ``python sdk_client.py URL API_KEY PLAN.json``: each case of the plan is
one task; one JSON line per result the SDK handed back (``case``, ``taskUUID``,
``imageUUID``, ``seed``) or per failed case (``case``, ``error``) goes to stdout.
A case with ``"repeat": N`` runs N times concurrently (the kill test keeps tasks in
flight with it).
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from importlib.metadata import distribution
from typing import Any


def _which() -> str:
    from importlib.metadata import PackageNotFoundError

    try:
        distribution("runware-sdk")
        return "new"
    except PackageNotFoundError:
        return "legacy"


def emit(value: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def _error_code(exc: BaseException) -> str:
    for attr in ("code", "error_data"):
        value = getattr(exc, attr, None)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict) and value.get("code"):
            return str(value["code"])
    return type(exc).__name__


async def run_new(url: str, key: str, cases: list[dict[str, Any]]) -> None:
    from runware import Runware

    async with Runware(api_key=key, ws_base_url=url) as client:

        async def one(case: dict[str, Any]) -> None:
            params = dict(case["params"])
            params.setdefault("taskType", "imageInference")
            params["taskUUID"] = str(uuid.uuid4())
            try:
                results = await client.run(params)
            except Exception as exc:
                emit({"case": case["name"], "taskUUID": params["taskUUID"], "error": _error_code(exc)})
                print(f"{case['name']}: {type(exc).__name__}: {exc}", file=sys.stderr)
                return
            for item in results:
                got = dict(item)
                emit(
                    {
                        "case": case["name"],
                        "taskUUID": got.get("taskUUID"),
                        "imageUUID": got.get("imageUUID"),
                        "seed": got.get("seed"),
                    }
                )

        await asyncio.gather(*(one(c) for c in cases for _ in range(int(c.get("repeat", 1)))))


async def run_legacy(url: str, key: str, cases: list[dict[str, Any]]) -> None:
    from runware import IImageInference, Runware

    client = Runware(api_key=key, url=url)
    await client.connect()

    async def one(case: dict[str, Any]) -> None:
        params = dict(case["params"])
        params["taskUUID"] = str(uuid.uuid4())
        try:
            answer = await client.imageInference(requestImage=IImageInference(**params))
            if not isinstance(answer, list):  # async: acknowledged, then polled with getResponse
                answer = await client.getResponse(
                    taskUUID=params["taskUUID"], numberResults=params.get("numberResults", 1)
                )
        except Exception as exc:
            emit({"case": case["name"], "taskUUID": params["taskUUID"], "error": _error_code(exc)})
            return
        for image in answer:
            emit(
                {
                    "case": case["name"],
                    "taskUUID": getattr(image, "taskUUID", None),
                    "imageUUID": getattr(image, "imageUUID", None),
                    "seed": getattr(image, "seed", None),
                }
            )

    try:
        await asyncio.gather(*(one(c) for c in cases for _ in range(int(c.get("repeat", 1)))))
    finally:
        await client.disconnect()


def main() -> None:
    url, key, plan = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(plan, encoding="utf-8") as handle:
        cases = json.load(handle)
    runner = run_new if _which() == "new" else run_legacy
    asyncio.run(runner(url, key, cases))


if __name__ == "__main__":
    main()
