"""Pure domain values: seeds, records, canonical JSON, redaction, Runware mapping, catalogs."""

from ledger.core.canonical import canonical_json
from ledger.core.models import AIR, ModelCatalog, ModelInfo, is_pinned, parse_air, supports_seed
from ledger.core.records import Modality, NewRecord, Record, SeedOrigin, Source, Status, utcnow
from ledger.core.redaction import redact
from ledger.core.schedulers import SchedulerClass, SchedulerKind, classify
from ledger.core.seeds import SEED_MAX, SEED_MIN, SEED_RANGES, SeedRange, parse_seed, random_seed

__all__ = [
    "AIR",
    "SEED_MAX",
    "SEED_MIN",
    "SEED_RANGES",
    "Modality",
    "ModelCatalog",
    "ModelInfo",
    "NewRecord",
    "Record",
    "SchedulerClass",
    "SchedulerKind",
    "SeedOrigin",
    "SeedRange",
    "Source",
    "Status",
    "canonical_json",
    "classify",
    "is_pinned",
    "parse_air",
    "parse_seed",
    "random_seed",
    "redact",
    "supports_seed",
    "utcnow",
]
