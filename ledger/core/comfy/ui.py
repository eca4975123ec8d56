"""A ComfyUI UI workflow (``{"nodes": […], "links": […]}``) turned into an API graph.

The UI graph keeps each node's literal inputs only as positional ``widgets_values``;
their names are known for the node types below (ComfyUI ``nodes.py`` /
``comfy_extras``). Other nodes keep their links (so pass-through nodes still connect)
but no literals, and are listed in :attr:`UiGraph.unknown`: a reader must not take a
sampler or loader of such a type as read. Muted (mode 2) and bypassed (mode 4) nodes
are left out. ``Reroute`` nodes are resolved to their source.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ledger.errors import InvalidInputError

_SEED: Final = "+seed"  # a seed widget, followed by ComfyUI's control_after_generate value
_CONTROL: Final = frozenset({"fixed", "increment", "decrement", "randomize"})
WIDGETS: Final[dict[str, tuple[str, ...]]] = {
    "KSampler": ("seed" + _SEED, "steps", "cfg", "sampler_name", "scheduler", "denoise"),
    "KSamplerAdvanced": ("add_noise", "noise_seed" + _SEED, "steps", "cfg", "sampler_name", "scheduler",
                         "start_at_step", "end_at_step", "return_with_leftover_noise"),
    "SamplerCustom": ("add_noise", "noise_seed" + _SEED, "cfg"),
    "SamplerCustomAdvanced": (),
    "RandomNoise": ("noise_seed" + _SEED,),
    "DisableNoise": (),
    "KSamplerSelect": ("sampler_name",),
    "BasicScheduler": ("scheduler", "steps", "denoise"),
    "SDTurboScheduler": ("steps", "denoise"),
    "KarrasScheduler": ("steps", "sigma_max", "sigma_min", "rho"),
    "CFGGuider": ("cfg",),
    "BasicGuider": (),
    "DualCFGGuider": ("cfg_conds", "cfg_cond2_negative"),
    "FluxGuidance": ("guidance",),
    "CheckpointLoaderSimple": ("ckpt_name",),
    "CheckpointLoader": ("config_name", "ckpt_name"),
    "ImageOnlyCheckpointLoader": ("ckpt_name",),
    "unCLIPCheckpointLoader": ("ckpt_name",),
    "UNETLoader": ("unet_name", "weight_dtype"),
    "LoraLoader": ("lora_name", "strength_model", "strength_clip"),
    "LoraLoaderModelOnly": ("lora_name", "strength_model"),
    "ModelMergeSimple": ("ratio",),
    "CLIPTextEncode": ("text",),
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "EmptySD3LatentImage": ("width", "height", "batch_size"),
    "EmptyHunyuanLatentVideo": ("width", "height", "length", "batch_size"),
    "EmptyMochiLatentVideo": ("width", "height", "length", "batch_size"),
    "LatentUpscale": ("upscale_method", "width", "height", "crop"),
    "LatentUpscaleBy": ("upscale_method", "scale_by"),
    "VAEDecode": (),
    "VAEEncode": (),
    "SaveImage": ("filename_prefix",),
    "PreviewImage": (),
    "SaveAnimatedWEBP": ("filename_prefix", "fps", "lossless", "quality", "method"),
    "SaveAnimatedPNG": ("filename_prefix", "fps", "compress_level"),
    "PrimitiveNode": ("value",),
}  # fmt: skip


@dataclass(frozen=True)
class UiGraph:
    graph: dict[str, dict[str, Any]]
    unknown: frozenset[str]  # node ids whose literal inputs could not be named
    notes: tuple[str, ...]


def is_ui_workflow(value: Any) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get("nodes"), list) and "links" in value


def _links(workflow: Mapping[str, Any]) -> dict[int, tuple[str, int]]:
    out: dict[int, tuple[str, int]] = {}
    for link in workflow.get("links") or ():
        if isinstance(link, list) and len(link) >= 3 and all(isinstance(v, int) for v in link[:3]):
            out[link[0]] = (str(link[1]), link[2])
        elif isinstance(link, Mapping) and isinstance(link.get("id"), int):
            out[link["id"]] = (str(link.get("origin_id")), int(link.get("origin_slot") or 0))
    return out


def _widgets(kind: str, values: list[Any], notes: list[str], node_id: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    index = 0
    for spec in WIDGETS[kind]:
        if index >= len(values):
            break
        out[spec.removesuffix(_SEED)] = values[index]
        index += 1
        # A seed widget is followed by its control_after_generate value (older files lack it).
        if spec.endswith(_SEED) and index < len(values) and values[index] in _CONTROL:
            if values[index] != "fixed":
                notes.append(
                    f"UI node {node_id} ({kind}) seed control is {values[index]!r}: the seed shown is "
                    "the one queued with this workflow"
                )
            index += 1
    return out


def workflow_to_graph(workflow: Any) -> UiGraph:
    """The API graph a UI workflow stands for (see the module docstring)."""
    if not is_ui_workflow(workflow):
        raise InvalidInputError("not a ComfyUI UI workflow (no nodes/links)")
    links = _links(workflow)
    nodes: dict[str, Mapping[str, Any]] = {}
    for node in workflow["nodes"]:
        if (
            isinstance(node, Mapping)
            and isinstance(node.get("id"), int | str)
            and isinstance(node.get("type"), str)
        ):
            nodes[str(node["id"])] = node
    reroutes = {nid for nid, n in nodes.items() if n["type"] == "Reroute"}

    def source(link_id: Any) -> list[Any] | None:
        for _ in range(64):
            found = links.get(link_id) if isinstance(link_id, int) else None
            if found is None:
                return None
            node_id, slot = found
            if node_id not in reroutes:
                return [node_id, slot]
            inputs = nodes[node_id].get("inputs") or []
            link_id = inputs[0].get("link") if inputs and isinstance(inputs[0], Mapping) else None
        return None

    graph: dict[str, dict[str, Any]] = {}
    unknown: set[str] = set()
    notes: list[str] = []
    for node_id, node in nodes.items():
        kind = node["type"]
        if node_id in reroutes or node.get("mode") in (2, 4):
            continue
        values = node.get("widgets_values")
        inputs: dict[str, Any] = {}
        if kind in WIDGETS:
            inputs.update(_widgets(kind, values if isinstance(values, list) else [], notes, node_id))
        elif values:
            unknown.add(node_id)
        for slot in node.get("inputs") or ():
            if isinstance(slot, Mapping) and isinstance(slot.get("name"), str):
                linked = source(slot.get("link"))
                if linked is not None and linked[0] in nodes and nodes[linked[0]].get("mode") not in (2, 4):
                    inputs[slot["name"]] = linked
        graph[node_id] = {"class_type": kind, "inputs": inputs}
    if not graph:
        raise InvalidInputError("ComfyUI UI workflow has no nodes")
    return UiGraph(graph, frozenset(unknown), tuple(dict.fromkeys(notes)))
