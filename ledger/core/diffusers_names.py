"""Scheduler names across ecosystems: Runware / A1111 / ComfyUI ↔ diffusers.

A record made on Runware or A1111 names its sampler the way that tool does
(``DPM++ 2M Karras``, ``Euler a``); a diffusers replay needs a scheduler class and
config flags. The table follows the cross-naming in reference/schedulers.md
(https://huggingface.co/docs/diffusers/api/schedulers/overview): Karras →
``use_karras_sigmas``, ``exponential``/``beta`` → ``use_exponential_sigmas``/
``use_beta_sigmas``, SDE variants of DPM-Solver → ``algorithm_type``. Pure: no torch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RECORD_META_KEYS", "SchedulerMapping", "name_for_diffusers", "to_diffusers"]

#: Keys of a diffusers record's params that describe the call rather than being call
#: arguments (written by ``record_pipeline``, skipped by the replay backend).
RECORD_META_KEYS = frozenset(
    {"pipeline", "scheduler_class", "scheduler_config", "generator", "model_info", "model_hash", "adapters",
     "unrecorded_arguments"}
)  # fmt: skip


@dataclass(frozen=True)
class SchedulerMapping:
    """A diffusers scheduler class and the config flags one foreign name means."""

    name: str  # the name as recorded
    class_name: str
    config: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        flags = ", ".join(f"{k}={v!r}" for k, v in sorted(self.config.items()))
        return f"{self.name} → {self.class_name}" + (f"({flags})" if flags else "")


# Base sampler names (lower case, separators folded) → class and flags.
_BASE: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler a": ("EulerAncestralDiscreteScheduler", {}),
    "euler ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "dpm2": ("KDPM2DiscreteScheduler", {}),
    "dpm2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "plms": ("PNDMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "deis": ("DEISMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),
    "tcd": ("TCDScheduler", {}),
    "dpm++ 2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpm++ 3m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 3}),
    "dpm++ 2m sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    "dpm++ 3m sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 3}),
    "dpm++ 2s a": ("DPMSolverSinglestepScheduler", {}),
    "dpm++ sde": ("DPMSolverSDEScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
}
# Schedule suffixes → sigma flags.
_SCHEDULES: dict[str, dict[str, Any]] = {
    "karras": {"use_karras_sigmas": True},
    "exponential": {"use_exponential_sigmas": True},
    "beta": {"use_beta_sigmas": True},
    "trailing": {"timestep_spacing": "trailing"},
    "sgm uniform": {"timestep_spacing": "trailing"},
    "simple": {"timestep_spacing": "trailing"},
}
_COMFY = {
    "euler_ancestral": "euler a",
    "dpmpp_2m": "dpm++ 2m",
    "dpmpp_2m_sde": "dpm++ 2m sde",
    "dpmpp_3m_sde": "dpm++ 3m sde",
    "dpmpp_sde": "dpm++ sde",
    "dpmpp_2s_ancestral": "dpm++ 2s a",
    "dpm_2": "dpm2",
    "dpm_2_ancestral": "dpm2 a",
    "uni_pc": "unipc",
}


def _fold(name: str) -> str:
    return re.sub(r"[\s_]+", " ", name.strip().lower())


def to_diffusers(name: str | None, schedule: str | None = None) -> SchedulerMapping | None:
    """The diffusers class for a recorded scheduler name (with an optional separate
    schedule, as A1111's ``Schedule type``), or None when the name is unknown.

    A diffusers class name maps to itself; ``DPMSolverMultistepScheduler`` and the
    like keep no flags (the record's own config says them)."""
    if not name:
        return None
    stripped = name.strip()
    if stripped.endswith("Scheduler") and re.fullmatch(r"[A-Za-z0-9]+", stripped):
        return SchedulerMapping(stripped, stripped)
    folded = _fold(_COMFY.get(stripped.lower(), stripped))
    flags: dict[str, Any] = {}
    for suffix, extra in sorted(_SCHEDULES.items(), key=lambda kv: -len(kv[0])):
        if folded.endswith(" " + suffix):
            folded = folded[: -len(suffix) - 1]
            flags.update(extra)
            break
    if schedule:
        flags.update(_SCHEDULES.get(_fold(schedule), {}))
    base = _BASE.get(folded)
    if base is None:
        return None
    class_name, config = base
    return SchedulerMapping(name, class_name, {**config, **flags})


def name_for_diffusers(class_name: str, config: Mapping[str, Any]) -> str:
    """The A1111/Runware-style name for a diffusers scheduler and config (best effort;
    falls back to the class name)."""
    algorithm = str(config.get("algorithm_type", ""))
    order = config.get("solver_order")
    best: str | None = None
    for name, (cls, flags) in _BASE.items():
        if cls != class_name:
            continue
        if class_name == "DPMSolverMultistepScheduler" and (
            flags.get("algorithm_type") != (algorithm or "dpmsolver++")
            or flags.get("solver_order", order) != order
        ):
            continue
        best = best or name
    if best is None:
        return class_name
    pretty = {
        "dpm++": "DPM++",
        "dpm2": "DPM2",
        "sde": "SDE",
        "ddim": "DDIM",
        "ddpm": "DDPM",
        "lms": "LMS",
        "unipc": "UniPC",
        "deis": "DEIS",
        "lcm": "LCM",
        "tcd": "TCD",
        "pndm": "PNDM",
        "plms": "PLMS",
    }
    words = [
        pretty.get(w, w.upper() if len(w) == 2 and w[0].isdigit() else w.capitalize() if w != "a" else "a")
        for w in best.split()
    ]
    text = " ".join(words)
    if config.get("use_karras_sigmas"):
        text += " Karras"
    elif config.get("use_exponential_sigmas"):
        text += " Exponential"
    elif config.get("use_beta_sigmas"):
        text += " Beta"
    return text
