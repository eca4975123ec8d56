"""Builders for test data in the real Runware shapes."""

from __future__ import annotations

import uuid
from typing import Any

from ledger.core.records import Modality, NewRecord, SeedOrigin


def runware_task(**overrides: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "taskType": "imageInference",
        "taskUUID": str(uuid.uuid4()),
        "model": "runware:101@1",
        "positivePrompt": "a lighthouse at dusk",
        "negativePrompt": "blurry",
        "width": 512,
        "height": 512,
        "steps": 25,
        "CFGScale": 7.5,
        "scheduler": "DPM++ 2M Karras",
        "outputFormat": "PNG",
    }
    task.update(overrides)
    return task


def runware_result(task: dict[str, Any], seed: int | None, **overrides: Any) -> dict[str, Any]:
    image_uuid = str(uuid.uuid4())
    result: dict[str, Any] = {
        "taskType": task["taskType"],
        "taskUUID": task["taskUUID"],
        "imageUUID": image_uuid,
        "imageURL": f"https://im.runware.example/image/{image_uuid}.png",
    }
    if seed is not None:
        result["seed"] = seed
    result.update(overrides)
    return result


def exchange(seed: int, **task_overrides: Any) -> dict[str, Any]:
    """One seeded task and its single result, as a `seedledger record` document."""
    task = runware_task(seed=seed, **task_overrides)
    return {"request": [task], "response": {"data": [runware_result(task, seed)]}}


def new_record(seed: int | None = 42, **overrides: Any) -> NewRecord:
    values: dict[str, Any] = {
        "backend": "runware",
        "task_type": "imageInference",
        "modality": Modality.IMAGE,
        "model": "runware:101@1",
        "seed": seed,
        "seed_origin": SeedOrigin.REQUEST if seed is not None else SeedOrigin.UNKNOWN,
        "scheduler": "DPM++ 2M Karras",
        "prompt": "a lighthouse at dusk",
        "width": 512,
        "height": 512,
        "steps": 25,
        "cfg_scale": 7.5,
        "params": {"positivePrompt": "a lighthouse at dusk"},
        "task_uuid": str(uuid.uuid4()),
    }
    values.update(overrides)
    return NewRecord(**values)
