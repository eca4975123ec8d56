"""Environment differences: why a replay that is not bit-exact may have drifted.

An environment is the JSON a runtime reports: in process
(``ledger.backends.diffusers.runtime``: library versions, device, dtype, determinism
flags), or what a generation server tells about itself
(``ledger.backends.environments``: A1111's sysinfo and infotext version, ComfyUI's
``/system_stats``); ``source`` says which. An audit names only the facts known to
change numerics (:func:`differences`); ``diff`` shows every fact both records report
(:func:`compare`), marking the material ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["MATERIAL_KEYS", "SUMMARY_KEYS", "compare", "describe", "differences", "summary"]

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
    # what a generation server tells (A1111/Forge, ComfyUI)
    "app",
    "app_version",
    "xformers",
    "flags",
)

#: The facts a one-line summary shows, in order (reports, ``show``).
SUMMARY_KEYS: Final = (
    "source",
    "app",
    "app_version",
    "torch",
    "diffusers",
    "transformers",
    "xformers",
    "device",
    "device_name",
    "dtype",
    "attention",
    "cuda",
    "threads",
    "deterministic_algorithms",
    "tf32_matmul",
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


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "+".join(str(v) for v in value) or "none"
    return str(value)


def summary(environment: Mapping[str, Any] | None) -> str:
    """One line: ``source diffusers in-process, torch 2.13.0+cpu, …, device cpu``."""
    if not environment:
        return ""
    return ", ".join(
        f"{key} {_text(environment[key])}" for key in SUMMARY_KEYS if environment.get(key) is not None
    )


def compare(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """``[{"fact", "a", "b", "material"}]`` for every fact both report with different
    values: material facts first (in :data:`MATERIAL_KEYS` order), then the rest by name."""
    if not a or not b:
        return []
    common = [k for k in a if k in b and a[k] != b[k]]
    order = {key: n for n, key in enumerate(MATERIAL_KEYS)}
    common.sort(key=lambda k: (order.get(k, len(order)), k))
    return [{"fact": k, "a": a[k], "b": b[k], "material": k in order} for k in common]
