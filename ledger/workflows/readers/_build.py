"""One record from the fields a JSON-metadata reader found (shared by those readers)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ledger.core.records import Modality, NewRecord, SeedOrigin
from ledger.core.redaction import redact
from ledger.core.seeds import parse_seed
from ledger.errors import InvalidSeedError
from ledger.workflows.readers.base import Context, number, text


def build(
    ctx: Context,
    *,
    backend: str,
    fmt: str,
    generator: Mapping[str, Any],
    carrier: str,
    metadata: Any,
    seed: Any = None,
    model: Any = None,
    model_hash: Any = None,
    sampler: Any = None,
    schedule: Any = None,
    prompt: Any = None,
    negative_prompt: Any = None,
    width: Any = None,
    height: Any = None,
    steps: Any = None,
    cfg: Any = None,
    extra: Mapping[str, Any] | None = None,
    key: int | str = 0,
    output_index: int = 0,
) -> NewRecord:
    """``metadata`` (what the file said, verbatim) goes in ``params["metadata"]``."""
    where = f"{generator.get('name')} metadata"
    try:
        parsed_seed = parse_seed(seed) if seed not in (None, "") else None
    except InvalidSeedError as exc:
        raise InvalidSeedError(f"{where} seed: {exc}") from None
    sampler_text, schedule_text = text(sampler), text(schedule)
    scheduler = f"{sampler_text} {schedule_text}" if sampler_text and schedule_text else sampler_text
    info = ctx.info(fmt)
    info["import"]["carrier"] = carrier
    params: dict[str, Any] = {
        "format": fmt,
        "generator": dict(generator),
        "sampler": sampler_text,
        "schedule": schedule_text,
        "model_hash": text(model_hash),
        "metadata": metadata,
        **(extra or {}),
        **info,
    }
    return NewRecord(
        backend=backend,
        task_type="imageInference",
        modality=Modality.IMAGE,
        model=text(model) or "unknown",
        seed=parsed_seed,
        # These files hold the seed the tool used (random ones already resolved).
        seed_origin=SeedOrigin.RESPONSE if parsed_seed is not None else SeedOrigin.UNKNOWN,
        scheduler_requested=sampler_text,
        scheduler=scheduler,
        prompt=text(prompt),
        negative_prompt=text(negative_prompt),
        width=number(width, f"{where} width", int),
        height=number(height, f"{where} height", int),
        steps=number(steps, f"{where} steps", int),
        cfg_scale=number(cfg, f"{where} CFG scale"),
        output_format=ctx.output_format,
        params=redact(params),
        source=ctx.source,
        output_index=output_index,
        idempotency_key=ctx.key(key),
    )
