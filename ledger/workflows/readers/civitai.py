"""Civitai's generator: a ComfyUI API graph as JSON in a JPEG's EXIF UserComment, with
non-node keys beside the nodes (``extra``, ``extraMetadata`` — a JSON string with the
prompt, seed, steps, CFG, sampler and resources — and ``resource-stack``). The graph is
read as ComfyUI's; ``extraMetadata`` fills what the graph does not state."""

from __future__ import annotations

import dataclasses
from typing import Any

from ledger.core import comfy
from ledger.core.records import NewRecord
from ledger.workflows.readers.base import Context, generator, json_object
from ledger.workflows.readers.carriers import Carriers
from ledger.workflows.readers.comfyui import read_graph


def _document(carriers: Carriers) -> dict[str, Any] | None:
    doc = json_object(carriers.exif.get("UserComment"))
    if doc is None or "sui_image_params" in doc:
        return None
    nodes = {k: v for k, v in doc.items() if isinstance(v, dict) and isinstance(v.get("class_type"), str)}
    return doc if nodes else None


class CivitaiReader:
    name = "civitai"

    def detect(self, carriers: Carriers) -> bool:
        return _document(carriers) is not None

    def read(self, carriers: Carriers, ctx: Context) -> tuple[NewRecord, ...]:
        doc = _document(carriers)
        assert doc is not None
        graph = comfy.load_graph(
            {k: v for k, v in doc.items() if isinstance(v, dict) and isinstance(v.get("class_type"), str)}
        )
        record = read_graph(graph, ctx, carriers.pixels, None, f"{ctx.kind}:exif-usercomment")
        extra_raw = doc.get("extraMetadata")
        extra = json_object(extra_raw) if isinstance(extra_raw, str) else extra_raw
        extra = extra if isinstance(extra, dict) else {}
        params = dict(record.params) | {
            "format": "civitai-comfyui",
            "generator": generator("Civitai"),
            "civitai": {k: v for k, v in doc.items() if k not in graph}
            | {"extraMetadata": extra or extra_raw},
        }
        return (
            dataclasses.replace(
                record,
                params=params,
                prompt=record.prompt
                or (extra.get("prompt") if isinstance(extra.get("prompt"), str) else None),
                negative_prompt=record.negative_prompt
                or (extra.get("negativePrompt") if isinstance(extra.get("negativePrompt"), str) else None),
            ),
        )
