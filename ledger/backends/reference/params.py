"""Task parameter checks and the reference server's error items (one shape for REST and WebSocket)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


class TaskError(Exception):
    def __init__(self, code: str, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.parameter = code, message, parameter


def error_item(
    code: str,
    message: str,
    *,
    task: Mapping[str, Any] | None = None,
    parameter: str | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if parameter:
        err["parameter"] = parameter
    if task is not None:
        if isinstance(task.get("taskType"), str):
            err["taskType"] = task["taskType"]
        if isinstance(task.get("taskUUID"), str):
            err["taskUUID"] = task["taskUUID"]
    if status:
        err["status"] = status
    err["documentation"] = "seedledger reference server: a reference backend for demos and tests, not a model"
    return err


# --- parameter checks -------------------------------------------------------------
def int_param(task: Mapping[str, Any], key: str, low: int, high: int, default: int | None) -> int | None:
    value = task.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise TaskError("invalidParameter", f"{key} must be an integer", key)
    if not low <= value <= high:
        raise TaskError("invalidParameter", f"{key} must be between {low} and {high}", key)
    return value


def num_param(task: Mapping[str, Any], key: str, low: float, high: float, default: float) -> float:
    value = task.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TaskError("invalidParameter", f"{key} must be a number", key)
    if not low <= value <= high:
        raise TaskError("invalidParameter", f"{key} must be between {low:g} and {high:g}", key)
    return float(value)


def str_param(
    task: Mapping[str, Any], key: str, *, required: bool = False, default: str | None = None
) -> str | None:
    value = task.get(key)
    if value is None:
        if required:
            raise TaskError("missingParameter", f"{key} is required", key)
        return default
    if not isinstance(value, str):
        raise TaskError("invalidParameter", f"{key} must be a string", key)
    if required and not value.strip():
        raise TaskError("invalidParameter", f"{key} must not be empty", key)
    return value


def bool_param(task: Mapping[str, Any], key: str) -> bool:
    value = task.get(key, False)
    if not isinstance(value, bool):
        raise TaskError("invalidParameter", f"{key} must be true or false", key)
    return value


def choice_param(task: Mapping[str, Any], key: str, choices: Mapping[str, str], default: str) -> str:
    value = str_param(task, key, default=default)
    assert value is not None
    canon = choices.get(value.lower())
    if canon is None:
        raise TaskError("invalidParameter", f"{key} must be one of {', '.join(choices.values())}", key)
    return canon


def envelope_error(code: str, message: str, *, task_type: str | None = None) -> dict[str, Any]:
    err = error_item(code, message)
    if task_type:
        err["taskType"] = task_type
    return {"errors": [err]}
