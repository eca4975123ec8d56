"""audit: runs, their selected records, results, record warnings

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ledger.store.types import JSONType, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_runs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("backend", sa.String(32), nullable=True),
        sa.Column("backend_url", sa.String(1024), nullable=True),
        sa.Column("selection", JSONType, nullable=False),
        sa.Column("policy", JSONType, nullable=False),
        sa.Column("options", JSONType, nullable=False),
        sa.Column("selected_count", sa.Integer(), nullable=False),
        sa.Column("summary", JSONType, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_runs"),
    )
    op.create_index("ix_audit_runs_created_at", "audit_runs", ["created_at"])
    op.create_index("ix_audit_runs_status", "audit_runs", ["status"])

    op.create_table(
        "audit_run_records",
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("record_id", _ID, nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["audit_runs.id"], name="fk_audit_run_records_run_id_audit_runs"),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name="fk_audit_run_records_record_id_records"),
        sa.PrimaryKeyConstraint("run_id", "record_id", name="pk_audit_run_records"),
    )
    op.create_index("ix_audit_run_records_record_id", "audit_run_records", ["record_id"])

    op.create_table(
        "audit_results",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("record_id", _ID, nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("warnings", JSONType, nullable=False),
        sa.Column("distances", JSONType, nullable=True),
        sa.Column("replay", JSONType, nullable=True),
        sa.Column("replay_thumbnail", sa.LargeBinary(), nullable=True),
        sa.Column("replay_pixel_sha256", sa.String(64), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["audit_runs.id"], name="fk_audit_results_run_id_audit_runs"),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name="fk_audit_results_record_id_records"),
        sa.PrimaryKeyConstraint("id", name="pk_audit_results"),
        sa.UniqueConstraint("run_id", "record_id", name="uq_audit_results_run_id_record_id"),
    )
    op.create_index("ix_audit_results_record_id", "audit_results", ["record_id"])
    op.create_index("ix_audit_results_verdict", "audit_results", ["verdict"])
    op.create_index("ix_audit_results_outcome", "audit_results", ["outcome"])

    op.create_table(
        "record_warnings",
        sa.Column("record_id", _ID, nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("checked_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name="fk_record_warnings_record_id_records"),
        sa.PrimaryKeyConstraint("record_id", "code", name="pk_record_warnings"),
    )
    op.create_index("ix_record_warnings_code", "record_warnings", ["code"])


def downgrade() -> None:
    op.drop_index("ix_record_warnings_code", table_name="record_warnings")
    op.drop_table("record_warnings")
    for column in ("outcome", "verdict", "record_id"):
        op.drop_index(f"ix_audit_results_{column}", table_name="audit_results")
    op.drop_table("audit_results")
    op.drop_index("ix_audit_run_records_record_id", table_name="audit_run_records")
    op.drop_table("audit_run_records")
    op.drop_index("ix_audit_runs_status", table_name="audit_runs")
    op.drop_index("ix_audit_runs_created_at", table_name="audit_runs")
    op.drop_table("audit_runs")
