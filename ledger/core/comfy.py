"""ComfyUI API-format graphs: what made each saved image.

An API graph maps node ids to ``{"class_type": …, "inputs": {…}}``; an input that is
a link is written ``[node_id, output_index]``. ComfyUI's ``SaveImage`` stores this
graph in the PNG ``prompt`` chunk (and the UI graph in ``workflow``).

Decisions (documented in docs/workflows.md):

- **One output per image-saving node** (``SaveImage``, ``PreviewImage``, …). A PNG file
  is one image of one such node: the importer matches the file name against each
  node's ``filename_prefix`` and otherwise takes the last one, and says which it did.
- **The primary sampler** is the KSampler nearest upstream of the saved image along
  the image/latent chain (``images`` → ``VAEDecode.samples`` → sampler). Its seed,
  steps, CFG, sampler and scheduler become the record's columns. A graph with two
  KSamplers (base + refine / hires pass) therefore takes the refining one as primary,
  and **every sampler's settings and seed are kept** in ``params["samplers"]``.
- The checkpoint is found by following the primary sampler's ``model`` link through
  LoRA and other pass-through nodes to a loader (``ckpt_name`` / ``unet_name``).
- Prompts follow the primary sampler's ``positive`` / ``negative`` links through
  conditioning nodes to ``CLIPTextEncode`` (``text``, or ``text_g``/``text_l``).

Everything here is pure and raises only :class:`InvalidInputError` (or
:class:`InvalidSeedError` for an out-of-range seed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from ledger.core.jsonsafe import loads_bounded
from ledger.core.records import Modality, NewRecord, SeedOrigin, Source, utcnow
from ledger.core.redaction import redact
from ledger.core.seeds import parse_seed
from ledger.errors import InvalidInputError, InvalidSeedError

#: Sampler node types and the input that holds their seed.
SAMPLER_SEED_INPUT: Final[dict[str, str]] = {"KSampler": "seed", "KSamplerAdvanced": "noise_seed"}
#: Nodes that write images (and so carry the graph in their files).
OUTPUT_NODES: Final = frozenset(
    {"SaveImage", "PreviewImage", "SaveAnimatedWEBP", "SaveAnimatedPNG", "SaveImageWebsocket"}
)
_MODEL_KEYS: Final = ("ckpt_name", "unet_name", "model_name", "checkpoint")
# Inputs followed from an image back to the sampler that made it, in preference order.
_CHAIN_INPUTS: Final = ("images", "image", "samples", "latent", "latent_image", "pixels")
_MAX_DEPTH: Final = 256
_MAX_SCALE: Final = 64


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
        }
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class ComfyOutput:
    """One image-saving node and what produced its image."""

    node_id: str
    class_type: str
    filename_prefix: str | None
    sampler: ComfySampler | None  # the primary sampler (nearest upstream)
    samplers: tuple[ComfySampler, ...]  # every sampler upstream, primary first
    checkpoint: str | None
    loras: tuple[Mapping[str, Any], ...]
    prompt: str | None
    negative_prompt: str | None
    width: int | None
    height: int | None
    batch_size: int | None


def load_graph(value: Any) -> dict[str, dict[str, Any]]:
    """Check an API-format graph (a JSON string or an object) and return it."""
    if isinstance(value, str | bytes):
        try:
            value = loads_bounded(value)
        except InvalidInputError as exc:
            raise type(exc)(f"ComfyUI prompt: {exc}") from None
    if not isinstance(value, Mapping) or not value:
        raise InvalidInputError("ComfyUI prompt: expected a non-empty object of nodes")
    graph: dict[str, dict[str, Any]] = {}
    for node_id, node in value.items():
        if not isinstance(node, Mapping) or not isinstance(node.get("class_type"), str):
            raise InvalidInputError(
                f"ComfyUI prompt: node {str(node_id)[:40]!r} has no class_type "
                "(is this a UI workflow rather than the API graph?)"
            )
        inputs = node.get("inputs", {})
        if not isinstance(inputs, Mapping):
            raise InvalidInputError(f"ComfyUI prompt: node {node_id}: inputs must be an object")
        graph[str(node_id)] = {"class_type": node["class_type"], "inputs": dict(inputs)}
    return graph


def is_api_graph(value: Any) -> bool:
    """True for an object whose values all look like API-format nodes."""
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(isinstance(n, Mapping) and isinstance(n.get("class_type"), str) for n in value.values())
    )


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str | int)
        and not isinstance(value[0], bool)
        and isinstance(value[1], int)
    )


class _Graph:
    def __init__(self, graph: dict[str, dict[str, Any]]) -> None:
        self.nodes = graph

    def node(self, link: Any) -> tuple[str, dict[str, Any]] | None:
        if not _is_link(link):
            return None
        node_id = str(link[0])
        node = self.nodes.get(node_id)
        return (node_id, node) if node is not None else None

    def value(self, raw: Any, names: tuple[str, ...], depth: int = 0) -> Any:
        """A literal input, following links to primitive-like nodes by input name."""
        if not _is_link(raw):
            return raw
        found = self.node(raw)
        if found is None or depth > _MAX_DEPTH:
            return None
        inputs = found[1]["inputs"]
        for name in (*names, "value", "int", "float", "string", "text", "seed"):
            if name in inputs:
                return self.value(inputs[name], names, depth + 1)
        return None

    def upstream(self, start: str) -> list[str]:
        """Every node id upstream of ``start`` (breadth first, nearest first)."""
        seen: set[str] = {start}
        order: list[str] = []
        queue = [start]
        while queue:
            current = queue.pop(0)
            for raw in self.nodes[current]["inputs"].values():
                found = self.node(raw)
                if found is not None and found[0] not in seen:
                    seen.add(found[0])
                    order.append(found[0])
                    queue.append(found[0])
        return order

    def primary_sampler(self, start: str) -> str | None:
        """The sampler reached first along the image/latent chain from ``start``."""
        current, seen = start, {start}
        for _ in range(_MAX_DEPTH):
            inputs = self.nodes[current]["inputs"]
            nxt = None
            for name in _CHAIN_INPUTS:
                found = self.node(inputs.get(name))
                if found is not None:
                    nxt = found[0]
                    break
            if nxt is None:
                # No known chain input: take the first linked input (custom nodes).
                nxt = next((f[0] for raw in inputs.values() if (f := self.node(raw))), None)
            if nxt is None or nxt in seen:
                break
            if self.nodes[nxt]["class_type"] in SAMPLER_SEED_INPUT:
                return nxt
            seen.add(nxt)
            current = nxt
        # Fall back to the nearest sampler anywhere upstream.
        return next(
            (n for n in self.upstream(start) if self.nodes[n]["class_type"] in SAMPLER_SEED_INPUT), None
        )

    def sampler(self, node_id: str) -> ComfySampler:
        node = self.nodes[node_id]
        inputs = node["inputs"]
        seed_key = SAMPLER_SEED_INPUT[node["class_type"]]
        seed_raw = self.value(inputs.get(seed_key), (seed_key, "seed", "noise_seed"))
        where = f"ComfyUI node {node_id} ({node['class_type']}).{seed_key}"
        try:
            seed = parse_seed(seed_raw) if seed_raw is not None else None
        except InvalidSeedError as exc:
            raise InvalidSeedError(f"{where}: {exc}") from None
        extra = {
            key: self.value(inputs.get(key), (key,))
            for key in ("add_noise", "start_at_step", "end_at_step", "return_with_leftover_noise")
            if key in inputs
        }
        return ComfySampler(
            node_id=node_id,
            class_type=node["class_type"],
            seed=seed,
            steps=_int(self.value(inputs.get("steps"), ("steps",)), f"ComfyUI node {node_id}.steps"),
            cfg=_number(self.value(inputs.get("cfg"), ("cfg",)), f"ComfyUI node {node_id}.cfg"),
            sampler_name=_str(self.value(inputs.get("sampler_name"), ("sampler_name",))),
            scheduler=_str(self.value(inputs.get("scheduler"), ("scheduler",))),
            denoise=_number(
                self.value(inputs.get("denoise"), ("denoise",)), f"ComfyUI node {node_id}.denoise"
            ),
            extra=extra,
        )

    def model(self, link: Any) -> tuple[str | None, list[dict[str, Any]]]:
        loras: list[dict[str, Any]] = []
        seen: set[str] = set()
        while (found := self.node(link)) is not None and found[0] not in seen:
            node_id, node = found
            seen.add(node_id)
            inputs = node["inputs"]
            for key in _MODEL_KEYS:
                name = self.value(inputs.get(key), (key,))
                if isinstance(name, str) and name:
                    return name, loras
            if "lora_name" in inputs:
                loras.append(
                    {
                        "node": node_id,
                        "lora_name": self.value(inputs["lora_name"], ("lora_name",)),
                        "strength_model": self.value(inputs.get("strength_model"), ("strength_model",)),
                        "strength_clip": self.value(inputs.get("strength_clip"), ("strength_clip",)),
                    }
                )
            link = inputs.get("model")
        return None, loras

    def text(self, link: Any, prefer: str) -> str | None:
        """Prompt text reached from a conditioning link (first text node found)."""
        queue, seen = [link], set()
        while queue:
            found = self.node(queue.pop(0))
            if found is None or found[0] in seen or len(seen) > _MAX_DEPTH:
                continue
            node_id, node = found
            seen.add(node_id)
            inputs = node["inputs"]
            if "text" in inputs:
                text = self.value(inputs["text"], ("text", "string"))
                if isinstance(text, str):
                    return text
            if "text_g" in inputs or "text_l" in inputs:
                parts = [self.value(inputs.get(k), (k, "text")) for k in ("text_g", "text_l")]
                texts = [p for p in parts if isinstance(p, str) and p]
                return "\n".join(dict.fromkeys(texts))
            names = [prefer, *sorted(k for k in inputs if "conditioning" in k)]
            queue.extend(inputs[name] for name in names if name in inputs)
        return None

    def size(self, start: str) -> tuple[int | None, int | None, int | None]:
        """Width, height and batch size of the latent a sampler denoises."""
        link = self.nodes[start]["inputs"].get("latent_image")
        scale = 1.0
        for _ in range(_MAX_DEPTH):
            found = self.node(link)
            if found is None:
                break
            _, node = found
            inputs = node["inputs"]
            width = self.value(inputs.get("width"), ("width",))
            height = self.value(inputs.get("height"), ("height",))
            if _plain_int(width) and _plain_int(height) and width > 0 and height > 0:
                batch = self.value(inputs.get("batch_size"), ("batch_size",))
                return (
                    round(width * scale),
                    round(height * scale),
                    batch if _plain_int(batch) else None,
                )
            factor = self.value(inputs.get("scale_by"), ("scale_by",))
            if isinstance(factor, int | float) and not isinstance(factor, bool):
                if not 0 < factor <= _MAX_SCALE:
                    return None, None, None  # not a size we can state
                scale *= float(factor)
            link = next(
                (inputs[k] for k in ("samples", "latent", "latent_image", "pixels") if k in inputs), None
            )
        return None, None, None


def _plain_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if not _plain_int(value):
        raise InvalidInputError(f"{where}: expected an integer, got {type(value).__name__}")
    return int(value)


def _number(value: Any, where: str) -> float | None:
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


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def outputs_of(graph_value: Any) -> list[ComfyOutput]:
    """Every image-saving node of an API graph, in node-id order, with its provenance."""
    graph = _Graph(load_graph(graph_value))
    output_ids = [
        node_id
        for node_id, node in graph.nodes.items()
        if node["class_type"] in OUTPUT_NODES
        or ("Save" in node["class_type"] and ("images" in node["inputs"] or "image" in node["inputs"]))
    ]
    output_ids.sort(key=_node_order)
    outputs: list[ComfyOutput] = []
    for node_id in output_ids:
        node = graph.nodes[node_id]
        primary_id = graph.primary_sampler(node_id)
        upstream = graph.upstream(node_id)
        sampler_ids = [n for n in upstream if graph.nodes[n]["class_type"] in SAMPLER_SEED_INPUT]
        if primary_id is not None and primary_id in sampler_ids:
            sampler_ids.remove(primary_id)
            sampler_ids.insert(0, primary_id)
        samplers = tuple(graph.sampler(n) for n in sampler_ids)
        primary = samplers[0] if primary_id is not None else None
        checkpoint, loras = (None, [])
        prompt = negative = None
        width = height = batch = None
        if primary is not None:
            inputs = graph.nodes[primary.node_id]["inputs"]
            checkpoint, loras = graph.model(inputs.get("model"))
            prompt = graph.text(inputs.get("positive"), "positive")
            negative = graph.text(inputs.get("negative"), "negative")
            width, height, batch = graph.size(primary.node_id)
        prefix = graph.value(node["inputs"].get("filename_prefix"), ("filename_prefix",))
        outputs.append(
            ComfyOutput(
                node_id=node_id,
                class_type=node["class_type"],
                filename_prefix=prefix if isinstance(prefix, str) else None,
                sampler=primary,
                samplers=samplers,
                checkpoint=checkpoint,
                loras=tuple(loras),
                prompt=prompt,
                negative_prompt=negative,
                width=width,
                height=height,
                batch_size=batch,
            )
        )
    return outputs


def _node_order(node_id: str) -> tuple[int, int | str]:
    return (0, int(node_id)) if node_id.isdigit() else (1, node_id)


def match_output(outputs: list[ComfyOutput], filename: str | None) -> tuple[ComfyOutput, str]:
    """Pick the output node that wrote ``filename``; return it and how it was chosen
    (``only``, ``filename_prefix`` or ``last``)."""
    if not outputs:
        raise InvalidInputError("ComfyUI prompt has no image-saving node (SaveImage)")
    if len(outputs) == 1:
        return outputs[0], "only"
    if filename:
        base = filename.rsplit("/", 1)[-1]
        matches = [
            o
            for o in outputs
            if o.filename_prefix and base.startswith(o.filename_prefix.rsplit("/", 1)[-1] + "_")
        ]
        if len(matches) == 1:
            return matches[0], "filename_prefix"
    return outputs[-1], "last"


def record_for_output(
    output: ComfyOutput,
    graph: Mapping[str, Any],
    *,
    workflow: Any = None,
    all_outputs: list[ComfyOutput] | None = None,
    matched_by: str = "only",
    backend: str = "comfyui",
    source: Source = Source.IMPORT,
    created_at: datetime | None = None,
    output_format: str | None = None,
    idempotency_key: str | None = None,
    output_index: int = 0,
    extra_params: Mapping[str, Any] | None = None,
) -> NewRecord:
    """The record for one saved image. ``params`` keeps the API graph verbatim (what a
    replay needs), the UI workflow when given, and every sampler's settings."""
    primary = output.sampler
    every_sampler = {s.node_id: s for o in (all_outputs or [output]) for s in o.samplers}
    params: dict[str, Any] = {
        "format": "comfyui-api",
        "output_node": output.node_id,
        "output_class": output.class_type,
        "output_matched_by": matched_by,
        "sampler_node": primary.node_id if primary else None,
        "samplers": [s.as_dict() for s in output.samplers],
        # Every sampler seed in the graph, by node id (also ones not feeding this image).
        "seeds": {node_id: s.seed for node_id, s in sorted(every_sampler.items())},
        "checkpoint": output.checkpoint,
        "loras": [dict(lora) for lora in output.loras],
        "batch_size": output.batch_size,
        "graph": dict(graph),
    }
    if workflow is not None:
        params["workflow"] = workflow
    if extra_params:
        params.update(extra_params)
    scheduler = None
    if primary is not None and primary.sampler_name:
        scheduler = (
            f"{primary.sampler_name} {primary.scheduler}" if primary.scheduler else primary.sampler_name
        )
    seed = primary.seed if primary else None
    return NewRecord(
        backend=backend,
        task_type="imageInference",
        modality=Modality.IMAGE,
        model=output.checkpoint or "unknown",
        seed=seed,
        seed_origin=SeedOrigin.REQUEST if seed is not None else SeedOrigin.UNKNOWN,
        scheduler_requested=primary.sampler_name if primary else None,
        scheduler=scheduler,
        prompt=output.prompt,
        negative_prompt=output.negative_prompt,
        width=output.width,
        height=output.height,
        steps=primary.steps if primary else None,
        cfg_scale=primary.cfg if primary else None,
        output_format=output_format,
        params=redact(params),
        source=source,
        output_index=output_index,
        created_at=created_at or utcnow(),
        idempotency_key=idempotency_key,
    )
