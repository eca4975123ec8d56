"""One recorded pipeline call as one spool entry: its facts, expanded into records by
whoever reads the entry (the writer, ``spool drain``, ``spool status``).

``record_pipeline`` writes only what the call was (JSON arguments, seeds, scheduler,
environment, image sizes; the pixels beside them, :mod:`ledger.capture.pixels`) on the
caller's path, so a call is in the spool when it returns at the cost of one small JSON
encoding and one ``write(2)``. :func:`call_rows` builds the call's records from those
facts, one per output image, with the idempotency keys and creation time the caller
fixed: an entry read twice (a replay after a crash) gives the same records. No torch
here: any process can drain the entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ledger.core.diffusers_names import name_for_diffusers
from ledger.core.records import Modality, NewRecord, SeedOrigin, Source

BACKEND = "diffusers"


def output_key(call_id: str, index: int) -> str:
    """The idempotency key of output ``index`` of call ``call_id``."""
    return f"{BACKEND}:{call_id}:{index}"


def call_records(call: Mapping[str, Any]) -> list[NewRecord]:
    """The records of one call's facts (see ``RecordedPipeline._facts``), one per image."""
    scheduler = call["scheduler"]
    generator = call["generator"]
    seeds = [(seed, bool(advanced)) for seed, advanced in call["seeds"]]
    advanced = any(a for _, a in seeds)
    kind = generator["kind"]
    params: dict[str, Any] = dict(call["arguments"])
    params.update(
        {
            "pipeline": call["pipeline"],
            "scheduler_class": scheduler["class"],
            "scheduler_config": scheduler["config"],
            "generator": {
                "kind": kind,
                "device": generator["device"],
                "state": "advanced" if advanced else "fresh" if kind != "none" else "none",
            },
            "model_info": call["model_info"],
        }
    )
    if call.get("model_hash"):
        params["model_hash"] = call["model_hash"]
    if call.get("adapters"):
        params["adapters"] = call["adapters"]
    if call.get("unrecorded"):
        params["unrecorded_arguments"] = list(call["unrecorded"])
    scheduler_name = name_for_diffusers(scheduler["class"], scheduler["config"])
    prompt, negative = params.get("prompt"), params.get("negative_prompt")
    steps, guidance = params.get("num_inference_steps"), params.get("guidance_scale")
    created = datetime.fromtimestamp(call["at"], UTC)
    single = kind != "list"
    records: list[NewRecord] = []
    for index, width, height, has_output in call["images"]:
        # One generator is consumed across the batch: every image carries its seed
        # and its output_index (a replay runs the same batch and picks the image).
        seed = (seeds[0][0] if seeds else None) if single else seeds[index][0] if index < len(seeds) else None
        if width is None or height is None:  # not a PIL image: the size asked for
            width, height = params.get("width"), params.get("height")
        records.append(
            NewRecord(
                backend=BACKEND,
                task_type="imageInference",
                modality=Modality.IMAGE,
                model=call["model"],
                seed=seed,
                seed_origin=SeedOrigin.REQUEST if seed is not None else SeedOrigin.UNKNOWN,
                scheduler_requested=scheduler["class"],
                scheduler=scheduler_name,
                prompt=prompt if isinstance(prompt, str) else None,
                negative_prompt=negative if isinstance(negative, str) else None,
                width=width if isinstance(width, int) else None,
                height=height if isinstance(height, int) else None,
                steps=steps if isinstance(steps, int) else None,
                cfg_scale=float(guidance) if isinstance(guidance, int | float) else None,
                output_format="PNG" if has_output else None,
                params=params,
                task_uuid=call["id"],
                output_index=index,
                source=Source.HOOK,
                tags=tuple(call["tags"]),
                experiment_id=call.get("experiment_id"),
                created_at=created,
                idempotency_key=output_key(call["id"], index),
            )
        )
    return records
