"""From each image-saving node back to the sampler chain that drew its pixels.

- **Outputs**: ``SaveImage``, ``SaveAnimatedWEBP``/``PNG``, video combine nodes and
  ``Image Save``-style custom savers (any ``*Save*`` node with an image input), the
  audio and GLB savers (``SaveAudio``…, ``SaveGLB``);
  ``PreviewImage`` only when nothing else saves.
- **The chain**: from the saved image through decoders, upscalers, detailers and
  latent edits (``LatentComposite`` follows ``samples_to``, the base it pastes onto)
  to each sampler pass, final pass first. The final pass's steps, CFG, sampler and
  schedule are the record's; the **seed** is that of the nearest pass that adds noise
  (a ``KSamplerAdvanced`` with ``add_noise: disable`` draws none).
- **Model** through LoRA loaders, model patches and merges (``MERGE(a, b)``);
  **prompts** through conditioning nodes to the text encoders; **FluxGuidance** on the
  way is kept; **size** from the latent source (empty latents, preset nodes with a
  ``dimensions`` string, upscales, composites, conditioning nodes that make latents).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ledger.core.comfy.graph import MAX_DEPTH, Graph, load_graph
from ledger.core.comfy.passes import (
    ComfySampler,
    is_sampler,
    plain_int,
    read_pass,
    to_number,
    to_str,
)
from ledger.errors import InvalidInputError

OUTPUT_NODES: Final = frozenset(
    {"SaveImage", "PreviewImage", "SaveAnimatedWEBP", "SaveAnimatedPNG", "SaveImageWebsocket", "SaveWEBM",
     "SaveVideo", "VHS_VideoCombine", "Image Save", "SaveImageExtended",
     "SaveAudio", "SaveAudioMP3", "SaveAudioOpus", "SaveGLB"}
)  # fmt: skip
_MODEL_KEYS: Final = ("ckpt_name", "unet_name", "checkpoint", "model_path")
# Inputs that are never the image/latent a node transforms.
_SIDE_INPUTS: Final = frozenset(
    {"model", "clip", "vae", "positive", "negative", "conditioning", "upscale_model", "control_net",
     "bbox_detector", "sam_model_opt", "segm_detector_opt", "detailer_hook", "clip_vision", "mask",
     "samples_from", "source", "guider", "sampler", "sigmas", "noise"}
)  # fmt: skip
_CHAIN_INPUTS: Final = ("images", "image", "samples", "samples_to", "latent", "latent_image", "pixels")
_TEXT_FIELDS: Final = ("text_g", "text_l", "clip_g", "clip_l", "t5xxl")
_DIMENSIONS: Final = re.compile(r"(\d{2,5})\s*[x×]\s*(\d{2,5})")
_MAX_SCALE: Final = 64


@dataclass(frozen=True)
class ComfyOutput:
    """One image-saving node and what produced its image."""

    node_id: str
    class_type: str
    filename_prefix: str | None
    sampler: ComfySampler | None  # the final pass (nearest upstream)
    samplers: tuple[ComfySampler, ...]  # every sampler upstream, final pass first
    checkpoint: str | None
    loras: tuple[Mapping[str, Any], ...]
    prompt: str | None
    negative_prompt: str | None
    width: int | None
    height: int | None
    batch_size: int | None
    chain: tuple[ComfySampler, ...] = ()  # the passes on the image's own path, final first
    noise_pass: ComfySampler | None = None  # the pass whose seed drew the noise
    guidance: float | None = None
    size_from: str | None = None
    pixel_size: tuple[int, int] | None = None  # the saved image's size, when the graph states it
    notes: tuple[str, ...] = field(default_factory=tuple)


def _next_link(graph: Graph, node_id: str) -> tuple[str, Any] | None:
    inputs = graph.inputs(node_id)
    for name in _CHAIN_INPUTS:
        if name in inputs and isinstance(inputs[name], list):
            return name, inputs[name]
    for name, raw in inputs.items():
        if name not in _SIDE_INPUTS and isinstance(raw, list) and len(raw) == 2:
            return name, raw
    return None


def walk_chain(graph: Graph, start: str) -> list[str]:
    """Sampler node ids on the image path from ``start``, nearest first."""
    chain: list[str] = []
    current, seen = start, {start}
    for _ in range(MAX_DEPTH):
        if current != start and is_sampler(graph, current):
            chain.append(current)
        step = _next_link(graph, current)
        if step is None:
            break
        name, link = step
        if current != start and is_sampler(graph, current):
            inputs = graph.inputs(current)
            link = inputs.get("latent_image", inputs.get("image", inputs.get("images", link)))
            name = "latent_image"
        found = graph.node(link, where=f"ComfyUI node {current} ({graph.cls(current)}).{name}")
        if found is None or found in seen:
            break
        seen.add(found)
        current = found
    return chain


def _model(graph: Graph, link: Any, depth: int = 0) -> tuple[str | None, list[dict[str, Any]]]:
    loras: list[dict[str, Any]] = []
    seen: set[str] = set()
    while (found := graph.node(link, where="the model link")) is not None and found not in seen:
        seen.add(found)
        inputs = graph.inputs(found)
        for key in _MODEL_KEYS:
            name = graph.value(inputs.get(key), (key,))
            if isinstance(name, Mapping):  # pysssss loaders: {"content": name, "image": …}
                name = name.get("content")
            if isinstance(name, str) and name:
                return name, loras
        if "model1" in inputs and "model2" in inputs and depth < 8:
            first, l1 = _model(graph, inputs["model1"], depth + 1)
            second, l2 = _model(graph, inputs["model2"], depth + 1)
            loras += l1 + l2
            return f"MERGE({first or 'unknown'}, {second or 'unknown'})", loras
        if "lora_name" in inputs:
            loras.append(
                {
                    "node": found,
                    "lora_name": graph.value(inputs["lora_name"], ("lora_name",)),
                    "strength_model": graph.value(inputs.get("strength_model"), ("strength_model",)),
                    "strength_clip": graph.value(inputs.get("strength_clip"), ("strength_clip",)),
                }
            )
        link = inputs.get("model")
    return None, loras


def _text(graph: Graph, link: Any, prefer: str) -> tuple[str | None, float | None]:
    """Prompt text reached from a conditioning link, and a FluxGuidance value on the way."""
    queue, seen = [link], set[str]()
    guidance: float | None = None
    while queue:
        found = graph.node(queue.pop(0))
        if found is None or found in seen or len(seen) > MAX_DEPTH:
            continue
        seen.add(found)
        inputs = graph.inputs(found)
        kind = graph.cls(found)
        if kind in ("FluxGuidance", "CLIPTextEncodeFlux") and guidance is None:
            guidance = to_number(graph.value(inputs.get("guidance"), ("guidance",)), f"node {found}.guidance")
        if "text" in inputs:
            text = graph.value(inputs["text"], ("text", "string"))
            if isinstance(text, str):
                return text, guidance
        # SDXL (text_g/text_l), SD3 (clip_l/clip_g/t5xxl) and Flux (clip_l/t5xxl) encoders.
        fields = [k for k in _TEXT_FIELDS if k in inputs]
        if fields:
            parts = [graph.value(inputs.get(k), (k, "text", "string")) for k in fields]
            texts = [p for p in parts if isinstance(p, str) and p]
            return "\n".join(dict.fromkeys(texts)), guidance
        if isinstance(inputs.get(prefer), str):  # loaders that take the prompt as text (Efficient Loader)
            return inputs[prefer], guidance
        names = [prefer, *sorted(k for k in inputs if "conditioning" in k or k in ("cond1", "stage_c"))]
        queue.extend(inputs[name] for name in names if name in inputs)
    return None, guidance


def _size(graph: Graph, link: Any) -> tuple[int | None, int | None, int | None, str | None]:
    """Width, height, batch size and source node class of the latent behind ``link``."""
    scale = 1.0
    for _ in range(MAX_DEPTH):
        found = graph.node(link)
        if found is None:
            break
        inputs = graph.inputs(found)
        preset = _preset(graph, found)
        width = graph.value(inputs.get("width"), ("width",))
        height = graph.value(inputs.get("height"), ("height",))
        for index, key in enumerate(("width", "height")):
            # A size linked from a preset node (CR SDXL Aspect Ratio …) is the preset's.
            source = graph.node(inputs.get(key))
            linked = _preset(graph, source) if source is not None else None
            if linked is not None:
                if index == 0:
                    width = linked[0]
                else:
                    height = linked[1]
        if preset is not None:
            width, height = preset
        if plain_int(width) and plain_int(height) and width > 0 and height > 0:
            batch = graph.value(inputs.get("batch_size"), ("batch_size",))
            return (
                round(width * scale),
                round(height * scale),
                batch if plain_int(batch) else None,
                graph.cls(found),
            )
        factor = graph.value(inputs.get("scale_by", inputs.get("scale_factor")), ("scale_by", "scale_factor"))
        if isinstance(factor, int | float) and not isinstance(factor, bool):
            if not 0 < factor <= _MAX_SCALE:
                return None, None, None, None  # not a size we can state
            scale *= float(factor)
        link = next(
            (inputs[k] for k in ("samples", "samples_to", "latent", "latent_image", "pixels") if k in inputs),
            None,
        )
    return None, None, None, None


def _preset(graph: Graph, node_id: str) -> tuple[int, int] | None:
    """A ``WxH`` size stated by a preset string (``dimensions``, ``resolution``,
    ``aspect_ratio``: ``"1024 x 1024 (square)"``, ``"SDXL - 1:1 square 1024x1024"``),
    swapped when the node says so."""
    inputs = graph.inputs(node_id)
    for key in ("dimensions", "resolution", "aspect_ratio"):
        text = graph.value(inputs.get(key), (key,))
        if isinstance(text, str) and (m := _DIMENSIONS.search(text)):
            width, height = int(m.group(1)), int(m.group(2))
            if any(graph.value(inputs.get(k), (k,)) in (True, "On") for k in ("invert", "swap_dimensions")):
                width, height = height, width
            return width, height
    return None


def _pixel_size(
    graph: Graph, save: str, final: str | None, size: tuple[int, int] | None
) -> tuple[int, int] | None:
    """The saved image's pixel size: the final pass's latent size through the nodes up
    to the save node, or None where one of them changes it by an unknown amount (an
    upscale model, a crop). Used to tell which output a file is."""
    if final is None or size is None:
        return None
    nodes: list[str] = []  # from the save node back to (not including) the final pass
    current = save
    for _ in range(MAX_DEPTH):
        step = _next_link(graph, current)
        found = graph.node(step[1]) if step else None
        if found is None:
            return None
        if found == final:
            break
        nodes.append(found)
        current = found
    else:
        return None
    width, height = size
    for node_id in reversed(nodes):  # in the order they run
        kind, inputs = graph.cls(node_id), graph.inputs(node_id)
        if "upscale_model" in inputs or "Crop" in kind:
            return None
        w = graph.value(inputs.get("width"), ("width",))
        h = graph.value(inputs.get("height"), ("height",))
        factor = graph.value(inputs.get("scale_by", inputs.get("upscale_by")), ("scale_by",))
        if plain_int(w) and plain_int(h) and w > 0 and h > 0:
            width, height = w, h
        elif isinstance(factor, int | float) and not isinstance(factor, bool) and 0 < factor <= _MAX_SCALE:
            width, height = round(width * factor), round(height * factor)
    return width, height


def _terminal_samplers(graph: Graph) -> list[str]:
    """Samplers whose result no other sampler consumes (a dangling output's candidates)."""
    samplers = [n for n in graph.nodes if is_sampler(graph, n)]
    feeding = {s for n in samplers for s in graph.upstream(n)}
    return [n for n in samplers if n not in feeding]


def output_ids(graph: Graph) -> list[str]:
    ids = [
        n
        for n in graph.nodes
        if graph.cls(n) in OUTPUT_NODES
        or graph.cls(n).endswith("VideoCombine")
        or ("Save" in graph.cls(n) and ("images" in graph.inputs(n) or "image" in graph.inputs(n)))
    ]
    savers = [n for n in ids if graph.cls(n) != "PreviewImage"]
    return sorted(savers or ids, key=_node_order)


def outputs_of(graph_value: Any) -> list[ComfyOutput]:
    """Every image-saving node of an API graph, in node-id order, with its provenance."""
    graph = Graph(load_graph(graph_value))
    return [_output(graph, node_id) for node_id in output_ids(graph)]


def _output(graph: Graph, node_id: str) -> ComfyOutput:
    graph.notes = []
    chain_ids = walk_chain(graph, node_id)
    if not chain_ids and graph.notes:  # a dangling link: read the chain still in the graph
        terminal = _terminal_samplers(graph)
        if len(terminal) == 1:
            graph.note(f"read the sampler chain ending at node {terminal[0]}, the only one in the graph")
            chain_ids = [terminal[0], *walk_chain(graph, terminal[0])]
    upstream = [n for n in graph.upstream(chain_ids[0]) if is_sampler(graph, n)] if chain_ids else []
    every = list(dict.fromkeys([*chain_ids, *upstream]))
    passes = {n: read_pass(graph, n) for n in every}
    chain = tuple(passes[n] for n in chain_ids)
    final = chain[0] if chain else None
    noise = next((p for p in chain if p.adds_noise), None)
    if final is not None and noise is not None and noise is not final:
        graph.note(
            f"the final pass (node {final.node_id}) adds no noise; the seed is node {noise.node_id}'s, "
            "which drew it"
        )
    elif final is not None and noise is None:
        graph.note("no pass on the image's path adds noise: its seed draws nothing")
    checkpoint, loras = None, list[dict[str, Any]]()
    prompt = negative = None
    guidance = None
    width = height = batch = None
    size_from = None
    if final is not None:
        checkpoint, loras = _model(graph, final.model_link)
        prompt, guidance = _text(graph, final.positive_link, "positive")
        negative, _ = _text(graph, final.negative_link, "negative")
        latent_pass = next((p for p in chain if p.latent_link is not None), None)
        if latent_pass is not None:
            width, height, batch, size_from = _size(graph, latent_pass.latent_link)
            if latent_pass is not final and width is not None and height is not None:
                factor = final.extra.get("upscale_by")
                if (
                    isinstance(factor, int | float)
                    and not isinstance(factor, bool)
                    and 0 < factor <= _MAX_SCALE
                ):
                    width, height = round(width * factor), round(height * factor)
    prefix = graph.value(graph.inputs(node_id).get("filename_prefix"), ("filename_prefix",))
    size = (width, height) if width is not None and height is not None else None
    return ComfyOutput(
        node_id=node_id,
        class_type=graph.cls(node_id),
        filename_prefix=to_str(prefix),
        sampler=final,
        samplers=tuple(passes[n] for n in every),
        checkpoint=checkpoint,
        loras=tuple(loras),
        prompt=prompt,
        negative_prompt=negative,
        width=width,
        height=height,
        batch_size=batch,
        chain=chain,
        noise_pass=noise,
        guidance=guidance,
        size_from=size_from,
        pixel_size=_pixel_size(graph, node_id, final.node_id if final else None, size),
        notes=tuple(graph.notes),
    )


def _node_order(node_id: str) -> tuple[int, int | str]:
    return (0, int(node_id)) if node_id.isdigit() else (1, node_id)


def match_output(
    outputs: list[ComfyOutput], filename: str | None, pixels: tuple[int, int] | None = None
) -> tuple[ComfyOutput, str]:
    """Pick the output node that wrote a file; return it and how it was chosen
    (``only``, ``pixel_size``, ``filename_prefix`` or ``last``)."""
    if not outputs:
        raise InvalidInputError("ComfyUI prompt has no image-saving node (SaveImage)")
    if len(outputs) == 1:
        return outputs[0], "only"
    candidates = outputs
    if pixels is not None:
        sized = [o for o in outputs if o.pixel_size == pixels]
        if len(sized) == 1:
            return sized[0], "pixel_size"
        candidates = sized or outputs
    if filename:
        base = filename.rsplit("/", 1)[-1]
        matches = [
            o
            for o in candidates
            if o.filename_prefix and base.startswith(o.filename_prefix.rsplit("/", 1)[-1] + "_")
        ]
        if len(matches) == 1:
            return matches[0], "filename_prefix"
    return candidates[-1], "last"
