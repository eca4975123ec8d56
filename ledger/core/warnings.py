"""The warning catalog: stable codes for what may keep a record from reproducing.

Every code has a severity and a one-line explanation, and :func:`warnings_for` derives
the warnings a record earns from the record alone (pure: no database, no network).
``inputs-unavailable`` is the exception: whether a seed, mask or reference image can
still be fetched is only known by trying, so the auditor adds it at audit time.

Severities:

- ``error``: the record cannot be replayed as recorded (the auditor skips it unless
  forced): ``seedless-model``, ``seed-not-captured``, ``batch-seed-unknown``,
  ``inputs-unavailable``;
- ``warning``: a replay may legitimately differ: ``stochastic-scheduler``,
  ``scheduler-unresolved``, ``model-unpinned``, ``nondeterministic-settings``;
- ``info``: comparison is harder but still meaningful: ``lossy-output``.

Codes never change meaning; new risks get new codes.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from ledger.core.models import ModelCatalog, default_catalog, is_pinned
from ledger.core.records import Modality, Record, SeedOrigin
from ledger.core.schedulers import classify


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "error": 2}[self.value]


@dataclass(frozen=True)
class WarningKind:
    """One entry of the catalog: a stable code, its severity and what it means."""

    code: str
    severity: Severity
    explanation: str
    #: True when a record with this warning cannot be replayed as recorded.
    blocks_replay: bool = False


STOCHASTIC_SCHEDULER = "stochastic-scheduler"
SEEDLESS_MODEL = "seedless-model"
SEED_NOT_CAPTURED = "seed-not-captured"
SCHEDULER_UNRESOLVED = "scheduler-unresolved"
MODEL_UNPINNED = "model-unpinned"
LOSSY_OUTPUT = "lossy-output"
INPUTS_UNAVAILABLE = "inputs-unavailable"
BATCH_SEED_UNKNOWN = "batch-seed-unknown"
NONDETERMINISTIC_SETTINGS = "nondeterministic-settings"
MEDIA_NOT_REPRODUCIBLE = "media-not-reproducible"
SEEDED_STOCHASTIC = "seeded-stochastic-scheduler"
GLOBAL_RNG_NOISE = "global-rng-noise"
GENERATOR_STATE_ADVANCED = "generator-state-advanced"
OUTPUT_UNREADABLE = "output-unreadable"
#: Where a capture hook notes, in the record's ``response``, that the output bytes it
#: was given are not a readable image (so no fingerprint identifies the output).
OUTPUT_UNREADABLE_KEY = "output_unreadable"

_E, _W, _I = Severity.ERROR, Severity.WARNING, Severity.INFO

#: The catalog, in the order reports list the codes.
CATALOG: Final[dict[str, WarningKind]] = {
    kind.code: kind
    for kind in (
        WarningKind(
            SEEDLESS_MODEL,
            _E,
            "the model takes no seed, so its output cannot be generated again",
            blocks_replay=True,
        ),
        WarningKind(
            SEED_NOT_CAPTURED,
            _E,
            "no seed was captured for this output, so a replay would draw a new one",
            blocks_replay=True,
        ),
        WarningKind(
            BATCH_SEED_UNKNOWN,
            _E,
            "one output of a numberResults > 1 batch whose per-output seed was not returned",
            blocks_replay=True,
        ),
        WarningKind(
            INPUTS_UNAVAILABLE,
            _E,
            "a seed, mask or reference image the request used can no longer be fetched",
            blocks_replay=True,
        ),
        WarningKind(
            GENERATOR_STATE_ADVANCED,
            _E,
            "the generator had already drawn numbers before the call, so its seed does not say "
            "what noise the call used",
            blocks_replay=True,
        ),
        WarningKind(
            STOCHASTIC_SCHEDULER,
            _W,
            "the scheduler injects fresh noise at each step: a fixed seed may still drift",
        ),
        WarningKind(
            GLOBAL_RNG_NOISE,
            _W,
            "the scheduler draws its step noise from the global torch RNG, not the seeded generator "
            "(DPMSolverSDEScheduler without noise_sampler_seed): a replay may drift",
        ),
        WarningKind(
            SCHEDULER_UNRESOLVED,
            _W,
            "the scheduler is Default, omitted or unknown and could not be resolved",
        ),
        WarningKind(
            MODEL_UNPINNED,
            _W,
            "the model is named without a version (or hash): the weights may change under it",
        ),
        WarningKind(
            NONDETERMINISTIC_SETTINGS,
            _W,
            "recorded settings are known to be non-deterministic (xformers, SDP attention, GPU RNG)",
        ),
        WarningKind(
            MEDIA_NOT_REPRODUCIBLE,
            _W,
            "the model's video or audio output is known not to repeat from the same seed",
        ),
        WarningKind(
            SEEDED_STOCHASTIC,
            _I,
            "the scheduler injects noise at each step, but draws it from the recorded seeded "
            "generator: a replay on the same stack is exact",
        ),
        WarningKind(
            LOSSY_OUTPUT,
            _I,
            "the output is lossy (JPG, WEBP, or a lossy video/audio codec): compression noise limits "
            "exact comparison",
        ),
        WarningKind(
            OUTPUT_UNREADABLE,
            _W,
            "the output bytes recorded are not a readable image: no fingerprint identifies the output",
        ),
    )
}

WARNING_CODES: Final = tuple(CATALOG)


@dataclass(frozen=True)
class RecordWarning:
    """One warning on one record: the catalog entry plus what about this record."""

    code: str
    severity: Severity
    detail: str = ""

    @property
    def explanation(self) -> str:
        return CATALOG[self.code].explanation

    @property
    def blocks_replay(self) -> bool:
        return CATALOG[self.code].blocks_replay

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "severity": str(self.severity), "detail": self.detail}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecordWarning:
        code = str(data["code"])
        return cls(
            code, Severity(data.get("severity") or CATALOG[code].severity), str(data.get("detail") or "")
        )


def make_warning(code: str, detail: str = "") -> RecordWarning:
    """A warning of catalog ``code`` with a record-specific ``detail``."""
    return RecordWarning(code, CATALOG[code].severity, detail)


# -- deciding from the record -----------------------------------------------------------

_LOSSY: Final = frozenset(
    {"JPG", "JPEG", "WEBP", "MP4", "MOV", "WEBM", "MKV", "MP3", "OGG", "OPUS", "M4A", "AAC"}
)
_LOSSY_EXTENSIONS: Final = (
    ".jpg",
    ".jpeg",
    ".webp",
    ".mp4",
    ".mov",
    ".webm",
    ".mkv",
    ".mp3",
    ".ogg",
    ".opus",
    ".m4a",
    ".aac",
)
#: Video/audio models whose output is known not to repeat from its seed (fnmatch
#: patterns on the AIR). Empty: no provider documents this yet; a `[models]` override
#: with ``reproducible = false`` adds one (see docs/audit.md).
NONREPRODUCIBLE_MEDIA_MODELS: Final[tuple[str, ...]] = ()
#: Keys under which a recorded model hash pins a non-AIR model (A1111, ComfyUI imports).
_MODEL_HASH_KEYS: Final = ("Model hash", "model_hash", "sd_model_hash", "modelHash")
#: A1111's random number source; missing from an infotext means GPU.
_RNG_KEYS: Final = frozenset({"rng", "randn_source"})


def warnings_for(record: Record, *, catalog: ModelCatalog | None = None) -> tuple[RecordWarning, ...]:
    """Every warning ``record`` earns from what was recorded, in catalog order.

    ``inputs-unavailable`` is never returned here (it needs a fetch); the auditor adds it.
    """
    catalog = catalog or default_catalog()
    found: dict[str, RecordWarning] = {}

    seedless = catalog.supports_seed(record.model) is False
    if seedless:
        found[SEEDLESS_MODEL] = make_warning(
            SEEDLESS_MODEL, f"{record.model}: {catalog.lookup(record.model).note}"
        )
    elif record.seed is None:
        number = _number_results(record.params)
        if number > 1:
            found[BATCH_SEED_UNKNOWN] = make_warning(
                BATCH_SEED_UNKNOWN,
                f"output {record.output_index} of numberResults={number}; seed not returned",
            )
        origin = "" if record.seed_origin is SeedOrigin.UNKNOWN else f" (seed origin {record.seed_origin})"
        found[SEED_NOT_CAPTURED] = make_warning(SEED_NOT_CAPTURED, f"seed is empty{origin}")

    if not seedless:
        name = record.scheduler or record.scheduler_requested
        options: dict[str, Any] = {"model": record.model}
        default = catalog.default_scheduler(record.model)
        if default:
            options["default_scheduler"] = default
        options.update(_scheduler_options(record.params))
        verdict = classify(name, record.backend, options)
        if verdict.is_stochastic and record.backend == "diffusers" and record.seed is not None:
            # diffusers draws ancestral/SDE step noise from the generator passed in,
            # except DPMSolverSDEScheduler's Brownian tree without noise_sampler_seed.
            config = record.params.get("scheduler_config")
            config = config if isinstance(config, Mapping) else {}
            if (
                record.params.get("scheduler_class") == "DPMSolverSDEScheduler"
                and config.get("noise_sampler_seed") is None
            ):
                found[GLOBAL_RNG_NOISE] = make_warning(
                    GLOBAL_RNG_NOISE, f"{name}: noise_sampler_seed not set"
                )
            else:
                found[SEEDED_STOCHASTIC] = make_warning(
                    SEEDED_STOCHASTIC, f"{name}: step noise from the seeded generator"
                )
        elif verdict.is_stochastic:
            found[STOCHASTIC_SCHEDULER] = make_warning(
                STOCHASTIC_SCHEDULER, f"{name or 'default'}: {verdict.reason}"
            )
        elif not verdict.is_deterministic:
            found[SCHEDULER_UNRESOLVED] = make_warning(SCHEDULER_UNRESOLVED, verdict.reason)

    generator = record.params.get("generator")
    if isinstance(generator, Mapping) and generator.get("state") == "advanced":
        found[GENERATOR_STATE_ADVANCED] = make_warning(
            GENERATOR_STATE_ADVANCED, "seed not claimed: the generator state had moved past it"
        )

    if not is_pinned(record.model) and not _model_hash(record.params):
        found[MODEL_UNPINNED] = make_warning(MODEL_UNPINNED, f"{record.model} names no @version")

    settings = sorted(set(_nondeterministic_settings(record.params)))
    if settings:
        found[NONDETERMINISTIC_SETTINGS] = make_warning(NONDETERMINISTIC_SETTINGS, "; ".join(settings))

    if record.modality in (Modality.VIDEO, Modality.AUDIO) and not _reproducible(record, catalog):
        found[MEDIA_NOT_REPRODUCIBLE] = make_warning(
            MEDIA_NOT_REPRODUCIBLE, f"{record.model}: {record.modality} output does not repeat from its seed"
        )

    lossy = _lossy_format(record)
    if lossy:
        found[LOSSY_OUTPUT] = make_warning(LOSSY_OUTPUT, f"output format {lossy}")

    unreadable = record.response.get(OUTPUT_UNREADABLE_KEY)
    if unreadable:
        found[OUTPUT_UNREADABLE] = make_warning(OUTPUT_UNREADABLE, str(unreadable))

    return tuple(found[code] for code in CATALOG if code in found)


def _number_results(params: Mapping[str, Any]) -> int:
    for key in ("numberResults", "batch_size", "n_iter"):
        value = params.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 1:
            return value
    return 1


def _scheduler_options(params: Mapping[str, Any]) -> dict[str, Any]:
    """Scheduler settings that change the classification (eta, algorithm_type, …)."""
    out: dict[str, Any] = {}
    sources = [params]
    for key in ("schedulerConfig", "scheduler_config", "parameters"):
        nested = params.get(key)
        if isinstance(nested, Mapping):
            sources.append(nested)
    for source in sources:
        for key in ("eta", "algorithm_type", "s_churn", "stochastic_sampling"):
            if key in source:
                out[key] = source[key]
    return out


def _model_hash(params: Mapping[str, Any]) -> bool:
    nested = params.get("parameters")
    for source in (params, nested if isinstance(nested, Mapping) else {}):
        for key in _MODEL_HASH_KEYS:
            if isinstance(source.get(key), str) and source[key].strip():
                return True
    return False


def _walk(value: Any, path: str = "", depth: int = 0) -> Iterator[tuple[str, str, Any]]:
    """(path, key, value) of every mapping entry, bounded in depth."""
    if depth > 6:
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            yield where, str(key), item
            yield from _walk(item, where, depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value[:100]):
            yield from _walk(item, f"{path}[{index}]", depth + 1)


def _nondeterministic_settings(params: Mapping[str, Any]) -> Iterator[str]:
    # Never scan the prompt text itself: a prompt mentioning "xformers" is not a setting.
    skip = {"infotext", "positivePrompt", "negativePrompt", "prompt", "negative_prompt"}
    defaulted = params.get("defaulted")
    defaulted_keys = set(defaulted) if isinstance(defaulted, list) else set()
    for path, key, value in _walk({k: v for k, v in params.items() if k not in skip}):
        lowered = key.lower()
        if lowered in _RNG_KEYS and isinstance(value, str) and value.strip().upper() == "GPU":
            how = "defaulted: missing from the infotext means GPU" if key in defaulted_keys else "recorded"
            yield f"{path}=GPU ({how}): GPU noise differs across cards and vendors"
        text = f"{lowered} {value.lower() if isinstance(value, str) else ''}"
        if "xformers" in text and value not in (False, None, "", 0):
            yield f"{path}: xformers attention is non-deterministic"
        if ("opt-sdp-attention" in text or "opt_sdp_attention" in text) and "no-mem" not in text:
            yield f"{path}: --opt-sdp-attention is non-deterministic"
        if (
            lowered in ("cross attention optimization", "cross_attention_optimization")
            and isinstance(value, str)
            and value.strip().lower() in ("sdp", "sdp - scaled dot product")
        ):
            yield f"{path}={value}: non-deterministic attention"


def _reproducible(record: Record, catalog: ModelCatalog) -> bool:
    if any(fnmatch.fnmatchcase(record.model, pattern) for pattern in NONREPRODUCIBLE_MEDIA_MODELS):
        return False
    return catalog.reproducible(record.model) is not False


def _lossy_format(record: Record) -> str | None:
    fmt = record.output_format or record.params.get("outputFormat")
    if isinstance(fmt, str) and fmt.strip().upper() in _LOSSY:
        return fmt.strip().upper()
    if record.modality is Modality.VIDEO and not isinstance(fmt, str):
        return "video (lossy codec by default)"
    for key in ("imageURL", "videoURL", "audioURL", "url", "path", "filename"):
        value = record.response.get(key)
        if isinstance(value, str) and value.lower().split("?", 1)[0].endswith(_LOSSY_EXTENSIONS):
            return value.lower().split("?", 1)[0].rsplit(".", 1)[-1].upper()
    return None


__all__ = [
    "BATCH_SEED_UNKNOWN",
    "CATALOG",
    "INPUTS_UNAVAILABLE",
    "LOSSY_OUTPUT",
    "MEDIA_NOT_REPRODUCIBLE",
    "MODEL_UNPINNED",
    "NONDETERMINISTIC_SETTINGS",
    "OUTPUT_UNREADABLE",
    "OUTPUT_UNREADABLE_KEY",
    "SCHEDULER_UNRESOLVED",
    "SEEDLESS_MODEL",
    "SEED_NOT_CAPTURED",
    "STOCHASTIC_SCHEDULER",
    "WARNING_CODES",
    "RecordWarning",
    "Severity",
    "WarningKind",
    "make_warning",
    "warnings_for",
]
