"""Video, audio and 3D files: the generation metadata their containers carry.

* MP4/MOV/WEBM/MKV, WAV/MP3/FLAC/OGG/M4A: the container's and first stream's tags as
  PyAV reports them (keys case-folded). ComfyUI's native savers (``SaveVideo``,
  ``SaveWEBM``, ``SaveAudio``…) write ``prompt`` and ``workflow`` tags; Video Helper
  Suite's ``VHS_VideoCombine`` writes one ``comment`` tag holding
  ``{"prompt": "<API graph as JSON text>", "workflow": {…}}``.
* Animated GIF: its comment extension, read the same way.
* GLB: the glTF ``asset.extras`` object (ComfyUI's ``SaveGLB`` puts ``prompt`` and
  ``workflow`` there).
* Any of them: a ``seedledger`` tag (or ``asset.extras.seedledger``) holding a stamp.

Only tags are read here (no frame is decoded); the fingerprint decodes the content.
A file with none of these is refused with what it does carry.
"""

from __future__ import annotations

import dataclasses
import io
import json
import struct
from collections.abc import Mapping
from typing import Final

from ledger.core.jsonsafe import loads_bounded
from ledger.core.records import Modality, NewRecord
from ledger.errors import FingerprintError, InvalidInputError
from ledger.workflows.readers.base import Context, Reading, json_object
from ledger.workflows.readers.carriers import Carriers
from ledger.workflows.readers.comfyui import ComfyUIReader
from ledger.workflows.readers.stamps import record_from_stamp
from ledger.workflows.stamp import STAMP_KEYWORD, Stamp

__all__ = ["media_kind", "read_media"]

_TASKS: Final = {
    "image": "imageInference",
    "video": "videoInference",
    "audio": "audioInference",
    "3d": "3dInference",
}
_MODALITIES: Final = {
    "image": Modality.IMAGE,
    "video": Modality.VIDEO,
    "audio": Modality.AUDIO,
    "3d": Modality.MODEL_3D,
}
#: Tags holding a JSON object with the ComfyUI graphs (VHS writes ``comment``).
_JSON_TAGS: Final = ("comment", "description", "parameters")
#: Tags every muxer writes, left out of a skip reason (they say nothing about generation).
_STRUCTURAL: Final = frozenset(
    {"major_brand", "minor_version", "compatible_brands", "handler_name", "language", "vendor_id", "duration"}
)
#: A tag longer than this is not read (FFmpeg already bounds tags by the file size).
MAX_TAG_CHARS: Final = 32 * 1024 * 1024


def media_kind(data: bytes) -> tuple[str, str] | None:
    """(modality, file kind) of a video, audio or GLB file, or None for anything else
    (images and text are read by the other readers)."""
    head = data[:16]
    if head.startswith(b"glTF"):
        return "3d", "glb"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        from ledger.fingerprint._animated import is_animated_image

        return ("video" if is_animated_image(data) else "image"), "gif"  # a still GIF is an image
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio", "wav"
    if head.startswith(b"fLaC"):
        return "audio", "flac"
    if head.startswith(b"ID3") or _mp3_frame(head):
        return "audio", "mp3"
    if head[4:8] == b"ftyp" or head.startswith((b"\x1a\x45\xdf\xa3", b"OggS")):
        from ledger.fingerprint import sniff_modality

        try:
            modality = sniff_modality(data)
        except FingerprintError as exc:
            label = "OGG" if head.startswith(b"OggS") else ("MP4" if head[4:8] == b"ftyp" else "MKV/WEBM")
            raise _unreadable(label, exc) from None
        if head.startswith(b"OggS"):
            return modality, "ogg"
        if head[4:8] == b"ftyp":
            return modality, "m4a" if modality == "audio" else ("mov" if head[8:12] == b"qt  " else "mp4")
        return modality, "webm" if b"webm" in data[:64] else "mkv"
    return None


def _mp3_frame(head: bytes) -> bool:
    """An MPEG audio layer III frame header: sync, layer bits 01, a real bitrate and rate
    (two stray 0xFF bytes are not enough)."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    return head[1] & 0x06 == 0x02 and 0 < head[2] >> 4 < 15 and (head[2] >> 2) & 0x03 != 3


def read_media(data: bytes, ctx: Context, modality: str) -> Reading:
    """The records of one video/audio/GLB file (the bytes ride along to be fingerprinted
    as ``modality``). Raises InvalidInputError with the reason."""
    tags = _glb_extras(data) if ctx.kind == "glb" else _container_tags(data, ctx.kind)
    label = ctx.kind.upper()
    if STAMP_KEYWORD in tags:
        stamp = Stamp.from_json(tags[STAMP_KEYWORD])
        record = _as_modality(record_from_stamp(stamp, ctx), modality, f"{ctx.kind}:{STAMP_KEYWORD}")
        return Reading("seedledger-stamp", (record,), data, stamp, modality=modality)
    graphs, where = _comfy_graphs(tags)
    if graphs:
        carriers = Carriers(kind=ctx.kind, text=graphs)
        records = ComfyUIReader().read(carriers, ctx)
        records = tuple(_as_modality(r, modality, f"{ctx.kind}:{where}") for r in records)
        return Reading(f"comfyui-{ctx.kind}", records, data, modality=modality)
    shown = ", ".join(sorted(k for k in tags if k not in _STRUCTURAL)[:8]) or "none"
    what = "glTF asset.extras keys" if ctx.kind == "glb" else "container tags"
    raise InvalidInputError(f"{label} has no generation metadata seedledger reads ({what}: {shown})")


def _as_modality(record: NewRecord, modality: str, carrier: str) -> NewRecord:
    params = dict(record.params)
    info = dict(params.get("import") or {})
    info["carrier"] = carrier
    params["import"] = info
    return dataclasses.replace(
        record, modality=_MODALITIES[modality], task_type=_TASKS[modality], params=params
    )


def _comfy_graphs(tags: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """{"prompt": text, "workflow": text} from direct tags or a JSON ``comment``."""
    direct = {k: tags[k] for k in ("prompt", "workflow") if k in tags}
    if direct:
        return direct, "+".join(sorted(direct))
    for key in _JSON_TAGS:
        doc = json_object(tags.get(key))
        if doc is None or not ({"prompt", "workflow"} & set(doc)):
            continue
        out = {}
        for name in ("prompt", "workflow"):
            value = doc.get(name)
            if isinstance(value, str):
                out[name] = value
            elif isinstance(value, dict):
                out[name] = json.dumps(value)
        if out:
            return out, key
    return {}, ""


def _container_tags(data: bytes, kind: str) -> dict[str, str]:
    if kind == "gif":
        return _gif_comment(data)
    from ledger.fingerprint import _av

    tags: dict[str, str] = {}
    try:
        with _av.open_container(data, "media") as container:
            streams = [*container.streams.video[:1], *container.streams.audio[:1]]
            if not streams or any(st.codec_context is None for st in streams):
                # FFmpeg opens a file cut before its index with codec-less streams
                raise InvalidInputError(
                    f"{kind.upper()} holds no readable video or audio stream (truncated or corrupt)"
                )
            for source in (container.metadata, *(s.metadata for s in streams)):
                for key, value in source.items():
                    if isinstance(value, str) and len(value) <= MAX_TAG_CHARS:
                        tags.setdefault(str(key).casefold(), value)
    except FingerprintError as exc:
        raise _unreadable(kind.upper(), exc) from None
    return tags


def _unreadable(label: str, exc: FingerprintError) -> InvalidInputError:
    if exc.message.startswith("cannot read the media container"):  # e.g. cut before its index
        return InvalidInputError(f"{label} cannot be read (truncated or corrupt): {exc.message}")
    return InvalidInputError(exc.message)


def _gif_comment(data: bytes) -> dict[str, str]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=("GIF",)) as im:
            raw = im.info.get("comment")
    except Exception as exc:  # Pillow raises many types for a broken GIF
        raise InvalidInputError(f"cannot read the GIF: {exc.__class__.__name__}") from None
    if not isinstance(raw, bytes) or not raw:
        return {}
    text = raw.decode("utf-8", errors="replace")
    doc = json_object(text)
    if doc is not None and STAMP_KEYWORD in doc and isinstance(doc[STAMP_KEYWORD], dict | str):
        value = doc[STAMP_KEYWORD]
        return {STAMP_KEYWORD: value if isinstance(value, str) else json.dumps(value)}
    return {"comment": text}


def _glb_extras(data: bytes) -> dict[str, str]:
    """``asset.extras`` of a GLB as text values (objects as JSON text)."""
    if len(data) < 20:
        raise InvalidInputError("GLB is truncated (no header)")
    json_len, json_type = struct.unpack_from("<II", data, 12)
    if json_type != 0x4E4F534A or 20 + json_len > len(data):
        raise InvalidInputError("GLB has no readable JSON chunk")
    try:
        doc = loads_bounded(data[20 : 20 + json_len].decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidInputError("GLB JSON chunk is not UTF-8") from None
    asset = doc.get("asset") if isinstance(doc, dict) else None
    extras = asset.get("extras") if isinstance(asset, dict) else None
    if not isinstance(extras, dict):
        return {}
    out: dict[str, str] = {}
    for key, value in extras.items():
        if isinstance(value, str):
            out[str(key)] = value
        elif isinstance(value, dict | list):
            out[str(key)] = json.dumps(value)
    return out
