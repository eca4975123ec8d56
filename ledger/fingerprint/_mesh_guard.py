"""What a mesh file declares, checked before trimesh parses it.

A GLB or glTF can declare a billion vertices in a few bytes, point a buffer at a file
or URL, or wrap its geometry in a compression extension (Draco, meshopt) whose
decoder would inflate it: all refused here in one line. PLY headers and binary STL
counts are checked likewise; OBJ is plain text, bounded by the file size.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from dataclasses import dataclass
from typing import Any

from ledger.errors import FingerprintError


@dataclass(frozen=True, kw_only=True)
class MeshLimits:
    max_vertices: int = 5_000_000
    max_faces: int = 10_000_000


DEFAULT_MESH_LIMITS = MeshLimits()

_OBJ_LINE = re.compile(rb"^\s*(v|vt|vn|f|o|g|s|l|usemtl|mtllib|#)(\s|$)")
_BUFFER_TYPES = ("data:application/octet-stream;base64,", "data:application/gltf-buffer;base64,")


def sniff_mesh(data: bytes) -> str | None:
    """trimesh's file type for ``data`` (glb, gltf, ply, stl, obj), or None."""
    head = data[:512]
    if head.startswith(b"glTF"):
        return "glb"
    if head.startswith(b"ply\n") or head.startswith(b"ply\r\n"):
        return "ply"
    stripped = head.lstrip()
    if stripped.startswith(b"{") and b'"asset"' in data[:65536]:
        return "gltf"
    if stripped.startswith(b"solid") and b"facet" in data[:4096]:
        return "stl"
    # Binary STL has no magic: an 80-byte header and a triangle count that fits the size.
    stl_size = 84 + 50 * int.from_bytes(data[80:84], "little") if len(data) >= 84 else -1
    if len(data) == stl_size and not _is_text(head):
        return "stl"
    lines = [line for line in data[:65536].splitlines() if line.strip()][:50]
    if (
        lines
        and all(_OBJ_LINE.match(line) for line in lines[:-1])
        and any(line.startswith(b"v ") for line in lines)
    ):
        return "obj"
    return None


def _is_text(head: bytes) -> bool:
    return all(32 <= b < 127 or b in (9, 10, 13) for b in head)


def check_declared(data: bytes, file_type: str, limits: MeshLimits) -> None:
    if file_type == "glb":
        _check_gltf(*_glb_chunks(data), limits)
    elif file_type == "gltf":
        _check_gltf(_json(data), None, limits)
    elif file_type == "ply":
        _check_ply(data, limits)
    elif file_type == "stl" and not data.lstrip().startswith(b"solid"):
        count = struct.unpack_from("<I", data, 80)[0]
        _limit("faces", count, limits.max_faces)
        _limit("vertices", 3 * count, limits.max_vertices)
        if len(data) != 84 + 50 * count:
            raise FingerprintError(
                f"binary STL declares {count} triangles ({84 + 50 * count} bytes) but the file has "
                f"{len(data)} bytes: truncated or not an STL"
            )


def _limit(what: str, count: int, limit: int) -> None:
    if count > limit:
        raise FingerprintError(f"mesh declares {count} {what}, above the limit of {limit}; refusing to load")


def _glb_chunks(data: bytes) -> tuple[dict[str, Any], int]:
    if len(data) < 20:
        raise FingerprintError("GLB is truncated (no header)")
    _, version, length = struct.unpack_from("<4sII", data, 0)
    if version != 2:
        raise FingerprintError(f"GLB version {version} is not supported (only 2)")
    if length != len(data):
        raise FingerprintError(f"GLB declares {length} bytes but has {len(data)}: truncated or padded")
    json_len, json_type = struct.unpack_from("<II", data, 12)
    if json_type != 0x4E4F534A or 20 + json_len > len(data):
        raise FingerprintError("GLB has no readable JSON chunk")
    doc = _json(data[20 : 20 + json_len])
    pos = 20 + json_len
    bin_len = struct.unpack_from("<I", data, pos)[0] if pos + 8 <= len(data) else 0
    if pos + 8 + bin_len > len(data):
        raise FingerprintError("GLB binary chunk runs past the end of the file: truncated")
    return doc, bin_len


def _json(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FingerprintError(f"glTF JSON is unreadable: {str(exc)[:120]}") from None
    if not isinstance(doc, dict):
        raise FingerprintError("glTF JSON is not an object")
    return doc


def _check_gltf(doc: dict[str, Any], bin_len: int | None, limits: MeshLimits) -> None:
    required = doc.get("extensionsRequired") or []
    if required:
        raise FingerprintError(
            f"glTF requires extensions {', '.join(map(str, required))}; compressed or extended "
            "buffers are not decoded"
        )
    sizes = []
    for k, buf in enumerate(_list(doc, "buffers")):
        declared = int(buf.get("byteLength", 0))
        uri = buf.get("uri")
        if uri is None:
            actual = bin_len or 0
        elif isinstance(uri, str) and uri.startswith(_BUFFER_TYPES):
            try:
                actual = len(base64.b64decode(uri.split(",", 1)[1], validate=True))
            except (binascii.Error, ValueError):
                raise FingerprintError(f"glTF buffer {k} is not valid base64") from None
        else:
            raise FingerprintError(
                f"glTF buffer {k} is not embedded ({str(uri)[:40]!r}); only embedded buffers are read"
            )
        if declared > actual:
            raise FingerprintError(f"glTF buffer {k} declares {declared} bytes but holds {actual}")
        sizes.append(declared)
    views = _list(doc, "bufferViews")
    for k, view in enumerate(views):
        buffer = int(view.get("buffer", -1))
        end = int(view.get("byteOffset", 0)) + int(view.get("byteLength", 0))
        if not 0 <= buffer < len(sizes) or end > sizes[buffer]:
            raise FingerprintError(f"glTF bufferView {k} lies outside its buffer")
    accessors = _list(doc, "accessors")
    vertices = faces = 0
    for mesh in _list(doc, "meshes"):
        for prim in mesh.get("primitives", []) if isinstance(mesh, dict) else []:
            pos = (prim.get("attributes") or {}).get("POSITION")
            if isinstance(pos, int) and 0 <= pos < len(accessors):
                vertices += int(accessors[pos].get("count", 0))
            idx = prim.get("indices")
            if isinstance(idx, int) and 0 <= idx < len(accessors):
                faces += int(accessors[idx].get("count", 0)) // 3
    _limit("vertices", vertices, limits.max_vertices)
    _limit("faces", faces, limits.max_faces)
    for k, acc in enumerate(accessors):
        count = int(acc.get("count", 0))
        _limit("accessor elements", count, limits.max_vertices * 3)
        view = acc.get("bufferView")
        if isinstance(view, int) and 0 <= view < len(views):
            need = int(acc.get("byteOffset", 0)) + count * _element_bytes(acc)
            if (
                need
                > int(views[view].get("byteLength", 0)) + int(views[view].get("byteStride", 0) or 0) * count
            ):
                raise FingerprintError(f"glTF accessor {k} declares {count} elements beyond its bufferView")


def _element_bytes(acc: dict[str, Any]) -> int:
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}.get(
        acc.get("type"), 1
    )
    size = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}.get(acc.get("componentType"), 4)
    return width * size


def _list(doc: dict[str, Any], key: str) -> list[Any]:
    value = doc.get(key) or []
    if not isinstance(value, list):
        raise FingerprintError(f"glTF {key} is not a list")
    return value


def _check_ply(data: bytes, limits: MeshLimits) -> None:
    end = data.find(b"end_header", 0, 65536)
    if end < 0:
        raise FingerprintError("PLY header has no end_header within 64 KB")
    for line in data[:end].decode("ascii", "replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "element":
            try:
                count = int(parts[2])
            except ValueError:
                raise FingerprintError(f"PLY header line {line[:60]!r} has no count") from None
            if parts[1] == "vertex":
                _limit("vertices", count, limits.max_vertices)
            elif parts[1] == "face":
                _limit("faces", count, limits.max_faces)
            else:
                _limit(f"{parts[1]} elements", count, limits.max_vertices)
