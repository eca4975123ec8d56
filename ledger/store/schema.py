"""The SQL schema. One MetaData for every table; Alembic migrations must agree with it
(a test runs autogenerate against a migrated database and expects no difference)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from ledger.store.types import JSONType, SeedType, UTCDateTime

# Constraint names are fixed so migrations can address them on both engines.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

# BIGINT primary keys that still autoincrement on SQLite (where only INTEGER does).
_ID = BigInteger().with_variant(Integer(), "sqlite")

experiments = Table(
    "experiments",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),  # seed-sweep, batch, cfg-sweep, grid, …
    Column("name", String(255), nullable=True),
    Column("plan", JSONType, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

records = Table(
    "records",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(255), nullable=False, unique=True),
    Column("backend", String(32), nullable=False),
    Column("task_type", String(64), nullable=False),
    Column("modality", String(16), nullable=False),
    Column("model", String(255), nullable=False),
    Column("scheduler_requested", String(128), nullable=True),
    Column("scheduler", String(128), nullable=True),
    Column("seed", SeedType(), nullable=True),
    Column("seed_origin", String(16), nullable=False),
    Column("prompt", Text, nullable=True),
    Column("negative_prompt", Text, nullable=True),
    Column("width", Integer, nullable=True),
    Column("height", Integer, nullable=True),
    Column("steps", Integer, nullable=True),
    Column("cfg_scale", Float, nullable=True),
    Column("output_format", String(16), nullable=True),
    Column("params", JSONType, nullable=False),
    Column("response", JSONType, nullable=False),
    Column("task_uuid", String(64), nullable=True, index=True),
    Column("output_uuid", String(64), nullable=True),
    Column("output_index", Integer, nullable=False),
    Column("cost", Float, nullable=True),
    Column("source", String(16), nullable=False),
    Column("experiment_id", String(64), ForeignKey("experiments.id"), nullable=True),
    Column("parent_id", _ID, ForeignKey("records.id"), nullable=True, index=True),
    Column("tags", JSONType, nullable=False),
    Column("status", String(16), nullable=False),
    Column("error_code", String(64), nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False, index=True),
    Column("recorded_at", UTCDateTime(), nullable=False),
    # (column, id) so a newest-first page under an equality filter is one backward
    # index walk at any frequency of the value (migration 0006, store/keyset.py).
    *(
        Index(f"ix_records_{name}_id", name, "id")
        for name in ("model", "scheduler", "seed", "experiment_id", "status", "modality")
    ),
)

# Tags are also a list column on the record (what was recorded, verbatim); this table
# makes `--tag` an indexed lookup instead of a JSON scan.
record_tags = Table(
    "record_tags",
    metadata,
    Column("record_id", _ID, ForeignKey("records.id"), primary_key=True),
    Column("tag", String(128), primary_key=True),
    Index("ix_record_tags_tag_record_id", "tag", "record_id"),  # newest first per tag
)

# One fingerprint per record output (added when the output bytes are known: at
# capture, import, or later with `seedledger fingerprint`). phash/dhash are stored as
# signed BIGINT (the 64 bits reinterpreted); phash_c0…c3 are its four 16-bit chunks,
# most significant first, each indexed for multi-index Hamming search. Each chunk
# index also carries phash and record_id, so a lookup probe is index-only on both
# engines (ledger/store/fingerprints.py).
fingerprints = Table(
    "fingerprints",
    metadata,
    Column("record_id", _ID, ForeignKey("records.id"), primary_key=True),
    Column("version", String(32), nullable=False),
    Column("media_type", String(64), nullable=True),
    Column("file_sha256", String(64), nullable=False, index=True),
    Column("pixel_sha256", String(64), nullable=True, index=True),
    Column("width", Integer, nullable=True),
    Column("height", Integer, nullable=True),
    Column("phash", BigInteger, nullable=True),
    Column("dhash", BigInteger, nullable=True),
    Column("phash_c0", Integer, nullable=True),
    Column("phash_c1", Integer, nullable=True),
    Column("phash_c2", Integer, nullable=True),
    Column("phash_c3", Integer, nullable=True),
    Column("thumbnail", LargeBinary, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    # Migration 0005: image, video, audio or 3d, and that modality's facts (JSON).
    Column("modality", String(8), nullable=False, server_default="image", index=True),
    Column("detail", JSONType, nullable=True),
    *(Index(f"ix_fingerprints_phash_c{i}", f"phash_c{i}", "phash", "record_id") for i in range(4)),
)

# The phash of every sampled frame of a video fingerprint (migration 0005), chunked and
# indexed like fingerprints.phash, so a still image finds the video it came from.
fingerprint_frames = Table(
    "fingerprint_frames",
    metadata,
    Column("record_id", _ID, ForeignKey("fingerprints.record_id"), primary_key=True),
    Column("sample", Integer, primary_key=True),
    Column("time_s", Float, nullable=False),
    Column("phash", BigInteger, nullable=False),
    Column("phash_c0", Integer, nullable=False),
    Column("phash_c1", Integer, nullable=False),
    Column("phash_c2", Integer, nullable=False),
    Column("phash_c3", Integer, nullable=False),
    *(Index(f"ix_fingerprint_frames_phash_c{i}", f"phash_c{i}", "phash", "record_id") for i in range(4)),
)

# The runtime a generation ran in (library versions, device, dtype, determinism
# flags: ledger.backends.diffusers.runtime), one row per record that reported one.
# Kept beside records rather than as a column so that leaves sealed before it existed
# still recompute; sealed as its own log entry type ("environment").
record_environments = Table(
    "record_environments",
    metadata,
    Column("record_id", _ID, ForeignKey("records.id"), primary_key=True),
    Column("environment", JSONType, nullable=False),
)

# -- integrity: the Merkle log (ledger.integrity) -------------------------------------
# One row per sealed entry. leaf_index is assigned by the sealer under its lock as
# size + i: gap-free, never from a sequence (sequences have gaps). Entries of any type
# (record, and later audit results, fingerprints…) share the one log.
log_entries = Table(
    "log_entries",
    metadata,
    Column("leaf_index", BigInteger, primary_key=True, autoincrement=False),
    Column("entry_type", String(32), nullable=False),
    Column("entry_id", BigInteger, nullable=False),
    Column("leaf_hash", LargeBinary, nullable=False),
    Column("sealed_at", UTCDateTime(), nullable=False),
    Index("ix_log_entries_entry_type_entry_id", "entry_type", "entry_id", unique=True),
)

# The log head: a single row (id = 1) with the size, the compact range (concatenated
# 32-byte hashes, largest subtree first) and the root. Only the sealer writes it.
log_state = Table(
    "log_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("compact_range", LargeBinary, nullable=False),
    Column("root", LargeBinary, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# Signed checkpoints (C2SP signed notes), at most one per tree size.
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary, nullable=False),
    Column("origin", String(255), nullable=False),
    Column("key_name", String(255), nullable=False),
    Column("key_id", String(8), nullable=False),
    Column("verifier", String(255), nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

# -- audit: replay runs and their results (ledger.audit) ------------------------------
# One row per `seedledger audit` run. backend_url is stored redacted (no userinfo, no
# query). selection holds the filters, the sample size and its sampling seed.
audit_runs = Table(
    "audit_runs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("created_at", UTCDateTime(), nullable=False, index=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("status", String(16), nullable=False, index=True),  # running, finished, interrupted
    Column("backend", String(32), nullable=True),  # None: each record's own backend
    Column("backend_url", String(1024), nullable=True),
    Column("selection", JSONType, nullable=False),
    Column("policy", JSONType, nullable=False),
    Column("options", JSONType, nullable=False),
    Column("selected_count", Integer, nullable=False),
    Column("summary", JSONType, nullable=True),
)

# The records a run selected, fixed when the run starts: a resumed run replays exactly
# the members that have no result yet, whatever was recorded since.
audit_run_records = Table(
    "audit_run_records",
    metadata,
    Column("run_id", String(36), ForeignKey("audit_runs.id"), primary_key=True),
    Column("record_id", _ID, ForeignKey("records.id"), primary_key=True, index=True),
)

# One result per (run, record), committed as each replay completes. The integer id is
# the log entry id when results are sealed into the Merkle log.
audit_results = Table(
    "audit_results",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("run_id", String(36), ForeignKey("audit_runs.id"), nullable=False),
    Column("record_id", _ID, ForeignKey("records.id"), nullable=False, index=True),
    # identical, near-identical, similar, different, error, skipped
    Column("verdict", String(16), nullable=False, index=True),
    # pass, expected-drift, fail, skipped, error
    Column("outcome", String(16), nullable=False, index=True),
    Column("warnings", JSONType, nullable=False),
    Column("distances", JSONType, nullable=True),
    Column("replay", JSONType, nullable=True),
    Column("replay_thumbnail", LargeBinary, nullable=True),
    Column("replay_pixel_sha256", String(64), nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("run_id", "record_id"),
)

# The current warnings of each record (from `seedledger check` and every audit), so
# reports aggregate them in SQL. Replaced per record when it is checked again.
record_warnings = Table(
    "record_warnings",
    metadata,
    Column("record_id", _ID, ForeignKey("records.id"), primary_key=True),
    Column("code", String(64), primary_key=True),
    Column("severity", String(16), nullable=False),
    Column("detail", Text, nullable=True),
    Column("checked_at", UTCDateTime(), nullable=False),
    Index("ix_record_warnings_code", "code"),
)

# Prompt indexes outside this metadata (migration 0007; SQLAlchemy can express neither):
# SQLite's FTS5 trigram table (and the shadow tables FTS5 keeps beside it) and
# PostgreSQL's pg_trgm GIN index on lower(prompt). ledger/store/keyset.py uses them.
PROMPT_FTS = "records_prompt_fts"
PROMPT_TRGM_INDEX = "ix_records_prompt_trgm"


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic autogenerate's filter: leave the prompt indexes above out of the compare."""
    del obj, reflected, compare_to
    if type_ == "table" and name is not None and name.startswith(PROMPT_FTS):
        return False
    return not (type_ == "index" and name == PROMPT_TRGM_INDEX)
