"""3D fingerprints (GLB/glTF, OBJ, PLY, STL) with trimesh: from geometry, not bytes.

Declarations are checked first (``_mesh_guard``), then trimesh loads the file from
memory (no resolver: nothing outside the bytes is read), scenes flattened with their
transforms. ``pixel_sha256`` is a canonical hash of the geometry quantized to a
power-of-two grid near 10⁻⁶ of the bounding-box diagonal, independent of vertex and
face order: the same mesh re-exported hashes the same, float noise below the grid
mostly does too (and is near-identical otherwise). Shape descriptors from fixed-seed
surface samples decide near-identical and similar: the D2 distribution (distances
between sample pairs) and the D1 distribution (distances from the samples' centroid),
each as QUANTILES quantiles scaled by the samples' RMS radius, so a shape compares
with itself at any scale and the distance between two is an earth mover's distance
(mean quantile gap), which noise moves a little and another shape a lot. A projected
depth thumbnail's phash indexes lookup. Pipeline 1 kept only a D2 histogram over the
bounding-box diagonal (still stored, and compared when either side lacks quantiles).
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from ledger.errors import FingerprintError
from ledger.fingerprint._mesh_guard import DEFAULT_MESH_LIMITS, MeshLimits, check_declared, sniff_mesh
from ledger.fingerprint._types import Fingerprint, Verdict, content_equal, hamming
from ledger.fingerprint.image import THUMB_SIZE, _dhash, _phash, _sha256_hex

#: 2: D1/D2 quantiles (the geometry hash is unchanged, so identical spans 1 and 2).
MESH_PIPELINE = 2
SAMPLES = 16_384
D2_BINS = 32
QUANTILES = 32
_RENDER = 96
_MEDIA_TYPES = {
    "glb": "model/gltf-binary",
    "gltf": "model/gltf+json",
    "obj": "model/obj",
    "ply": "application/ply",
    "stl": "model/stl",
}

__all__ = ["DEFAULT_MESH_LIMITS", "MeshLimits", "compare_meshes", "fingerprint_mesh", "sniff_mesh"]


def mesh_version() -> str:
    import trimesh

    return f"mfp{MESH_PIPELINE}+tm{trimesh.__version__}+np{np.__version__}"


@dataclass(frozen=True, kw_only=True)
class MeshDetail:
    file_type: str
    vertices: int
    faces: int
    bbox_min: tuple[float, float, float]
    bbox_max: tuple[float, float, float]
    area: float
    volume: float | None
    watertight: bool
    d2: tuple[float, ...]
    #: Pipeline 2 (empty in pipeline-1 payloads): quantiles over the RMS radius.
    d2_quantiles: tuple[float, ...] = ()
    d1_quantiles: tuple[float, ...] = ()
    #: A multi-file result (``mesh_files``): each file's ``type:sha256``, in result order.
    parts: tuple[str, ...] = ()

    @property
    def diagonal(self) -> float:
        return math.dist(self.bbox_min, self.bbox_max)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["d2"] = list(self.d2)
        data["d2_quantiles"] = list(self.d2_quantiles)
        data["d1_quantiles"] = list(self.d1_quantiles)
        data["parts"] = list(self.parts)
        return data


def fingerprint_mesh(data: bytes, *, limits: MeshLimits = DEFAULT_MESH_LIMITS) -> Fingerprint:
    if not data:
        raise FingerprintError("empty input (0 bytes) is not a mesh")
    from ledger.fingerprint.mesh_files import fingerprint_mesh_files, is_packed

    if is_packed(data):  # a result of several files, fingerprinted together
        return fingerprint_mesh_files(data, limits=limits)
    file_type = sniff_mesh(data)
    if file_type is None:
        raise FingerprintError("not a supported 3D file (GLB, glTF, OBJ, PLY, STL)")
    check_declared(data, file_type, limits)
    vertices, faces = _load(data, file_type, limits)
    return _fingerprint(data, file_type, vertices, faces)


def _load(data: bytes, file_type: str, limits: MeshLimits) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    try:
        loaded = trimesh.load(io.BytesIO(data), file_type=file_type, force="mesh", process=True)
    except MemoryError:
        raise FingerprintError("not enough memory to load the mesh") from None
    except Exception as exc:  # trimesh's loaders raise anything from ValueError to KeyError
        text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise FingerprintError(
            f"cannot load the {file_type.upper()} mesh, truncated or corrupt: {text}"
        ) from None
    vertices = np.asarray(getattr(loaded, "vertices", np.zeros((0, 3))), np.float64)
    faces = np.asarray(getattr(loaded, "faces", np.zeros((0, 3))), np.int64)
    if len(vertices) > limits.max_vertices or len(faces) > limits.max_faces:
        raise FingerprintError(f"mesh has {len(vertices)} vertices and {len(faces)} faces, above the limits")
    if len(faces) == 0 or len(vertices) < 3:
        raise FingerprintError(f"the {file_type.upper()} file holds no triangles")
    if not np.isfinite(vertices).all():
        raise FingerprintError("mesh has non-finite vertex coordinates")
    return vertices, faces


def _fingerprint(
    data: bytes, file_type: str, vertices: np.ndarray, faces: np.ndarray, *, media_type: str | None = None
) -> Fingerprint:
    import trimesh

    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    diag = float(np.linalg.norm(hi - lo)) or 1.0
    qv, qf, step = _canonical(vertices, faces, diag)
    digest = hashlib.sha256(b"seedledger-mesh:%d:%d:" % (len(qv), len(qf)))
    digest.update(qv.astype("<i8").tobytes())
    digest.update(qf.astype("<i8").tobytes())
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    # Samples on the quantized geometry in canonical order: noise below the grid moves
    # no sample, and face or vertex order never matters.
    points = _surface_points(qv * step, qf)
    d2 = _d2(points, diag)
    d2_quantiles, d1_quantiles = _quantiles(points)
    render = _render(points, lo, hi)
    watertight = bool(mesh.is_watertight)
    thumb = io.BytesIO()
    Image.fromarray(render).resize((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BOX).convert("RGB").save(
        thumb, format="PNG", compress_level=9
    )
    detail = MeshDetail(
        file_type=file_type,
        vertices=len(vertices),
        faces=len(faces),
        bbox_min=_xyz(lo),
        bbox_max=_xyz(hi),
        area=round(float(mesh.area), 9),
        volume=round(float(abs(mesh.volume)), 9) if watertight else None,
        watertight=watertight,
        d2=tuple(round(float(v), 6) for v in d2),
        d2_quantiles=d2_quantiles,
        d1_quantiles=d1_quantiles,
    )
    gray = Image.fromarray(render)
    return Fingerprint(
        version=mesh_version(),
        media_type=media_type or _MEDIA_TYPES[file_type],
        file_sha256=_sha256_hex(data),
        pixel_sha256=digest.hexdigest(),
        width=0,
        height=0,
        phash=_phash(gray),
        dhash=_dhash(gray),
        thumbnail=thumb.getvalue(),
        modality="3d",
        detail=detail,
    )


def _canonical(vertices: np.ndarray, faces: np.ndarray, diag: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Quantized vertices sorted, faces remapped, rotated to start at their smallest index
    (winding kept), degenerate and duplicate faces dropped, sorted."""
    step = 2.0 ** math.floor(math.log2(diag * 1e-6))
    q = np.rint(vertices / step).astype(np.int64)
    unique, inverse = np.unique(q, axis=0, return_inverse=True)
    f = inverse.reshape(-1)[faces]
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
    roll = np.argmin(f, axis=1)
    rows = np.arange(len(f))[:, None]
    f = f[rows, (roll[:, None] + np.arange(3)) % 3]
    return unique, np.unique(f, axis=0), step


def _surface_points(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """SAMPLES area-weighted points on the faces as given, fixed seed."""
    tri = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if area.sum() <= 0:
        raise FingerprintError("mesh has no surface area")
    rng = np.random.default_rng(0)
    pick = rng.choice(len(tri), size=SAMPLES, p=area / area.sum())
    u, v = rng.random(SAMPLES), rng.random(SAMPLES)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[pick]
    points: np.ndarray = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
    return points


def _d2(points: np.ndarray, diag: float) -> np.ndarray:
    """Histogram of distances between sample pairs (each point with 8 others), /diagonal."""
    dist = _pair_distances(points)
    hist, _ = np.histogram(dist / diag, bins=D2_BINS, range=(0.0, 1.0))
    shares: np.ndarray = hist / max(hist.sum(), 1)
    return shares


def _pair_distances(points: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [np.linalg.norm(points - np.roll(points, 97 * k + 1, axis=0), axis=1) for k in range(8)]
    )


def _quantiles(points: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """D2 (pair distances) and D1 (distances from the centroid) quantiles over the RMS radius."""
    radius = np.linalg.norm(points - points.mean(axis=0), axis=1)
    scale = float(np.sqrt(np.mean(radius * radius))) or 1.0
    at = (np.arange(QUANTILES) + 0.5) / QUANTILES
    d2 = np.quantile(_pair_distances(points) / scale, at)
    d1 = np.quantile(radius / scale, at)
    return tuple(round(float(v), 6) for v in d2), tuple(round(float(v), 6) for v in d1)


def _xyz(corner: Any) -> tuple[float, float, float]:
    x, y, z = (round(float(v), 9) for v in corner)
    return x, y, z


def _render(points: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """An isometric depth splat of the sample points, nearer = darker, on white."""
    centre, extent = (lo + hi) / 2, float(np.max(hi - lo)) or 1.0
    p = (points - centre) / extent
    a, b = math.radians(35.264), math.radians(45.0)
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    p = p @ (rx @ ry).T
    px = np.clip(((p[:, 0] + 0.9) / 1.8 * _RENDER).astype(int), 0, _RENDER - 1)
    py = np.clip(((0.9 - p[:, 1]) / 1.8 * _RENDER).astype(int), 0, _RENDER - 1)
    depth = np.full(_RENDER * _RENDER, np.inf)
    np.minimum.at(depth, py * _RENDER + px, p[:, 2])
    hit = np.isfinite(depth)
    shade = np.full(depth.shape, 255.0)
    shade[hit] = 40 + (np.clip(depth[hit], -0.9, 0.9) + 0.9) / 1.8 * 170
    return shade.reshape(_RENDER, _RENDER).astype(np.uint8)


# -- comparison ---------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class MeshThresholds:
    near_d2: float
    near_relative: float
    similar_d2: float
    similar_relative: float
    near_shape: float
    similar_shape: float
    similar_geometry: float


#: From scripts/calibrate_media.py (docs/calibration.md). ``*_d2``/``similar_relative``
#: are pipeline 1's histogram rule, used only when a fingerprint has no quantiles.
DEFAULT_MESH_THRESHOLDS = MeshThresholds(
    near_d2=0.02,
    near_relative=1e-3,
    similar_d2=0.10,
    similar_relative=0.10,
    near_shape=0.006,
    similar_shape=0.02,
    similar_geometry=0.05,
)


@dataclass(frozen=True, kw_only=True)
class MeshComparison:
    verdict: Verdict
    reason: str
    pixel_equal: bool
    file_equal: bool
    same_counts: bool
    vertices_a: int
    vertices_b: int
    faces_a: int
    faces_b: int
    bbox_distance: float
    area_relative_diff: float
    volume_relative_diff: float | None
    d2_distance: float
    #: Earth mover's distances between the D2 and D1 quantiles (None: a pipeline-1 side).
    d2_emd: float | None
    d1_emd: float | None
    shape_distance: float | None
    projection_phash_distance: int
    same_version: bool
    version_a: str
    version_b: str
    modality: str = "3d"

    @property
    def phash_distance(self) -> int:
        return self.projection_phash_distance

    @property
    def dhash_distance(self) -> int:
        return round(100 * self.d2_distance)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = str(self.verdict)
        return data


def _mesh(fp: Fingerprint) -> MeshDetail:
    if not isinstance(fp.detail, MeshDetail):
        raise FingerprintError("3D fingerprint carries no geometry facts")
    return fp.detail


def _relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def _emd(a: tuple[float, ...], b: tuple[float, ...]) -> float | None:
    if not a or len(a) != len(b):
        return None
    return round(float(np.abs(np.asarray(a) - np.asarray(b)).mean()), 6)


def compare_meshes(
    a: Fingerprint, b: Fingerprint, *, thresholds: MeshThresholds = DEFAULT_MESH_THRESHOLDS
) -> MeshComparison:
    ma, mb = _mesh(a), _mesh(b)
    diag = max(ma.diagonal, mb.diagonal, 1e-12)
    bbox = max(math.dist(ma.bbox_min, mb.bbox_min), math.dist(ma.bbox_max, mb.bbox_max)) / diag
    area = _relative(ma.area, mb.area)
    volume = None if ma.volume is None or mb.volume is None else round(_relative(ma.volume, mb.volume), 9)
    d2 = float(np.abs(np.asarray(ma.d2) - np.asarray(mb.d2)).sum())
    d2_emd, d1_emd = _emd(ma.d2_quantiles, mb.d2_quantiles), _emd(ma.d1_quantiles, mb.d1_quantiles)
    shape = None if d2_emd is None or d1_emd is None else max(d2_emd, d1_emd)
    same_counts = (ma.vertices, ma.faces) == (mb.vertices, mb.faces)
    equal = content_equal(a, b)
    if equal:
        verdict, reason = Verdict.IDENTICAL, "canonical geometry hashes are equal"
    elif shape is None:
        verdict, reason = _decide_histogram(same_counts, max(bbox, area, volume or 0.0), d2, thresholds)
    else:
        verdict, reason = _decide(same_counts, bbox, area, volume, shape, thresholds)
    return MeshComparison(
        verdict=verdict,
        reason=reason,
        pixel_equal=equal,
        file_equal=a.file_sha256 == b.file_sha256,
        same_counts=same_counts,
        vertices_a=ma.vertices,
        vertices_b=mb.vertices,
        faces_a=ma.faces,
        faces_b=mb.faces,
        bbox_distance=round(bbox, 9),
        area_relative_diff=round(area, 9),
        volume_relative_diff=volume,
        d2_distance=round(d2, 6),
        d2_emd=d2_emd,
        d1_emd=d1_emd,
        shape_distance=shape,
        projection_phash_distance=hamming(a.phash, b.phash),
        same_version=a.version == b.version,
        version_a=a.version,
        version_b=b.version,
    )


def _decide(
    same_counts: bool, bbox: float, area: float, volume: float | None, shape: float, t: MeshThresholds
) -> tuple[Verdict, str]:
    # Noise roughens a surface, so area grows with it: area only speaks for near-identical.
    geometry = max(bbox, volume or 0.0)
    if same_counts and max(geometry, area) <= t.near_relative and shape <= t.near_shape:
        return Verdict.NEAR_IDENTICAL, (
            f"same counts, bbox/area/volume within {t.near_relative:g} and shape distance {shape:.4g} "
            f"<= {t.near_shape:g}"
        )
    if geometry <= t.similar_geometry and shape <= t.similar_shape:
        return Verdict.SIMILAR, (
            f"bbox/volume within {t.similar_geometry:g} and shape distance {shape:.4g} <= {t.similar_shape:g}"
        )
    return Verdict.DIFFERENT, f"bbox/volume apart by {geometry:.4g} or shape distance {shape:.4g}"


def _decide_histogram(
    same_counts: bool, geometry: float, d2: float, t: MeshThresholds
) -> tuple[Verdict, str]:
    """Pipeline 1's rule, for a fingerprint stored before the quantiles existed."""
    why = " (pipeline-1 D2 histogram: a fingerprint predates the shape quantiles)"
    if same_counts and geometry <= t.near_relative and d2 <= t.near_d2:
        return Verdict.NEAR_IDENTICAL, (
            f"same counts, bbox/area/volume within {t.near_relative:g} and D2 distance {d2:.4g} "
            f"<= {t.near_d2:g}{why}"
        )
    if geometry <= t.similar_relative and d2 <= t.similar_d2:
        return Verdict.SIMILAR, (
            f"bbox/area/volume within {t.similar_relative:g} and D2 distance {d2:.4g} "
            f"<= {t.similar_d2:g}{why}"
        )
    return Verdict.DIFFERENT, f"geometry apart by {geometry:.4g} or D2 distance {d2:.4g}{why}"
