"""Recording for in-process pipelines (diffusers and the like).

    from ledger.capture import record_generation, generation

    record_generation(model="sdxl-base-1.0", seed=42, scheduler="DPM++ 2M Karras",
                      parameters={"prompt": "...", "steps": 30}, output=png_bytes)

    with generation(model="sdxl-base-1.0", seed=42, parameters=params) as gen:
        image = pipe(**params)
        gen.add_output(png_bytes)          # once per output; may pass its own seed
    # on exit the records are spooled; an exception records one failed record

Records go through the same durable spool and background writer as the transport and
proxy (the default recorder uses ``SEEDLEDGER_SPOOL`` and ``SEEDLEDGER_DATABASE_URL``
and drains at interpreter exit). Parameters are redacted before spooling.
"""

from __future__ import annotations

import atexit
import io
import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ledger.capture.entries import Output
from ledger.capture.recorder import Recorder
from ledger.core.params import PARAM_COLUMNS
from ledger.core.records import Modality, NewRecord, SeedOrigin, Source, Status
from ledger.core.redaction import redact
from ledger.core.seeds import parse_seed
from ledger.core.warnings import OUTPUT_UNREADABLE_KEY
from ledger.errors import UsageError

log = logging.getLogger(__name__)

_default: Recorder | None = None
_default_lock = threading.Lock()


def default_recorder() -> Recorder:
    """The process-wide recorder (created on first use, drained at exit)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Recorder()
            _at_exit(_default.close)
        return _default


def _at_exit(callback: Callable[[], object]) -> None:
    """Run ``callback`` at interpreter exit while threads still work. Plain ``atexit``
    runs after ``concurrent.futures`` has shut its executors (fingerprinting uses one),
    so a drain from there lost fingerprints. ``threading``'s exit hooks run in reverse
    order of registration, so registering after importing ``concurrent.futures.thread``
    puts the drain first."""
    import concurrent.futures.thread  # noqa: F401 - its exit hook must be registered before ours

    register = getattr(threading, "_register_atexit", None)
    try:
        if register is not None:
            register(callback)
            return
    except RuntimeError:  # first used while the interpreter is already exiting
        pass
    atexit.register(callback)


_PARAM_COLUMNS = PARAM_COLUMNS


@dataclass
class Generation:
    """One in-process generation being recorded (see :func:`generation`)."""

    model: str
    seed: int | None
    parameters: dict[str, Any]
    scheduler: str | None = None
    backend: str = "local"
    task_type: str = "imageInference"
    modality: Modality = Modality.IMAGE
    output_format: str | None = None
    tags: tuple[str, ...] = ()
    experiment_id: str | None = None
    task_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    outputs: list[tuple[bytes | None, int | None, str | None]] = field(default_factory=list)

    def add_output(
        self, data: bytes | None = None, *, seed: int | None = None, output_id: str | None = None
    ) -> None:
        """One generated output (its bytes are fingerprinted by the writer)."""
        self.outputs.append((data, seed, output_id))

    def records(self, error: BaseException | None = None) -> tuple[list[NewRecord], dict[str, Output]]:
        params = redact(dict(self.parameters))
        common: dict[str, Any] = {
            "backend": self.backend,
            "task_type": self.task_type,
            "modality": self.modality,
            "model": self.model,
            "scheduler_requested": self.scheduler,
            "scheduler": self.scheduler,
            "output_format": self.output_format.upper() if self.output_format else None,
            "params": params,
            "task_uuid": self.task_id,
            "source": Source.HOOK,
            "tags": self.tags,
            "experiment_id": self.experiment_id,
        }
        for column, names in _PARAM_COLUMNS.items():
            value = next((params[n] for n in names if n in params), None)
            if column in ("width", "height", "steps") and not isinstance(value, int):
                value = None
            if column == "cfg_scale":
                value = (
                    float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
                )
            if column in ("prompt", "negative_prompt") and not isinstance(value, str):
                value = None
            common[column] = value
        records: list[NewRecord] = []
        outputs: dict[str, Output] = {}
        if error is not None or not self.outputs:
            message = f"{type(error).__name__}: {error}" if error is not None else "no output produced"
            records.append(
                NewRecord(
                    **common,
                    seed=self.seed,
                    seed_origin=SeedOrigin.REQUEST if self.seed is not None else SeedOrigin.UNKNOWN,
                    status=Status.FAILED,
                    error_code="exception" if error is not None else "no-output",
                    error=str(redact(message)),
                    idempotency_key=f"{self.backend}:{self.task_id}:error:0",
                )
            )
            return records, outputs
        for index, (data, seed, output_id) in enumerate(self.outputs):
            used = parse_seed(seed) if seed is not None else self.seed
            key = f"{self.backend}:{self.task_id}:{output_id or index}"
            unreadable = _unreadable(data) if data is not None and self.modality == Modality.IMAGE else None
            if unreadable is not None:
                # Kept (a record accepted is a record kept), but flagged where check and
                # reports see it: warnings_for derives `output-unreadable` from this.
                log.warning("record %s: output %d is not a readable image: %s", key, index, unreadable)
            records.append(
                NewRecord(
                    **common,
                    response={OUTPUT_UNREADABLE_KEY: unreadable} if unreadable else {},
                    seed=used,
                    seed_origin=SeedOrigin.REQUEST if used is not None else SeedOrigin.UNKNOWN,
                    output_uuid=output_id,
                    output_index=index,
                    idempotency_key=key,
                )
            )
            if data is not None and self.modality == Modality.IMAGE:
                outputs[key] = Output(data=data)
        return records, outputs


def _unreadable(data: bytes) -> str | None:
    """Why ``data`` is not a readable image, or None. Reads the header only: the full
    decode happens in the writer, off the caller's path."""
    from PIL import Image, UnidentifiedImageError

    from ledger.fingerprint import ALLOWED_FORMATS

    if not data:
        return "empty output (0 bytes)"
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
            width, height = image.size
    except UnidentifiedImageError:
        return f"not a supported image ({', '.join(ALLOWED_FORMATS)}), {len(data)} bytes"
    except (OSError, ValueError, SyntaxError) as exc:
        return f"unreadable image header: {type(exc).__name__}"
    return None if width > 0 and height > 0 else f"image has no pixels ({width}x{height})"


def _start(
    model: str,
    seed: int | str | None,
    parameters: Mapping[str, Any] | None,
    scheduler: str | None,
    options: dict[str, Any],
) -> Generation:
    if not model:
        raise UsageError("record_generation: model is required")
    return Generation(
        model=model,
        seed=parse_seed(seed) if seed is not None else None,
        parameters=dict(parameters or {}),
        scheduler=scheduler,
        **options,
    )


def record_generation(
    *,
    model: str,
    seed: int | str | None,
    parameters: Mapping[str, Any] | None = None,
    scheduler: str | None = None,
    output: bytes | None = None,
    outputs: list[bytes] | None = None,
    recorder: Recorder | None = None,
    **options: Any,
) -> list[str]:
    """Spool one generation (one record per output); return the records' idempotency
    keys. ``options``: backend, task_type, modality, output_format, tags,
    experiment_id, task_id. Raises UsageError for an invalid seed or missing model."""
    gen = _start(model, seed, parameters, scheduler, options)
    for data in [output] if output is not None else outputs or []:
        gen.add_output(data)
    records, outs = gen.records()
    (recorder or default_recorder()).record(records, outs)
    return [r.idempotency_key for r in records if r.idempotency_key]


@contextmanager
def generation(
    *,
    model: str,
    seed: int | str | None,
    parameters: Mapping[str, Any] | None = None,
    scheduler: str | None = None,
    recorder: Recorder | None = None,
    **options: Any,
) -> Iterator[Generation]:
    """Record what happens inside the block: outputs added with ``add_output``, or one
    failed record when the block raises (the exception propagates)."""
    gen = _start(model, seed, parameters, scheduler, options)
    try:
        yield gen
    except BaseException as exc:
        records, outs = gen.records(error=exc)
        (recorder or default_recorder()).record(records, outs)
        raise
    records, outs = gen.records()
    (recorder or default_recorder()).record(records, outs)
