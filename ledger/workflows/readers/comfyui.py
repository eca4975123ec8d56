"""ComfyUI: the API graph (``prompt``) and UI graph (``workflow``) of a saved image.

Carried in PNG text chunks, or, for animated WEBP (``SaveAnimatedWEBP``), in EXIF
``Model`` (0x0110) as ``prompt:{…}`` and ``Make`` (0x010F) as ``workflow:{…}``. A file
with only the UI workflow is read from its widget values where every node on the
image's path is of a known type (``ledger.core.comfy.ui``), otherwise refused with
that reason. Which save node wrote the file is told by the file's pixel size, then by
its name (``filename_prefix``), else the last one (``params["output_matched_by"]``).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from ledger.core import comfy
from ledger.core.records import NewRecord
from ledger.errors import InvalidInputError
from ledger.workflows.readers.base import Context, json_object
from ledger.workflows.readers.carriers import Carriers


def _exif_graph(carriers: Carriers, prefix: str) -> str | None:
    for tag in ("Model", "Make", "ImageDescription", "UserComment"):
        value = carriers.exif.get(tag, "")
        if value.startswith(prefix):
            return value[len(prefix) :]
    return None


def graphs_of(carriers: Carriers) -> tuple[str | None, str | None]:
    """(API graph text, UI workflow text) from wherever the file keeps them: PNG text
    chunks, EXIF ``prompt:``/``workflow:`` tags, or a ``{"prompt": …, "workflow": …}``
    JSON UserComment (custom savers writing JPEG/WEBP)."""
    prompt = carriers.text.get("prompt") or _exif_graph(carriers, "prompt:")
    workflow = carriers.text.get("workflow") or _exif_graph(carriers, "workflow:")
    if prompt is None and workflow is None:
        doc = json_object(carriers.exif.get("UserComment"))
        if doc is not None and comfy.is_api_graph(doc.get("prompt")):
            prompt = json.dumps(doc["prompt"])
            workflow = json.dumps(doc["workflow"]) if isinstance(doc.get("workflow"), dict) else None
    if prompt is not None and prompt.lstrip()[:1] != "{":
        prompt = None
    return prompt, workflow


def _parses_as(text: str | None, check: Any) -> bool:
    try:
        return text is not None and bool(check(comfy.loads(text, "graph")))
    except InvalidInputError:
        return False


class ComfyUIReader:
    name = "comfyui"

    def detect(self, carriers: Carriers) -> bool:
        prompt, workflow = graphs_of(carriers)
        if prompt is None and workflow is None:
            return False
        if "parameters" in carriers.text:
            # Beside A1111 text, only a real graph makes this a ComfyUI file (some tools
            # write a 'prompt' chunk of their own).
            return _parses_as(prompt, comfy.is_api_graph) or _parses_as(workflow, comfy.is_ui_workflow)
        return True

    def read(self, carriers: Carriers, ctx: Context) -> tuple[NewRecord, ...]:
        prompt, workflow_text = graphs_of(carriers)
        workflow: Any = None  # as stored: parsed, or verbatim when not strict JSON
        parsed: Any = None  # as read (NaN allowed)
        if workflow_text is not None:
            try:
                parsed = comfy.loads(workflow_text, "ComfyUI workflow")
            except InvalidInputError:
                parsed = None
            found: list[str] = []
            safe = comfy.json_safe(parsed, found=found)
            workflow = safe if parsed is not None and not found else workflow_text
        in_text = "prompt" in carriers.text or "workflow" in carriers.text
        carrier = "png" if in_text else f"{ctx.kind}:exif"
        if prompt is not None:
            graph = comfy.load_graph(prompt)
            unknown: frozenset[str] = frozenset()
            notes: tuple[str, ...] = ()
        elif comfy.is_ui_workflow(parsed):
            ui = comfy.workflow_to_graph(parsed)
            graph, unknown, notes = ui.graph, ui.unknown, ui.notes
            carrier = f"{carrier}:workflow-only"
        else:
            raise InvalidInputError("ComfyUI workflow is not valid JSON and there is no API graph ('prompt')")
        return (read_graph(graph, ctx, carriers.pixels, workflow, carrier, unknown, notes),)


def read_graph(
    graph: dict[str, Any],
    ctx: Context,
    pixels: tuple[int, int] | None,
    workflow: Any,
    carrier: str,
    unknown: frozenset[str] = frozenset(),
    notes: tuple[str, ...] = (),
) -> NewRecord:
    outputs = comfy.outputs_of(graph)
    output, how = comfy.match_output(outputs, ctx.name, pixels)
    check_readable(output, graph, unknown)
    info = ctx.info()
    info["import"]["carrier"] = carrier
    if notes:
        info["ui_notes"] = list(notes)
    record = comfy.record_for_output(
        output,
        graph,
        workflow=workflow,
        all_outputs=outputs,
        matched_by=how,
        source=ctx.source,
        output_format=ctx.output_format,
        idempotency_key=ctx.key(),
        extra_params=info,
    )
    version = comfy_version(workflow)
    if version is not None:
        record = dataclasses.replace(
            record, params=dict(record.params) | {"generator": {"name": "ComfyUI", "version": version}}
        )
    if pixels is not None:
        # Kept, and used to tell outputs apart, but not taken as the generation size:
        # files are often cropped or re-exported (workflow screenshots, 1×1 crops).
        record = dataclasses.replace(record, params=dict(record.params) | {"file_pixels": list(pixels)})
    return record


def check_readable(output: comfy.ComfyOutput, graph: dict[str, Any], unknown: frozenset[str]) -> None:
    """Refuse an output whose image no readable sampler pass made (with the reason): a
    record without its sampler would look read while stating nothing that made it."""
    for sampler in output.chain[:1]:
        if sampler.node_id in unknown:  # a UI-only graph: literals of unknown node types
            kind = graph[sampler.node_id]["class_type"]
            raise InvalidInputError(
                f"ComfyUI UI workflow only (no API graph): sampler node {sampler.node_id} is a {kind}, "
                "whose widget values seedledger cannot name"
            )
    if output.sampler is not None:
        return
    where = f"save node {output.node_id} ({output.class_type})"
    if unknown:
        blind = [n for n in comfy.Graph(graph).upstream(output.node_id) if n in unknown]
        detail = (
            f"; node {blind[0]} ({graph[blind[0]]['class_type']}) has widget values seedledger cannot name"
            if blind
            else ""
        )
        raise InvalidInputError(
            f"ComfyUI UI workflow only (no API graph): no sampler of a known node type feeds {where}{detail}"
        )
    notes = f": {'; '.join(output.notes[:2])}" if output.notes else ""
    raise InvalidInputError(f"ComfyUI graph: no sampler pass feeds {where}{notes}")


def comfy_version(workflow: Any) -> str | None:
    """ComfyUI's version as recent UI workflows state it (core nodes' ``properties``:
    ``{"cnr_id": "comfy-core", "ver": "0.3.10"}``)."""
    nodes = workflow.get("nodes") if isinstance(workflow, dict) else None
    for node in nodes if isinstance(nodes, list) else ():
        props = node.get("properties") if isinstance(node, dict) else None
        core = isinstance(props, dict) and props.get("cnr_id") == "comfy-core"
        if core and isinstance(props.get("ver"), str):  # type: ignore[union-attr]
            return props["ver"][:40]
    return None
