"""Environment differences: why a replay that is not bit-exact may have drifted.

An environment is the JSON a runtime reports (``ledger.backends.diffusers.runtime``):
library versions, device, dtype, determinism flags. Only the facts known to change
numerics are compared; the rest (Python patch version, platform string) is shown,
never blamed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["MATERIAL_KEYS", "describe", "differences"]

#: Facts that change floating-point results when they differ between two runs.
MATERIAL_KEYS: Final = (
    "device",
    "device_name",
    "compute_capability",
    "dtype",
    "torch",
    "diffusers",
    "transformers",
    "cuda",
    "cudnn",
    "attention",
    "deterministic_algorithms",
    "cudnn_deterministic",
    "cudnn_benchmark",
    "tf32_matmul",
    "tf32_cudnn",
    "threads",
    "generator_device",
)


def differences(
    recorded: Mapping[str, Any] | None, replayed: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """``[{"fact", "recorded", "replay"}]`` for each material fact that differs (a fact
    one side does not report is not a difference)."""
    if not recorded or not replayed:
        return []
    out = []
    for key in MATERIAL_KEYS:
        if key in recorded and key in replayed and recorded[key] != replayed[key]:
            out.append({"fact": key, "recorded": recorded[key], "replay": replayed[key]})
    return out


def describe(diffs: list[dict[str, Any]]) -> str:
    """One line: ``dtype float32 → bfloat16; threads 2 → 1``."""
    return "; ".join(f"{d['fact']} {d['recorded']} → {d['replay']}" for d in diffs)
