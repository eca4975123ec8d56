"""The server's one entry to the video, audio and 3D generators, and the 3dInference
result shape (``outputs.files``), kept out of the server module."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

from ledger.backends.reference.generator import Output


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
