"""media fingerprints: modality and per-modality detail; sampled video frames for lookup

Revision ID: 0005
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ledger.store.types import JSONType

revision = "0005"
down_revision = "0009"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_CHUNK_INDEXES = {
    f"ix_fingerprint_frames_phash_c{i}": [f"phash_c{i}", "phash", "record_id"] for i in range(4)
}


def upgrade() -> None:
    # Existing rows are images: the server default keeps them valid as they are.
    with op.batch_alter_table("fingerprints") as batch:
        batch.add_column(sa.Column("modality", sa.String(8), nullable=False, server_default="image"))
        batch.add_column(sa.Column("detail", JSONType, nullable=True))
    op.create_index("ix_fingerprints_modality", "fingerprints", ["modality"])
    op.create_table(
        "fingerprint_frames",
        sa.Column("record_id", _ID, nullable=False),
        sa.Column("sample", sa.Integer(), nullable=False),
        sa.Column("time_s", sa.Float(), nullable=False),
        sa.Column("phash", sa.BigInteger(), nullable=False),
        sa.Column("phash_c0", sa.Integer(), nullable=False),
        sa.Column("phash_c1", sa.Integer(), nullable=False),
        sa.Column("phash_c2", sa.Integer(), nullable=False),
        sa.Column("phash_c3", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"], ["fingerprints.record_id"], name="fk_fingerprint_frames_record_id_fingerprints"
        ),
        sa.PrimaryKeyConstraint("record_id", "sample", name="pk_fingerprint_frames"),
    )
    for name, columns in _CHUNK_INDEXES.items():
        op.create_index(name, "fingerprint_frames", columns)


def downgrade() -> None:
    for name in _CHUNK_INDEXES:
        op.drop_index(name, table_name="fingerprint_frames")
    op.drop_table("fingerprint_frames")
    op.drop_index("ix_fingerprints_modality", table_name="fingerprints")
    with op.batch_alter_table("fingerprints") as batch:
        batch.drop_column("detail")
        batch.drop_column("modality")
