"""The record of one saved ComfyUI image."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ledger.core.comfy.graph import json_safe
from ledger.core.comfy.outputs import ComfyOutput
from ledger.core.records import Modality, NewRecord, SeedOrigin, Source, utcnow
from ledger.core.redaction import redact


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
    modality: Modality = Modality.IMAGE,
) -> NewRecord:
    """The record for one saved image. ``params`` keeps the API graph verbatim (what a
    replay needs), the UI workflow when given, and every sampler pass's settings."""
    final, noise = output.sampler, output.noise_pass
    replaced: list[str] = []
    notes = list(output.notes)
    every_sampler = {s.node_id: s for o in (all_outputs or [output]) for s in o.samplers}
    params: dict[str, Any] = {
        "format": "comfyui-api",
        "generator": {"name": "ComfyUI", "version": None},
        "output_node": output.node_id,
        "output_class": output.class_type,
        "output_matched_by": matched_by,
        "sampler_node": final.node_id if final else None,
        "seed_node": noise.node_id if noise else None,
        "chain": [s.node_id for s in output.chain],
        "samplers": [s.as_dict() for s in output.samplers],
        # Every sampler seed in the graph, by node id (also ones not feeding this image).
        "seeds": {node_id: s.seed for node_id, s in sorted(every_sampler.items())},
        "checkpoint": output.checkpoint,
        "loras": [dict(lora) for lora in output.loras],
        "batch_size": output.batch_size,
        "schedule": final.scheduler if final else None,
        "denoise": final.denoise if final else None,
        "size_from": output.size_from,
        "graph": json_safe(graph, found=replaced),
    }
    if replaced:
        notes.append(
            f"non-finite numbers (NaN/Infinity) in the graph stored as null: {', '.join(replaced[:5])}"
        )
    if output.guidance is not None:
        params["flux_guidance"] = output.guidance
    if notes:
        params["notes"] = notes
    if workflow is not None:
        params["workflow"] = workflow
    if extra_params:
        params.update(extra_params)
    scheduler = None
    if final is not None and final.sampler_name:
        scheduler = f"{final.sampler_name} {final.scheduler}" if final.scheduler else final.sampler_name
    seed = noise.seed if noise else None
    return NewRecord(
        backend=backend,
        task_type="imageInference" if modality is Modality.IMAGE else "videoInference",
        modality=modality,
        model=output.checkpoint or "unknown",
        seed=seed,
        seed_origin=SeedOrigin.REQUEST if seed is not None else SeedOrigin.UNKNOWN,
        scheduler_requested=final.sampler_name if final else None,
        scheduler=scheduler,
        prompt=output.prompt,
        negative_prompt=output.negative_prompt,
        width=output.width,
        height=output.height,
        steps=final.steps if final else None,
        cfg_scale=final.cfg if final else None,
        output_format=output_format,
        params=redact(params),
        source=source,
        output_index=output_index,
        created_at=created_at or utcnow(),
        idempotency_key=idempotency_key,
    )
