"""The server's one entry to the video, audio and 3D generators, and the 3dInference
result shape (``outputs.files``), kept out of the server module."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ledger.backends.reference.generator import _SEED_RANGE, Output, _fresh_rng, _rng
from ledger.core.schedulers import classify
from ledger.core.seeds import random_seed


@dataclass(frozen=True)
class Draw:
    """What one audio or 3D output is drawn from, by the rules images follow."""

    scheduler: str
    stochastic: bool
    seed: int | None
    rng: np.random.Generator


def draw(gen: Any, kind: str, model: str, seed: int | None, scheduler: str | None) -> Draw:
    """The scheduler used, whether it is stochastic, the seed used (None for a seedless
    model, a random one when none was given) and the seeded generator (fresh if seedless;
    a model revision seeds it differently)."""
    used = gen.resolve_scheduler(model, scheduler)
    if gen.is_seedless(model):
        return Draw(used, classify(used).is_stochastic, None, _fresh_rng())
    seed_used = seed if seed is not None else random_seed(_SEED_RANGE)
    rng = _rng(kind, model, seed_used, gen.revision_for(model))
    return Draw(used, classify(used).is_stochastic, seed_used, rng)


def render_media(gen: Any, kind: str, model: str, plan: Mapping[str, Any], seed: int | None) -> Output:
    if kind == "video":
        from ledger.backends.reference.video import render_video

        frames = max(2, min(96, round(plan["duration"] * plan["fps"])))
        return render_video(
            gen,
            model,
            plan["prompt"],
            seed,
            scheduler=plan["scheduler"],
            width=plan["width"],
            height=plan["height"],
            frames=frames,
            fps=plan["fps"],
        )
    if kind == "3d":
        from ledger.backends.reference.mesh import render_mesh

        return render_mesh(
            gen, model, plan["prompt"], seed, scheduler=plan["scheduler"], output_format=plan["output_format"]
        )
    from ledger.backends.reference.audio import render_audio

    return render_audio(
        gen,
        model,
        plan["prompt"],
        seed,
        scheduler=plan["scheduler"],
        duration=plan["duration"],
        output_format=plan["output_format"],
    )


def mesh_result(
    task: Mapping[str, Any],
    plan: Mapping[str, Any],
    output: Output,
    base: str,
    out_uuid: str,
    store: Callable[[str, Output], None],
    cost: float,
) -> dict[str, Any]:
    """A 3dInference result: ``outputs.files`` of ``{uuid, url}`` (inline data when asked)."""
    entry: dict[str, Any] = {"uuid": out_uuid}
    if plan["output_type"] == "URL":
        store(out_uuid, output)
        entry["url"] = f"{base}/outputs/{out_uuid}.{output.extension}"
    else:
        entry["base64Data"] = base64.b64encode(output.data).decode("ascii")
    result: dict[str, Any] = {
        "taskType": task["taskType"],
        "taskUUID": task["taskUUID"],
        "outputs": {"files": [entry]},
    }
    if output.seed is not None:
        result["seed"] = output.seed
    if plan["include_cost"]:
        result["cost"] = cost
    return result
