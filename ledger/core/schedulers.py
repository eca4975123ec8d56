"""Scheduler and sampler catalog: does a name inject fresh noise at each step?

Every name in ``reference/schedulers.md`` (Runware names, diffusers classes, A1111/Forge
samplers including legacy combined names such as ``"DPM++ 2M Karras"``, ComfyUI
sampler names) is classified as

- ``deterministic``: same seed, same stack ⇒ same output;
- ``stochastic``: fresh noise at each step; hosted APIs may not seed it, so a fixed
  seed may still drift (the ``stochastic-scheduler`` warning);
- ``unknown``: ``Default``/omitted and not resolvable through the model's default
  scheduler, a bare sigma schedule (``karras``) or a name not in the catalog.

The result always says why, so a report can show the reason beside the warning.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final


class SchedulerKind(StrEnum):
    DETERMINISTIC = "deterministic"
    STOCHASTIC = "stochastic"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SchedulerClass:
    """How a scheduler name behaves, and why we think so."""

    kind: SchedulerKind
    reason: str
    #: Family from the reference table, e.g. ``"euler-ancestral"``; None when unknown.
    family: str | None = None
    #: The name that was classified (after resolving ``Default``), or None.
    resolved: str | None = None

    @property
    def is_stochastic(self) -> bool:
        return self.kind is SchedulerKind.STOCHASTIC

    @property
    def is_deterministic(self) -> bool:
        return self.kind is SchedulerKind.DETERMINISTIC


D, S, U = SchedulerKind.DETERMINISTIC, SchedulerKind.STOCHASTIC, SchedulerKind.UNKNOWN

#: Families, named after the rows of the table in reference/schedulers.md.
FAMILIES: Final = (
    "euler-ancestral",
    "dpm2-ancestral",
    "dpmpp-2s-ancestral",
    "dpmpp-sde",
    "dpmpp-2m-3m-sde",
    "ddpm",
    "lcm-tcd",
    "other-sde",
    "dpm-fast-adaptive",
    "euler-heun-dpm2-lms",
    "flow-match",
    "dpmpp-ode",
    "ddim",
    "multistep-ode",
)

#: Names that mean "the model's own scheduler" (Runware ``Default``, or nothing).
DEFAULT_NAMES: Final = frozenset({"", "default"})

#: What the bundled reference backend runs for ``Default`` when the model has no known
#: default scheduler (so records made on it can be classified).
REFERENCE_DEFAULT_SCHEDULER: Final = "DPM++ 2M Karras"


def _number(options: Mapping[str, Any], key: str, default: float) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


# --- diffusers classes ------------------------------------------------------------
# Keyed by the lower-cased class name without the "Scheduler" suffix. A rule returns
# (kind, reason) from the scheduler's config options.
_Rule = Callable[[Mapping[str, Any]], tuple[SchedulerKind, str]]


def _always(kind: SchedulerKind, why: str) -> _Rule:
    return lambda _options: (kind, why)


def _algorithm_type(options: Mapping[str, Any]) -> tuple[SchedulerKind, str]:
    algo = str(options.get("algorithm_type", "dpmsolver++"))
    if algo.lower().startswith("sde"):
        return S, f"algorithm_type={algo!r} is an SDE solver: noise at each step"
    return D, f"algorithm_type={algo!r} is an ODE solver (default 'dpmsolver++')"


def _eta(default: float, what: str) -> _Rule:
    def rule(options: Mapping[str, Any]) -> tuple[SchedulerKind, str]:
        eta = _number(options, "eta", default)
        if eta > 0:
            return S, f"{what} with eta={eta:g} > 0 adds noise at each step"
        return D, f"{what} with eta=0 adds no noise"

    return rule


def _s_churn(options: Mapping[str, Any]) -> tuple[SchedulerKind, str]:
    churn = _number(options, "s_churn", 0.0)
    if churn > 0:
        return S, f"s_churn={churn:g} > 0 adds noise at each step"
    return D, "ODE step; stochastic only if s_churn > 0 (default 0)"


def _stochastic_sampling(options: Mapping[str, Any]) -> tuple[SchedulerKind, str]:
    if options.get("stochastic_sampling") is True:
        return S, "stochastic_sampling=True re-noises at each step"
    return D, "flow-match Euler step; stochastic only if stochastic_sampling=True"


_DIFFUSERS: Final[dict[str, tuple[str, _Rule]]] = {
    "eulerancestraldiscrete": ("euler-ancestral", _always(S, "ancestral sampler: noise at each step")),
    "kdpm2ancestraldiscrete": ("dpm2-ancestral", _always(S, "ancestral sampler: noise at each step")),
    "dpmsolversde": ("dpmpp-sde", _always(S, "SDE solver (Brownian tree noise)")),
    "cosinedpmsolvermultistep": ("dpmpp-2m-3m-sde", _always(S, "SDE solver: noise at each step")),
    "ddpm": ("ddpm", _always(S, "DDPM adds noise at every step with t > 0")),
    "lcm": ("lcm-tcd", _always(S, "LCM injects noise at every step but the last")),
    "tcd": ("lcm-tcd", _eta(0.3, "TCD (default eta 0.3)")),
    "cmstochasticiterative": ("lcm-tcd", _always(S, "consistency model sampling re-noises each step")),
    "sasolver": ("other-sde", _always(S, "SA-Solver is stochastic (tau=1 for t in [200, 800])")),
    "dpmsolvermultistep": ("dpmpp-ode", _algorithm_type),
    "dpmsolversinglestep": ("dpmpp-ode", _algorithm_type),
    "edmdpmsolvermultistep": ("dpmpp-ode", _algorithm_type),
    "dpmsolvermultistepinverse": ("dpmpp-ode", _algorithm_type),
    "ddim": ("ddim", _eta(0.0, "DDIM")),
    "eulerdiscrete": ("euler-heun-dpm2-lms", _s_churn),
    "heundiscrete": ("euler-heun-dpm2-lms", _s_churn),
    "kdpm2discrete": ("euler-heun-dpm2-lms", _s_churn),
    "lmsdiscrete": ("euler-heun-dpm2-lms", _s_churn),
    "edmeuler": ("euler-heun-dpm2-lms", _s_churn),
    "flowmatchheundiscrete": ("euler-heun-dpm2-lms", _s_churn),
    "flowmatcheulerdiscrete": ("flow-match", _stochastic_sampling),
    "unipcmultistep": ("multistep-ode", _always(D, "multistep ODE solver: no noise after the first")),
    "pndm": ("multistep-ode", _always(D, "multistep ODE solver: no noise after the first")),
    "deismultistep": ("multistep-ode", _always(D, "multistep ODE solver: no noise after the first")),
    "ipndm": ("multistep-ode", _always(D, "multistep ODE solver: no noise after the first")),
}

# --- sampler names (Runware, A1111/Forge, ComfyUI) -----------------------------------
# Names are normalised first (lower case; "_" and "-" become spaces; "dpmpp" becomes
# "dpm++"; "cfg pp" becomes "cfg++"), then matched in this order.

#: Sigma schedules: trailing words of legacy combined names, or bare schedule labels.
_SCHEDULES: Final = (
    "align your steps",
    "linear quadratic",
    "sgm uniform",
    "kl optimal",
    "polyexponential",
    "exponential",
    "automatic",
    "trailing",
    "uniform",
    "karras",
    "simple",
    "normal",
    "beta",
)

#: (family, pattern) for stochastic names; checked in order, first match names the family.
_STOCHASTIC: Final[tuple[tuple[str, re.Pattern[str]], ...]] = tuple(
    (family, re.compile(pattern))
    for family, pattern in (
        ("euler-ancestral", r"^euler (ancestral|a)\b"),
        ("dpm2-ancestral", r"^k?dpm ?2 (ancestral|a)\b"),
        ("dpmpp-2s-ancestral", r"^dpm\+\+ 2s (ancestral|a)\b"),
        ("other-sde", r"^res multistep ancestral|^er sde|^exp heun 2 x0 sde|^restart|^seeds|^sa solver"),
        ("dpmpp-2m-3m-sde", r"^dpm\+\+ [23]m sde"),
        ("dpmpp-sde", r"^dpm\+\+ sde"),
        ("ddpm", r"^ddpm"),
        ("lcm-tcd", r"^(lcm|tcd)\b"),
        # The generic rule from reference/schedulers.md, for names not listed above.
        (
            "",
            r"ancestral|(^|\s)a($|\s)|sde|ddpm|lcm|tcd|restart|seeds|sa solver|cmsi|stochastic",
        ),
    )
)

#: Deterministic samplers, by normalised name with any trailing schedule words removed.
_DETERMINISTIC: Final[dict[str, str]] = {
    **dict.fromkeys(
        ("euler", "euler cfg++", "heun", "heunpp2", "dpm2", "dpm 2", "lms", "exp heun 2 x0"),
        "euler-heun-dpm2-lms",
    ),
    **dict.fromkeys(("dpm++", "dpm++ 2m", "dpm++ 3m", "dpm++ 2m cfg++"), "dpmpp-ode"),
    **dict.fromkeys(("ddim", "ddim cfg++"), "ddim"),
    **dict.fromkeys(
        (
            "unipc",
            "unipc 2m",
            "unipc 3m",
            "uni pc",
            "uni pc bh2",
            "plms",
            "pndm",
            "deis",
            "ipndm",
            "ipndm v",
            "res multistep",
            "res multistep cfg++",
            "gradient estimation",
            "gradient estimation cfg++",
        ),
        "multistep-ode",
    ),
}

_A1111_BACKENDS: Final = frozenset({"a1111", "automatic1111", "forge", "sdwebui"})
_COMFY_BACKENDS: Final = frozenset({"comfyui", "comfy"})


def normalize(name: str) -> str:
    """Lower case, ``_``/``-`` as spaces, ``dpmpp`` as ``dpm++``, ``cfg pp`` as ``cfg++``."""
    text = re.sub(r"[\s_\-]+", " ", name.strip().lower()).strip()
    text = re.sub(r"\bdpmpp\b", "dpm++", text)
    return re.sub(r"\bcfg pp\b", "cfg++", text)


def split_schedule(name: str) -> tuple[str, str | None]:
    """Split a legacy combined name: ``"DPM++ 2M Karras"`` → ``("dpm++ 2m", "karras")``.

    Works on the normalised name; the sampler part is never emptied (``"DDIM"`` stays).
    """
    text = normalize(name)
    removed: list[str] = []
    changed = True
    while changed:
        changed = False
        for label in _SCHEDULES:
            if text.endswith(" " + label):
                text = text[: -len(label) - 1].rstrip()
                removed.insert(0, label)
                changed = True
                break
    return text, (" ".join(removed) or None)


def _dpm_fast_adaptive(
    name: str, base: str, backend: str | None, options: Mapping[str, Any]
) -> SchedulerClass:
    if backend is None:
        # A1111 spells "DPM fast"; ComfyUI spells "dpm_fast". Guess from the spelling.
        backend = "comfyui" if "_" in name and name == name.lower() else "a1111"
        guessed = f" (backend guessed as {backend} from the spelling)"
    else:
        guessed = ""
    backend = backend.lower()
    if backend in _A1111_BACKENDS:
        eta = _number(options, "eta", 1.0)
        if eta > 0:
            why = f"A1111 runs {base} with eta_ancestral={eta:g} (default 1.0): noise at each step"
            return SchedulerClass(S, why + guessed, "dpm-fast-adaptive", name)
        return SchedulerClass(
            D, f"A1111 {base} with eta=0 adds no noise" + guessed, "dpm-fast-adaptive", name
        )
    if backend in _COMFY_BACKENDS:
        why = f"ComfyUI runs {base} with eta=0: no step noise"
        return SchedulerClass(D, why + guessed, "dpm-fast-adaptive", name)
    why = f"{base} is backend-dependent: stochastic on A1111, deterministic on ComfyUI; backend {backend!r}"
    return SchedulerClass(U, why, "dpm-fast-adaptive", name)


def _classify_name(name: str, backend: str | None, options: Mapping[str, Any]) -> SchedulerClass:
    stripped = name.strip()
    # A diffusers class name: one word, optionally ending in "Scheduler".
    if stripped and " " not in stripped and "_" not in stripped:
        key = stripped.lower().removesuffix("scheduler")
        if key in _DIFFUSERS:
            family, rule = _DIFFUSERS[key]
            kind, why = rule(options)
            return SchedulerClass(kind, why, family, stripped)
    base, schedule = split_schedule(stripped)
    if base in ("dpm fast", "dpm adaptive"):
        return _dpm_fast_adaptive(stripped, base, backend, options)
    for family, pattern in _STOCHASTIC:
        if pattern.search(base):
            why = f"{base!r} injects fresh noise at each step (ancestral/SDE/DDPM/LCM-style sampler)"
            return SchedulerClass(S, why, family or None, stripped)
    if base in _DETERMINISTIC:
        family = _DETERMINISTIC[base]
        if family == "ddim" and _number(options, "eta", 0.0) > 0:
            return SchedulerClass(
                S, f"DDIM with eta={_number(options, 'eta', 0.0):g} > 0 adds noise", family, stripped
            )
        sched = f" with the {schedule!r} sigma schedule" if schedule else ""
        return SchedulerClass(D, f"{base!r}{sched} is an ODE sampler: no step noise", family, stripped)
    if base == "ddim uniform" or (base == "ddim" and schedule == "uniform"):
        return SchedulerClass(
            D, "ComfyUI ddim_uniform schedule, used with deterministic DDIM", "ddim", stripped
        )
    if not base or base in _SCHEDULES:
        why = f"{stripped!r} names a sigma schedule, not a sampler; classify the sampler instead"
        return SchedulerClass(U, why, None, stripped)
    return SchedulerClass(U, f"{stripped!r} is not in the scheduler catalog", None, stripped)


def classify(
    name: str | None,
    backend: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> SchedulerClass:
    """Classify a scheduler/sampler name as deterministic, stochastic or unknown.

    ``backend`` (``"runware"``, ``"a1111"``, ``"comfyui"``, …) decides backend-dependent
    names (``DPM fast``/``DPM adaptive``). ``options`` carries scheduler settings that
    change the answer: ``algorithm_type``, ``eta``, ``s_churn``, ``stochastic_sampling``;
    and, for ``Default`` or a missing name, ``model`` (an AIR whose catalog default
    scheduler is used) or ``default_scheduler`` (a name to use directly). On the
    ``reference`` backend an unresolved default is its fixed fallback,
    :data:`REFERENCE_DEFAULT_SCHEDULER`.
    """
    opts: Mapping[str, Any] = options or {}
    if name is None or normalize(name) in DEFAULT_NAMES:
        shown = "omitted" if name is None or not name.strip() else repr(name.strip())
        default = opts.get("default_scheduler")
        source = "default_scheduler option"
        if not isinstance(default, str) or not default.strip():
            model = opts.get("model")
            default = None
            if isinstance(model, str) and model.strip():
                from ledger.core.models import default_scheduler  # core-internal, avoids a cycle

                default = default_scheduler(model)
                source = f"default scheduler of {model}"
        if (default is None or not default.strip()) and (backend or "").lower() == "reference":
            default, source = REFERENCE_DEFAULT_SCHEDULER, "the reference backend's default"
        if default is None or normalize(default) in DEFAULT_NAMES:
            return SchedulerClass(U, f"scheduler {shown}: the model's default scheduler is not known")
        inner = _classify_name(default, backend, opts)
        return SchedulerClass(
            inner.kind,
            f"scheduler {shown} resolved to {default!r} ({source}): {inner.reason}",
            inner.family,
            inner.resolved,
        )
    return _classify_name(name, backend, opts)


__all__ = [
    "DEFAULT_NAMES",
    "FAMILIES",
    "REFERENCE_DEFAULT_SCHEDULER",
    "SchedulerClass",
    "SchedulerKind",
    "classify",
    "normalize",
    "split_schedule",
]
