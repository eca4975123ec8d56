"""seedledger stamps (PNG iTXt ``seedledger`` / XMP): the image points at the record it
was made from. When that record is in this ledger the import links to it; otherwise the
stamp's embedded record summary is imported (keyed by the original record's key)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ledger.core.records import Modality, NewRecord, SeedOrigin
from ledger.core.seeds import parse_seed
from ledger.errors import InvalidInputError, LedgerError
from ledger.workflows.readers.base import Context
from ledger.workflows.readers.carriers import Carriers
from ledger.workflows.stamp import Stamp, stamp_in_png_text, stamp_in_xmp


def stamp_of(carriers: Carriers) -> Stamp | None:
    return stamp_in_png_text(carriers.text) if carriers.kind == "png" else stamp_in_xmp(carriers.xmp)


def record_from_stamp(stamp: Stamp, ctx: Context) -> NewRecord:
    """A record from a stamp's embedded summary (the original ledger is elsewhere)."""
    r = stamp.record
    try:
        seed = parse_seed(r["seed"]) if r.get("seed") is not None else None
        modality = Modality(r.get("modality", "image"))
        origin = SeedOrigin(r.get("seed_origin", "unknown" if seed is None else "request"))
    except (ValueError, LedgerError) as exc:
        raise InvalidInputError(f"seedledger stamp: bad record summary: {exc}") from None
    if not isinstance(r.get("model"), str) or not isinstance(r.get("backend"), str):
        raise InvalidInputError("seedledger stamp: record summary lacks backend/model")

    def text(key: str) -> str | None:
        value = r.get(key)
        return value if isinstance(value, str) else None

    def number(key: str, kind_: type) -> Any:
        value = r.get(key)
        return kind_(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    params = {
        "format": "seedledger-stamp",
        "stamp": {
            "record_id": stamp.record_id,
            "idempotency_key": stamp.idempotency_key,
            "stamped_at": stamp.stamped_at,
            "checkpoint": dict(stamp.checkpoint) if stamp.checkpoint else None,
        },
        **ctx.info(),
    }
    return NewRecord(
        backend=r["backend"],
        task_type=text("task_type") or "imageInference",
        modality=modality,
        model=r["model"],
        seed=seed,
        seed_origin=origin,
        scheduler_requested=text("scheduler_requested"),
        scheduler=text("scheduler"),
        prompt=text("prompt"),
        negative_prompt=text("negative_prompt"),
        width=number("width", int),
        height=number("height", int),
        steps=number("steps", int),
        cfg_scale=number("cfg_scale", float),
        output_format=text("output_format"),
        params=params,
        task_uuid=text("task_uuid"),
        output_uuid=text("output_uuid"),
        output_index=number("output_index", int) or 0,
        source=ctx.source,
        created_at=_stamp_time(r.get("created_at")),
        # The original record's key: the same output is one record in any ledger.
        idempotency_key=stamp.idempotency_key,
    )


def _stamp_time(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.astimezone(UTC)
    return datetime.now(UTC)
