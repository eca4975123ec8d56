"""browse indexes: (column, id) for the records page's equality filters, (tag, record_id)

A newest-first keyset page under an equality filter walks one of these backwards and
stops after a page, whatever the value's frequency (ledger/store/keyset.py). Each
replaces the single-column index on the same column, which it serves as well.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# columns whose single-column index becomes (column, id)
_REPLACED = ("model", "scheduler", "seed", "experiment_id", "status")


def upgrade() -> None:
    for column in _REPLACED:
        op.drop_index(f"ix_records_{column}", table_name="records")
        op.create_index(f"ix_records_{column}_id", "records", [column, "id"])
    op.create_index("ix_records_modality_id", "records", ["modality", "id"])
    op.drop_index("ix_record_tags_tag", table_name="record_tags")
    op.create_index("ix_record_tags_tag_record_id", "record_tags", ["tag", "record_id"])


def downgrade() -> None:
    op.drop_index("ix_record_tags_tag_record_id", table_name="record_tags")
    op.create_index("ix_record_tags_tag", "record_tags", ["tag"])
    op.drop_index("ix_records_modality_id", table_name="records")
    for column in reversed(_REPLACED):
        op.drop_index(f"ix_records_{column}_id", table_name="records")
        op.create_index(f"ix_records_{column}", "records", [column])
