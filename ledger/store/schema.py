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
    Column("model", String(255), nullable=False, index=True),
    Column("scheduler_requested", String(128), nullable=True),
    Column("scheduler", String(128), nullable=True, index=True),
    Column("seed", SeedType(), nullable=True, index=True),
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
    Column("experiment_id", String(64), ForeignKey("experiments.id"), nullable=True, index=True),
    Column("parent_id", _ID, ForeignKey("records.id"), nullable=True, index=True),
    Column("tags", JSONType, nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("error_code", String(64), nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False, index=True),
    Column("recorded_at", UTCDateTime(), nullable=False),
)

# Tags are also a list column on the record (what was recorded, verbatim); this table
# makes `--tag` an indexed lookup instead of a JSON scan.
record_tags = Table(
    "record_tags",
    metadata,
    Column("record_id", _ID, ForeignKey("records.id"), primary_key=True),
    Column("tag", String(128), primary_key=True),
    Index("ix_record_tags_tag", "tag"),
)

# One fingerprint per record output (added when the output bytes are known: at
# capture, import, or later with `seedledger fingerprint`). phash/dhash are stored as
# signed BIGINT (the 64 bits reinterpreted); phash_c0…c3 are its four 16-bit chunks,
# most significant first, each indexed for multi-index Hamming search.
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
    Column("phash_c0", Integer, nullable=True, index=True),
    Column("phash_c1", Integer, nullable=True, index=True),
    Column("phash_c2", Integer, nullable=True, index=True),
    Column("phash_c3", Integer, nullable=True, index=True),
    Column("thumbnail", LargeBinary, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
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
