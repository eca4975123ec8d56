"""Pure domain values: seeds, records, canonical JSON, redaction, Runware mapping."""

from ledger.core.canonical import canonical_json
from ledger.core.records import Modality, NewRecord, Record, SeedOrigin, Source, Status, utcnow
from ledger.core.redaction import redact
from ledger.core.seeds import SEED_MAX, SEED_MIN, SEED_RANGES, SeedRange, parse_seed, random_seed

__all__ = [
    "SEED_MAX",
    "SEED_MIN",
    "SEED_RANGES",
    "Modality",
    "NewRecord",
    "Record",
    "SeedOrigin",
    "SeedRange",
    "Source",
    "Status",
    "canonical_json",
    "parse_seed",
    "random_seed",
    "redact",
    "utcnow",
]
