"""fingerprints

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ledger.store.types import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_INDEXED = ("file_sha256", "pixel_sha256")
# Multi-index Hamming search probes each chunk; phash and record_id ride along in the
# index so the probe is index-only (see ledger/store/fingerprints.py).
_CHUNK_INDEXES = {f"ix_fingerprints_phash_c{i}": [f"phash_c{i}", "phash", "record_id"] for i in range(4)}


def upgrade() -> None:
    op.create_table(
        "fingerprints",
        sa.Column("record_id", _ID, nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("media_type", sa.String(64), nullable=True),
        sa.Column("file_sha256", sa.String(64), nullable=False),
        sa.Column("pixel_sha256", sa.String(64), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("phash", sa.BigInteger(), nullable=True),
        sa.Column("dhash", sa.BigInteger(), nullable=True),
        sa.Column("phash_c0", sa.Integer(), nullable=True),
        sa.Column("phash_c1", sa.Integer(), nullable=True),
        sa.Column("phash_c2", sa.Integer(), nullable=True),
        sa.Column("phash_c3", sa.Integer(), nullable=True),
        sa.Column("thumbnail", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name="fk_fingerprints_record_id_records"),
        sa.PrimaryKeyConstraint("record_id", name="pk_fingerprints"),
    )
    for column in _INDEXED:
        op.create_index(f"ix_fingerprints_{column}", "fingerprints", [column])
    for name, columns in _CHUNK_INDEXES.items():
        op.create_index(name, "fingerprints", columns)


def downgrade() -> None:
    for name in _CHUNK_INDEXES:
        op.drop_index(name, table_name="fingerprints")
    for column in _INDEXED:
        op.drop_index(f"ix_fingerprints_{column}", table_name="fingerprints")
    op.drop_table("fingerprints")
