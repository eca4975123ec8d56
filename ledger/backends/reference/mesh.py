"""Reference 3D: a seeded torus knot-ish primitive as a GLB (or OBJ/PLY/STL), seeded like
images: deterministic schedulers repeat exactly, stochastic ones jitter the vertices, a
new model revision changes the shape."""

from __future__ import annotations

from typing import Any

import numpy as np

#: Runware outputFormat -> (trimesh file type, extension, media type)
FORMATS: dict[str, tuple[str, str, str]] = {
    "GLB": ("glb", "glb", "model/gltf-binary"),
    "OBJ": ("obj", "obj", "model/obj"),
    "PLY": ("ply", "ply", "application/ply"),
    "STL": ("stl", "stl", "model/stl"),
}


def render_mesh(
    gen: Any,
    model: str,
    prompt: str,
    seed: int | None,
    *,
    scheduler: str | None = None,
    output_format: str = "GLB",
) -> Any:
    import trimesh

    from ledger.backends.reference.generator import Output, _digest, _fresh_rng
    from ledger.backends.reference.media import draw
    from ledger.errors import InvalidInputError

    fmt = output_format.upper()
    if fmt not in FORMATS:
        raise InvalidInputError(f"outputFormat {output_format!r} is not one of {', '.join(FORMATS)}")
    d = draw(gen, "mesh", model, seed, scheduler)
    used, stochastic, seed_used, rng = d.scheduler, d.stochastic, d.seed, d.rng
    major = 1.0 + 0.02 * (_digest("shape", prompt) % 10)
    mesh = trimesh.creation.torus(major, float(rng.uniform(0.2, 0.45)), major_sections=48, minor_sections=16)
    v = mesh.vertices.copy()
    # Seeded lobes around the ring: each seed (and revision) a visibly different shape.
    angle = np.arctan2(v[:, 1], v[:, 0])
    lobes = int(rng.integers(2, 6))
    v[:, 2] *= 1 + float(rng.uniform(0.2, 0.8)) * np.cos(lobes * angle + float(rng.uniform(0, 6)))
    if stochastic:
        v += _fresh_rng().normal(0, 0.008, v.shape)
    mesh = trimesh.Trimesh(v, mesh.faces, process=False)
    file_type, ext, ctype = FORMATS[fmt]
    data = mesh.export(file_type=file_type)
    return Output(
        data.encode() if isinstance(data, str) else data,
        seed_used,
        ext,
        ctype,
        seeded=seed_used is not None,
        stochastic=stochastic,
        scheduler=used,
    )
