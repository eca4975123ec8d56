"""A 3D result of several files (a mesh and its textures, or several meshes), fingerprinted
together as one record.

The files travel as one self-describing blob (:func:`pack_files`: a magic line, the file
count, then each file's length and bytes), so every path that carries an output's bytes
(spool entries, replays, ``fingerprint FILE``) carries a multi-file result unchanged.
Its fingerprint is one 3D fingerprint: the geometry of every mesh file merged (the
canonical hash sorts vertices and faces, so the files' order does not matter), each
other file folded into ``pixel_sha256`` by its content hash (an image's decoded pixels,
anything else its bytes), and the per-file list in ``MeshDetail.parts``.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ledger.errors import FingerprintError
from ledger.fingerprint._mesh_guard import DEFAULT_MESH_LIMITS, MeshLimits, check_declared, sniff_mesh
from ledger.fingerprint._types import Fingerprint

MAGIC = b"seedledger-3d-files\n"
#: More files than this in one result is refused (a result is a mesh and a few textures).
MAX_FILES = 64
MEDIA_TYPE = "application/x-seedledger-3d-files"
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")


def is_packed(data: bytes) -> bool:
    return data.startswith(MAGIC)


def pack_files(files: Sequence[bytes]) -> bytes:
    """One blob holding ``files`` in order; a single file is returned as it is."""
    if len(files) == 1:
        return bytes(files[0])
    if not 1 < len(files) <= MAX_FILES:
        raise FingerprintError(f"a 3D result has {len(files)} files; expected 1 to {MAX_FILES}")
    parts = [MAGIC, struct.pack("<I", len(files))]
    for data in files:
        parts += [struct.pack("<Q", len(data)), bytes(data)]
    return b"".join(parts)


def unpack_files(data: bytes) -> list[bytes]:
    """The files of a :func:`pack_files` blob; one-line FingerprintError when malformed."""
    pos = len(MAGIC)
    if not is_packed(data) or len(data) < pos + 4:
        raise FingerprintError("not a packed multi-file 3D result")
    (count,) = struct.unpack_from("<I", data, pos)
    if not 1 < count <= MAX_FILES:
        raise FingerprintError(f"packed 3D result declares {count} files; expected 2 to {MAX_FILES}")
    pos += 4
    files = []
    for index in range(count):
        if pos + 8 > len(data):
            raise FingerprintError(f"packed 3D result is truncated before file {index + 1} of {count}")
        (size,) = struct.unpack_from("<Q", data, pos)
        pos += 8
        if pos + size > len(data):
            raise FingerprintError(f"packed 3D result is truncated inside file {index + 1} of {count}")
        files.append(data[pos : pos + size])
        pos += size
    if pos != len(data):
        raise FingerprintError(f"packed 3D result has {len(data) - pos} bytes after its last file")
    return files


def fingerprint_mesh_files(data: bytes, *, limits: MeshLimits = DEFAULT_MESH_LIMITS) -> Fingerprint:
    from ledger.fingerprint.mesh import _fingerprint, _load

    files = unpack_files(data)
    meshes: list[tuple[np.ndarray, np.ndarray]] = []
    types, part_hashes, others = [], [], []
    vertices_left, faces_left = limits.max_vertices, limits.max_faces
    for index, part in enumerate(files, 1):
        file_type = sniff_mesh(part) if part else None
        if file_type is None:
            kind, content = _other_content(part)
            types.append(kind)
            others.append(content)
        else:
            try:
                part_limits = MeshLimits(max_vertices=vertices_left, max_faces=faces_left)
                check_declared(part, file_type, part_limits)
                vertices, faces = _load(part, file_type, part_limits)
            except FingerprintError as exc:
                raise FingerprintError(f"file {index} of the 3D result: {exc}") from None
            vertices_left -= len(vertices)
            faces_left -= len(faces)
            meshes.append((vertices, faces))
            types.append(file_type)
        part_hashes.append(f"{types[-1]}:{hashlib.sha256(part).hexdigest()}")
    if not meshes:
        raise FingerprintError(
            f"none of the 3D result's {len(files)} files is a mesh (GLB, glTF, OBJ, PLY, STL)"
        )
    offsets = np.cumsum([0] + [len(v) for v, _ in meshes[:-1]])
    merged_v = np.concatenate([v for v, _ in meshes])
    merged_f = np.concatenate([f + off for (_, f), off in zip(meshes, offsets, strict=True)])
    fp = _fingerprint(data, "+".join(types), merged_v, merged_f, media_type=MEDIA_TYPE)
    digest = hashlib.sha256(b"seedledger-3d-files:" + fp.pixel_sha256.encode())
    for content in sorted(others):  # the files' order is not content
        digest.update(b":" + content.encode())
    return replace(fp, pixel_sha256=digest.hexdigest(), detail=replace(fp.detail, parts=tuple(part_hashes)))


def _other_content(part: bytes) -> tuple[str, str]:
    """(kind, content hash) of a file that is not a mesh: an image by its decoded pixels
    (a texture re-encoded losslessly is the same texture), anything else by its bytes."""
    if part.startswith(_IMAGE_MAGIC) or (part[:4] == b"RIFF" and part[8:12] == b"WEBP"):
        from ledger.fingerprint.image import fingerprint_bytes

        try:
            return "image", "image:" + fingerprint_bytes(part).pixel_sha256
        except FingerprintError:
            pass  # an unreadable texture still counts, by its bytes
    return "file", "file:" + hashlib.sha256(part).hexdigest()
