"""One sampler pass of a ComfyUI graph, whatever node family draws it.

- ``KSampler``-like nodes (``KSampler``, ``KSamplerAdvanced``, Impact/Inspire detailers
  such as ``FaceDetailer``, ``UltimateSDUpscale`` …): a seed input (``seed`` /
  ``noise_seed``), ``steps`` and ``sampler_name`` on the node itself.
- ``SamplerCustom``: ``noise_seed``, ``cfg`` and ``add_noise`` on the node, the sampler
  from its ``sampler`` link (``KSamplerSelect``), steps and schedule from ``sigmas``
  (``BasicScheduler``, ``SDTurboScheduler``, ``KarrasScheduler`` …).
- ``SamplerCustomAdvanced``: the seed from its ``noise`` link (``RandomNoise``;
  ``DisableNoise`` adds none), CFG, model and prompts from its ``guider``
  (``CFGGuider``, ``DualCFGGuider``, ``BasicGuider``).

A pass says whether it adds noise (``KSamplerAdvanced add_noise: disable``,
``SamplerCustom add_noise: false`` and ``DisableNoise`` do not): the seed of a pass that
adds none draws nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ledger.core.comfy.graph import Graph
from ledger.core.seeds import parse_seed
from ledger.errors import InvalidInputError, InvalidSeedError

_CUSTOM: Final = frozenset({"SamplerCustom", "SamplerCustomAdvanced"})
_SEED_INPUTS: Final = ("seed", "noise_seed")
_EXTRA: Final = ("add_noise", "start_at_step", "end_at_step", "return_with_leftover_noise", "upscale_by")


@dataclass(frozen=True)
class ComfySampler:
    node_id: str
    class_type: str
    seed: int | None
    steps: int | None
    cfg: float | None
    sampler_name: str | None
    scheduler: str | None
    denoise: float | None
    extra: Mapping[str, Any] = field(default_factory=dict)
    adds_noise: bool = True
    #: Links the pass reads its model / prompts / input from (None when absent).
    model_link: Any = None
    positive_link: Any = None
    negative_link: Any = None
    latent_link: Any = None
    image_link: Any = None

    def as_dict(self) -> dict[str, Any]:
        out = {
            "node": self.node_id,
            "class_type": self.class_type,
            "seed": self.seed,
            "steps": self.steps,
            "cfg": self.cfg,
            "sampler_name": self.sampler_name,
            "scheduler": self.scheduler,
            "denoise": self.denoise,
            "adds_noise": self.adds_noise,
        }
        out.update(self.extra)
        return out


def is_sampler(graph: Graph, node_id: str) -> bool:
    """A node that runs a sampling pass (see the module docstring)."""
    kind = graph.cls(node_id)
    if kind in _CUSTOM:
        return True
    inputs = graph.inputs(node_id)
    return any(k in inputs for k in _SEED_INPUTS) and "steps" in inputs and "sampler_name" in inputs


def plain_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def to_int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if not plain_int(value):
        raise InvalidInputError(f"{where}: expected an integer, got {type(value).__name__}")
    return int(value)


def to_number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{where}: expected a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise InvalidInputError(f"{where}: {value!r} is not a finite number")
    return number


def to_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _seed(graph: Graph, node_id: str, raw: Any, key: str) -> int | None:
    where = f"ComfyUI node {node_id} ({graph.cls(node_id)}).{key}"
    value = graph.value(raw, (key, "seed", "noise_seed"), where)
    try:
        return parse_seed(value) if value is not None else None
    except InvalidSeedError as exc:
        raise InvalidSeedError(f"{where}: {exc}") from None


def _adds_noise(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("disable", "disabled", "false")
    return value is not False


def read_pass(graph: Graph, node_id: str) -> ComfySampler:
    """The settings of the sampler pass at ``node_id`` (``is_sampler`` must hold)."""
    kind, inputs = graph.cls(node_id), graph.inputs(node_id)
    here = f"ComfyUI node {node_id}"

    def val(key: str, source: str = node_id) -> Any:
        return graph.value(graph.inputs(source).get(key), (key,), f"{here} ({kind}).{key}")

    extra = {key: val(key) for key in _EXTRA if key in inputs}
    if kind in _CUSTOM:
        return _custom_pass(graph, node_id, extra)
    seed_key = next(k for k in _SEED_INPUTS if k in inputs)
    model, positive, negative = inputs.get("model"), inputs.get("positive"), inputs.get("negative")
    pipe = _pipe(graph, node_id)
    if pipe is not None:  # Impact/Inspire pipes carry model and prompts in one link
        model = model or pipe.get("model")
        positive = positive or pipe.get("positive")
        negative = negative or pipe.get("negative")
    return ComfySampler(
        node_id=node_id,
        class_type=kind,
        seed=_seed(graph, node_id, inputs.get(seed_key), seed_key),
        steps=to_int(val("steps"), f"{here}.steps"),
        cfg=to_number(val("cfg"), f"{here}.cfg"),
        sampler_name=to_str(val("sampler_name")),
        scheduler=to_str(val("scheduler")),
        denoise=to_number(val("denoise"), f"{here}.denoise"),
        extra=extra,
        adds_noise=_adds_noise(extra.get("add_noise", True)),
        model_link=model,
        positive_link=positive,
        negative_link=negative,
        latent_link=inputs.get("latent_image"),
        image_link=inputs.get("image", inputs.get("images")),
    )


def _pipe(graph: Graph, node_id: str) -> dict[str, Any] | None:
    """The inputs of the node a ``*pipe`` input links to (``ToBasicPipe``,
    ``ToDetailerPipe`` …), following pipes of pipes."""
    current = node_id
    for _ in range(8):
        link = next((v for k, v in graph.inputs(current).items() if k.endswith("pipe")), None)
        found = graph.node(link)
        if found is None:
            return None
        inputs = graph.inputs(found)
        if "model" in inputs:
            return inputs
        current = found
    return None


def _custom_pass(graph: Graph, node_id: str, extra: dict[str, Any]) -> ComfySampler:
    kind, inputs = graph.cls(node_id), graph.inputs(node_id)
    here = f"ComfyUI node {node_id} ({kind})"
    seed: int | None = None
    adds_noise = _adds_noise(extra.get("add_noise", True))
    cfg_raw: Any = inputs.get("cfg")
    model, positive, negative = inputs.get("model"), inputs.get("positive"), inputs.get("negative")
    cfg_source = node_id
    if kind == "SamplerCustom":
        seed = _seed(graph, node_id, inputs.get("noise_seed"), "noise_seed")
    else:
        noise = graph.node(inputs.get("noise"), where=f"{here}.noise")
        if noise is not None:
            extra["noise_node"] = f"{noise} {graph.cls(noise)}"
            if graph.cls(noise) == "DisableNoise":
                adds_noise = False
            else:
                noise_inputs = graph.inputs(noise)
                key = next((k for k in _SEED_INPUTS if k in noise_inputs), None)
                if key is None:
                    graph.note(f"{here}: noise node {noise} ({graph.cls(noise)}) states no seed")
                else:
                    seed = _seed(graph, noise, noise_inputs[key], key)
        guider = graph.node(inputs.get("guider"), where=f"{here}.guider")
        cfg_raw = None
        if guider is not None:
            g = graph.inputs(guider)
            extra["guider_node"] = f"{guider} {graph.cls(guider)}"
            cfg_source = guider
            cfg_raw = g.get("cfg", g.get("cfg_conds"))
            model = g.get("model")
            positive = g.get("positive", g.get("cond1", g.get("conditioning")))
            negative = g.get("negative")
            if "cfg_cond2_negative" in g:
                extra["cfg_cond2_negative"] = graph.value(g["cfg_cond2_negative"], ("cfg_cond2_negative",))
    cfg_where = f"ComfyUI node {cfg_source}.cfg"
    cfg = to_number(graph.value(cfg_raw, ("cfg", "cfg_conds"), cfg_where), cfg_where)
    sampler_name = None
    chooser = graph.node(inputs.get("sampler"), where=f"{here}.sampler")
    if chooser is not None:
        sampler_name = to_str(graph.value(graph.inputs(chooser).get("sampler_name"), ("sampler_name",)))
        if sampler_name is None:  # SamplerDPMPP_2M_SDE and friends: the class is the sampler
            sampler_name = graph.cls(chooser)
    steps = scheduler = denoise = None
    sigmas = graph.node(inputs.get("sigmas"), where=f"{here}.sigmas")
    for _ in range(8):  # SplitSigmas, FlipSigmas …: to the scheduler that made them
        if sigmas is None or "steps" in graph.inputs(sigmas) or "sigmas" not in graph.inputs(sigmas):
            break
        extra.setdefault("sigmas_via", []).append(f"{sigmas} {graph.cls(sigmas)}")
        sigmas = graph.node(graph.inputs(sigmas)["sigmas"])
    if sigmas is not None:
        s = graph.inputs(sigmas)
        extra["sigmas_node"] = f"{sigmas} {graph.cls(sigmas)}"
        steps = to_int(graph.value(s.get("steps"), ("steps",)), f"ComfyUI node {sigmas}.steps")
        scheduler = to_str(graph.value(s.get("scheduler"), ("scheduler",))) or graph.cls(sigmas)
        denoise = to_number(graph.value(s.get("denoise"), ("denoise",)), f"ComfyUI node {sigmas}.denoise")
    return ComfySampler(
        node_id=node_id,
        class_type=kind,
        seed=seed,
        steps=steps,
        cfg=cfg,
        sampler_name=sampler_name,
        scheduler=scheduler,
        denoise=denoise,
        extra=extra,
        adds_noise=adds_noise,
        model_link=model,
        positive_link=positive,
        negative_link=negative,
        latent_link=inputs.get("latent_image"),
    )
