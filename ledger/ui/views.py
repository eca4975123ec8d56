"""Page data from domain values: records, filters from the URL, audit results.

Plain dicts of JSON-able values (seeds as decimal strings), shared by the HTML
templates and the JSON twins.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from starlette.datastructures import QueryParams

from ledger.audit import AuditResult
from ledger.core.records import Record
from ledger.core.redaction import redact, redact_text
from ledger.core.times import parse_time
from ledger.errors import InvalidInputError, LedgerError
from ledger.reports._media import thumbnail_caption
from ledger.store import RecordFilter

#: URL query names, as the CLI's record filter flags (``--seed-min`` → ``seed_min``).
FILTER_NAMES = (
    "model",
    "scheduler",
    "seed",
    "seed_min",
    "seed_max",
    "prompt",
    "experiment",
    "tag",
    "status",
    "modality",
    "backend",
    "source",
    "since",
    "until",
)
_CHOICES = {
    "status": ("ok", "failed"),
    "modality": ("image", "video", "audio", "3d"),
    "source": ("hook", "proxy", "import", "api", "replay", "sweep"),
}


def _time(name: str, text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError:
        raise InvalidInputError(f"{name}={text[:40]!r} is not an ISO 8601 date or time") from None


def filter_params(query: QueryParams) -> dict[str, Any]:
    """The filter values present in the URL (``tag`` may repeat), as given."""
    out: dict[str, Any] = {}
    for name in FILTER_NAMES:
        values = [v.strip() for v in query.getlist(name) if v.strip()]
        if values:
            out[name] = values if name == "tag" else values[-1]
    return out


def record_filter(params: Mapping[str, Any]) -> RecordFilter:
    """A RecordFilter from URL filter values; a bad value is one InvalidInputError."""
    values: dict[str, Any] = {}
    for name, value in params.items():
        if name == "tag":
            values["tags"] = tuple(value)
        elif name in ("since", "until"):
            values[name] = _time(name, value)
        elif name in _CHOICES and value not in _CHOICES[name]:
            raise InvalidInputError(f"{name} must be one of {', '.join(_CHOICES[name])}")
        else:
            values[name] = value
    try:
        return RecordFilter(**values)
    except LedgerError as exc:
        raise InvalidInputError(str(exc).replace("--", "").replace("-", "_", 1)) from None


def seed_text(seed: int | None) -> str | None:
    return None if seed is None else str(seed)


def size_text(r: Record) -> str | None:
    return f"{r.width}×{r.height}" if r.width and r.height else None


def record_summary(r: Record, *, fingerprinted: bool = False) -> dict[str, Any]:
    """The columns a person needs to see what varied between records."""
    return {
        "id": r.id,
        "created_at": r.created_at,
        "model": r.model,
        "scheduler": r.scheduler or r.scheduler_requested,
        "seed": seed_text(r.seed),
        "steps": r.steps,
        "cfg_scale": r.cfg_scale,
        "size": size_text(r),
        "status": str(r.status),
        "modality": str(r.modality),
        "prompt": r.prompt,
        "experiment_id": r.experiment_id,
        "parent_id": r.parent_id,
        "tags": list(r.tags),
        "has_image": fingerprinted,
    }


def record_detail(r: Record) -> dict[str, Any]:
    """Every stored field. ``params``/``response`` are redacted again on the way out
    (they were redacted when stored; a page is one more place a secret must not reach)."""
    return {
        **record_summary(r),
        "idempotency_key": r.idempotency_key,
        "backend": r.backend,
        "task_type": r.task_type,
        "scheduler_requested": r.scheduler_requested,
        "scheduler_resolved": r.scheduler,
        "seed_origin": str(r.seed_origin),
        "negative_prompt": r.negative_prompt,
        "width": r.width,
        "height": r.height,
        "output_format": r.output_format,
        "task_uuid": r.task_uuid,
        "output_uuid": r.output_uuid,
        "output_index": r.output_index,
        "cost": r.cost,
        "source": str(r.source),
        "error_code": r.error_code,
        "error": redact_text(r.error) if r.error else None,
        "recorded_at": r.recorded_at,
        "params": redact(dict(r.params)),
        "response": redact(dict(r.response)),
    }


def environment_of(r: Record, stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """Where the record ran, plus the runtime it reported (library versions, device,
    dtype, determinism flags), as stored beside it (``Ledger.environment_of``)."""
    env: dict[str, Any] = {"backend": r.backend, "source": str(r.source), "task_type": r.task_type}
    if stored:
        env.update(redact(dict(stored)))
    return env


def result_view(result: AuditResult) -> dict[str, Any]:
    d = dict(result.distances or {})
    return {
        "id": result.id,
        "run_id": result.run_id,
        "record_id": result.record_id,
        "verdict": result.verdict,
        "outcome": result.outcome,
        "phash_distance": d.get("phash_distance"),
        "dhash_distance": d.get("dhash_distance"),
        "thumb_psnr_db": d.get("thumb_psnr_db"),
        "thumb_mean_abs_diff": d.get("thumb_mean_abs_diff"),
        # Full resolution (the original was archived): None PSNR there is equal pixels.
        "full_resolution": bool(d.get("full_resolution")),
        "pixel_psnr_db": d.get("pixel_psnr_db"),
        "pixel_ssim": d.get("pixel_ssim"),
        "reason": d.get("reason"),
        "warnings": [w.to_dict() | {"explanation": w.explanation} for w in result.warnings],
        "has_replay": result.replay_thumbnail is not None,
        # what the thumbnails show: a video's middle frame, a waveform, a mesh silhouette
        "modality": str(d.get("modality") or "image"),
        "shows": thumbnail_caption(str(d.get("modality") or "image")),
        # audits before the replay's frames were kept have none
        "has_replay_strip": "frame_strip_png" in (result.replay or {}),
        # The error text is a backend's message and may quote what it was sent; like the
        # reports, pages show only its stable code (`seedledger audit show` has the rest).
        "error_code": result.error_code,
        "created_at": result.created_at,
    }
