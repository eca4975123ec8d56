"""records, tags and experiments

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ledger.store.types import JSONType, SeedType, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("plan", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_experiments"),
    )
    op.create_table(
        "records",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("task_type", sa.String(64), nullable=False),
        sa.Column("modality", sa.String(16), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("scheduler_requested", sa.String(128), nullable=True),
        sa.Column("scheduler", sa.String(128), nullable=True),
        sa.Column("seed", SeedType(), nullable=True),
        sa.Column("seed_origin", sa.String(16), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=True),
        sa.Column("negative_prompt", sa.Text(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("steps", sa.Integer(), nullable=True),
        sa.Column("cfg_scale", sa.Float(), nullable=True),
        sa.Column("output_format", sa.String(16), nullable=True),
        sa.Column("params", JSONType, nullable=False),
        sa.Column("response", JSONType, nullable=False),
        sa.Column("task_uuid", sa.String(64), nullable=True),
        sa.Column("output_uuid", sa.String(64), nullable=True),
        sa.Column("output_index", sa.Integer(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("experiment_id", sa.String(64), nullable=True),
        sa.Column("parent_id", _ID, nullable=True),
        sa.Column("tags", JSONType, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"], ["experiments.id"], name="fk_records_experiment_id_experiments"
        ),
        sa.ForeignKeyConstraint(["parent_id"], ["records.id"], name="fk_records_parent_id_records"),
        sa.PrimaryKeyConstraint("id", name="pk_records"),
        sa.UniqueConstraint("idempotency_key", name="uq_records_idempotency_key"),
    )
    for column in (
        "model",
        "scheduler",
        "seed",
        "task_uuid",
        "experiment_id",
        "parent_id",
        "status",
        "created_at",
    ):
        op.create_index(f"ix_records_{column}", "records", [column])
    op.create_table(
        "record_tags",
        sa.Column("record_id", _ID, nullable=False),
        sa.Column("tag", sa.String(128), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name="fk_record_tags_record_id_records"),
        sa.PrimaryKeyConstraint("record_id", "tag", name="pk_record_tags"),
    )
    op.create_index("ix_record_tags_tag", "record_tags", ["tag"])


def downgrade() -> None:
    op.drop_index("ix_record_tags_tag", table_name="record_tags")
    op.drop_table("record_tags")
    for column in (
        "model",
        "scheduler",
        "seed",
        "task_uuid",
        "experiment_id",
        "parent_id",
        "status",
        "created_at",
    ):
        op.drop_index(f"ix_records_{column}", table_name="records")
    op.drop_table("records")
    op.drop_table("experiments")
