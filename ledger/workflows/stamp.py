"""`seedledger stamp`: write provenance into an image file, and read it back.

A stamp says "this image is the output of record N of a seedledger ledger", marks it
as generated (IPTC ``DigitalSourceType`` = ``trainedAlgorithmicMedia``, the value IPTC
recommends and C2PA uses for generated media) and names the latest ledger checkpoint
when the integrity tables exist.

- **PNG**: an iTXt chunk ``seedledger`` holding the stamp as JSON, and the XMP packet
  in the standard iTXt chunk ``XML:com.adobe.xmp``. Chunks are spliced in before the
  first ``IDAT``; every other byte of the file (pixels, A1111/ComfyUI chunks) is kept.
- **JPEG**: the XMP packet in an APP1 segment (``http://ns.adobe.com/xap/1.0/``),
  placed after the JFIF/Exif segments; the scan data is untouched.
- WEBP is refused (convert first).

An existing XMP packet is kept: our ``rdf:Description`` is added to it (and a previous
seedledger description replaced). The file is written to a temporary file in the same
directory and renamed over the target, so a failure never leaves a half-written image.
This is plain metadata: it is stripped by re-encoding and not signed (a C2PA manifest
would be); the ledger checkpoint it names is what makes it checkable.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select

from ledger import __version__
from ledger.core.files import atomic_write
from ledger.core.jsonsafe import loads_bounded
from ledger.core.records import Record
from ledger.errors import InvalidInputError, LedgerError, UsageError
from ledger.integrity import RECORD
from ledger.integrity.seal import latest_checkpoint as sealed_checkpoint
from ledger.store import Ledger
from ledger.store.schema import log_entries
from ledger.workflows import _media, xmp

STAMP_SCHEMA: Final = "seedledger.stamp/1"
STAMP_KEYWORD: Final = "seedledger"
TRAINED_ALGORITHMIC_MEDIA: Final = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
IPTC_EXT_NS: Final = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
SEEDLEDGER_NS: Final = "urn:x-seedledger:xmp:1.0/"

#: Record fields copied into the stamp, so another ledger can import the image
#: with its generation parameters even without access to this ledger.
_RECORD_FIELDS: Final = (
    "backend",
    "task_type",
    "modality",
    "model",
    "seed",
    "seed_origin",
    "scheduler_requested",
    "scheduler",
    "prompt",
    "negative_prompt",
    "width",
    "height",
    "steps",
    "cfg_scale",
    "output_format",
    "task_uuid",
    "output_uuid",
    "output_index",
)


@dataclass(frozen=True)
class Stamp:
    """What a stamp says. ``record`` is the record summary embedded at stamping."""

    record_id: int
    idempotency_key: str
    stamped_at: str
    checkpoint: Mapping[str, Any] | None
    record: Mapping[str, Any]
    digital_source_type: str = TRAINED_ALGORITHMIC_MEDIA

    def to_json(self) -> str:
        return json.dumps(
            {
                "schema": STAMP_SCHEMA,
                "record_id": self.record_id,
                "idempotency_key": self.idempotency_key,
                "digital_source_type": self.digital_source_type,
                "software_agent": f"seedledger {__version__}",
                "stamped_at": self.stamped_at,
                "checkpoint": self.checkpoint,
                "record": dict(self.record),
            },
            ensure_ascii=False,
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Stamp:
        try:
            data = loads_bounded(text)
        except InvalidInputError as exc:
            raise type(exc)(f"seedledger stamp: {exc}") from None
        if not isinstance(data, dict) or data.get("schema") != STAMP_SCHEMA:
            raise InvalidInputError(f"not a {STAMP_SCHEMA} stamp")
        record_id, key = data.get("record_id"), data.get("idempotency_key")
        if isinstance(record_id, bool) or not isinstance(record_id, int) or not isinstance(key, str):
            raise InvalidInputError("seedledger stamp: record_id and idempotency_key are required")
        raw_record = data.get("record")
        record: dict[str, Any] = raw_record if isinstance(raw_record, dict) else {}
        checkpoint = data.get("checkpoint") if isinstance(data.get("checkpoint"), dict) else None
        return cls(
            record_id=record_id,
            idempotency_key=key,
            stamped_at=str(data.get("stamped_at", "")),
            checkpoint=checkpoint,
            record=record,
            digital_source_type=str(data.get("digital_source_type", TRAINED_ALGORITHMIC_MEDIA)),
        )


@dataclass(frozen=True)
class StampResult:
    record_id: int
    path: str
    format: str
    checkpoint: Mapping[str, Any] | None
    bytes_written: int


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if hasattr(value, "value") and isinstance(value.value, str):
        return value.value
    return value


def stamp_for(record: Record, checkpoint: Mapping[str, Any] | None) -> Stamp:
    summary = {name: _jsonable(getattr(record, name)) for name in _RECORD_FIELDS}
    summary["created_at"] = _jsonable(record.created_at)
    return Stamp(
        record_id=record.id,
        idempotency_key=record.idempotency_key or f"record:{record.id}",
        stamped_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        checkpoint=checkpoint,
        record=summary,
    )


def xmp_properties(stamp: Stamp) -> dict[str, str]:
    """Our ``rdf:Description``: the IPTC source type and the stamp (``{uri}name`` keys)."""
    props = {
        f"{{{IPTC_EXT_NS}}}DigitalSourceType": stamp.digital_source_type,
        f"{{{SEEDLEDGER_NS}}}RecordId": str(stamp.record_id),
        f"{{{SEEDLEDGER_NS}}}IdempotencyKey": stamp.idempotency_key,
    }
    if stamp.checkpoint:
        props[f"{{{SEEDLEDGER_NS}}}Checkpoint"] = json.dumps(dict(stamp.checkpoint), sort_keys=True)
    props[f"{{{SEEDLEDGER_NS}}}Stamp"] = stamp.to_json()
    return props


def xmp_packet(stamp: Stamp, existing: str | None = None) -> str:
    """A full XMP packet with our description, merged into ``existing`` if given (its
    other content kept, a previous seedledger description replaced)."""
    return xmp.merge_description(
        existing,
        xmp_properties(stamp),
        {"Iptc4xmpExt": IPTC_EXT_NS, "seedledger": SEEDLEDGER_NS},
        replace_namespace=SEEDLEDGER_NS,
    )


def stamp_bytes(data: bytes, stamp: Stamp) -> tuple[bytes, str]:
    """The image bytes with the stamp written in; returns (bytes, format)."""
    kind = _media.sniff(data)
    if kind == "png":
        text = _media.png_text(data)
        packet = xmp_packet(stamp, text.get(_media.XMP_KEYWORD))
        out = _media.png_replace_text(data, {STAMP_KEYWORD: stamp.to_json(), _media.XMP_KEYWORD: packet})
        _media.png_chunks(out)  # the result must parse before it is written
        return out, kind
    if kind == "jpeg":
        packet = xmp_packet(stamp, _media.jpeg_xmp(data))
        out = _media.jpeg_replace_xmp(data, packet)
        _media.jpeg_segments(out)
        return out, kind
    if kind == "webp":
        raise UsageError("stamping WEBP is not supported; convert the image to PNG or JPEG first")
    raise InvalidInputError("not a PNG or JPEG image")


def read_stamp(data: bytes) -> Stamp | None:
    """The seedledger stamp in an image (PNG iTXt, else XMP), or None."""
    kind = _media.sniff(data)
    if kind == "png":
        return stamp_in_png_text(_media.png_text(data))
    if kind == "jpeg":
        return stamp_in_xmp(_media.jpeg_xmp(data))
    if kind == "webp":
        return stamp_in_xmp(_media.image_meta(data).xmp)
    return None


def stamp_in_png_text(text: Mapping[str, str]) -> Stamp | None:
    """The stamp among a PNG's text chunks (the ``seedledger`` chunk, else the XMP)."""
    if STAMP_KEYWORD in text:
        return Stamp.from_json(text[STAMP_KEYWORD])
    return stamp_in_xmp(text.get(_media.XMP_KEYWORD))


def stamp_in_xmp(text: str | None) -> Stamp | None:
    found = xmp.property_value(text, f"{{{SEEDLEDGER_NS}}}Stamp") if text else None
    return Stamp.from_json(found) if found is not None else None


def latest_checkpoint(ledger: Ledger, record_id: int | None = None) -> dict[str, Any] | None:
    """The newest signed checkpoint (origin, size, root, key, signed note) and, when the
    record is sealed within it, the record's leaf index; None before the first seal."""
    with ledger.reading() as conn:
        stored = sealed_checkpoint(conn)
        if stored is None:
            return None
        out: dict[str, Any] = {
            "origin": stored.origin,
            "size": stored.size,
            "root": base64.b64encode(stored.root).decode("ascii"),
            "key_name": stored.key_name,
            "key_id": stored.key_id,
            "note": stored.note,
        }
        if record_id is not None:
            leaf = conn.execute(
                select(log_entries.c.leaf_index).where(
                    log_entries.c.entry_type == RECORD.name, log_entries.c.entry_id == record_id
                )
            ).scalar()
            if leaf is not None and int(leaf) < stored.size:
                out["leaf_index"] = int(leaf)
        return out


def stamp_file(ledger: Ledger, record_id: int, image: Path, out: Path | None = None) -> StampResult:
    """Stamp ``image`` with record ``record_id``; write to ``out`` (default: in place)."""
    record = ledger.get(record_id)
    try:
        data = image.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {image}: {exc.strerror or exc}") from None
    checkpoint = latest_checkpoint(ledger, record_id)
    stamped, kind = stamp_bytes(data, stamp_for(record, checkpoint))
    target = out or image
    try:
        atomic_write(target, stamped, like=image)
    except OSError as exc:
        raise LedgerError(f"cannot write {target}: {exc.strerror or exc}") from None
    return StampResult(record_id, str(target), kind, checkpoint, len(stamped))
