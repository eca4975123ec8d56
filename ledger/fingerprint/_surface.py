"""The one surface over every modality: ``fingerprint(data, modality)`` and ``compare(a, b)``.

The modality comes from the caller (a record knows its own) or is sniffed from the
leading bytes; the heavy decoders (PyAV, trimesh) load only when a file needs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ledger.errors import FingerprintError
from ledger.fingerprint._decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from ledger.fingerprint._types import MODALITIES, Fingerprint

_VIDEO_BRANDS = (b"qt  ",)
_AUDIO_BRANDS = (b"M4A ", b"M4B ", b"M4P ", b"F4A ")


def sniff_modality(data: bytes) -> str:
    """image, video, audio or 3d from the leading bytes; FingerprintError if none fits."""
    from ledger.fingerprint._animated import is_animated_image

    head = data[:64]
    if not head:
        raise FingerprintError("empty input (0 bytes) is not a media file")
    from ledger.fingerprint.mesh_files import is_packed

    if is_packed(data):
        return "3d"
    if head.startswith(b"PK\x03\x04"):
        raise FingerprintError("archives (zip) are not fingerprinted; unpack the output first")
    if head[:6] in (b"GIF87a", b"GIF89a") or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "video" if is_animated_image(data) else "image"
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"BM")):
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio"
    if head.startswith((b"fLaC", b"ID3")) or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio"
    if head[4:8] == b"ftyp":
        return "audio" if head[8:12] in _AUDIO_BRANDS else _video_or_audio(data)
    if head.startswith((b"\x1a\x45\xdf\xa3", b"OggS")):
        return _video_or_audio(data)
    from ledger.fingerprint.mesh import sniff_mesh

    if sniff_mesh(data) is not None:
        return "3d"
    raise FingerprintError(f"not a supported image, video, audio or 3D file; {_describe(data)}")


def _video_or_audio(data: bytes) -> str:
    from ledger.fingerprint import _av

    with _av.open_container(data, "media") as container:
        return "video" if container.streams.video else "audio"


def fingerprint(
    data: bytes,
    modality: str | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    like: Fingerprint | None = None,
    **limits: Any,
) -> Fingerprint:
    """Fingerprint ``data`` as ``modality`` (sniffed when None); one-line FingerprintError otherwise.

    ``like`` is a stored fingerprint this one will be compared with (an audit's
    original): a video is then hashed with the content hash ``like`` carries, so a
    replay still compares ``identical`` with a record made before that hash changed."""
    kind = sniff_modality(data) if modality is None else str(modality)
    if kind not in MODALITIES:
        raise FingerprintError(f"unknown modality {kind!r}; expected one of {', '.join(MODALITIES)}")
    if kind == "image":
        from ledger.fingerprint.image import fingerprint_bytes

        return fingerprint_bytes(data, max_pixels=max_pixels)
    try:
        return _fingerprint_media(data, kind, limits, like)
    except ImportError as exc:
        raise FingerprintError(
            f"{kind} fingerprints need {exc.name or 'a missing library'}: pip install 'seedledger[media]'"
        ) from None


def _fingerprint_media(
    data: bytes, kind: str, limits: dict[str, Any], like: Fingerprint | None
) -> Fingerprint:
    if kind == "video":
        from ledger.fingerprint.video import fingerprint_video, pipeline_like

        if like is not None and like.modality == "video":
            limits = {"pipeline": pipeline_like(like.version), **limits}
        return fingerprint_video(data, **limits)
    if kind == "audio":
        from ledger.fingerprint.audio import fingerprint_audio

        return fingerprint_audio(data, **limits)
    from ledger.fingerprint.mesh import fingerprint_mesh

    return fingerprint_mesh(data, **limits)


def fingerprint_file(
    path: str | Path,
    modality: str | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    like: Fingerprint | None = None,
) -> Fingerprint:
    from ledger.fingerprint.image import read_bounded

    return fingerprint(read_bounded(path, max_bytes), modality, max_pixels=max_pixels, like=like)


def compare(a: Fingerprint, b: Fingerprint, **options: Any) -> Any:
    """Compare two fingerprints of one modality: a comparison with ``verdict``, ``reason``,
    ``same_version`` and ``to_dict()``. Different modalities are refused in one line."""
    if a.modality != b.modality:
        raise FingerprintError(f"cannot compare {a.modality} with {b.modality}: the modalities differ")
    if a.modality == "image":
        from ledger.fingerprint._compare import compare_images

        return compare_images(a, b, **options)
    if a.modality == "video":
        from ledger.fingerprint.video_compare import compare_videos

        return compare_videos(a, b, **options)
    if a.modality == "audio":
        from ledger.fingerprint.audio import compare_audio

        return compare_audio(a, b, **options)
    from ledger.fingerprint.mesh import compare_meshes

    return compare_meshes(a, b, **options)


def _describe(data: bytes) -> str:
    from ledger.fingerprint._decode import _describe as describe

    return describe(data)
