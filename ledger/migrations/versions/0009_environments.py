"""environments: the runtime of each in-process generation, beside its record

Revision ID: 0009
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ledger.store.types import JSONType

revision = "0009"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "record_environments",
        sa.Column("record_id", _ID, nullable=False),
        sa.Column("environment", JSONType, nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"], ["records.id"], name="fk_record_environments_record_id_records"
        ),
        sa.PrimaryKeyConstraint("record_id", name="pk_record_environments"),
    )


def downgrade() -> None:
    op.drop_table("record_environments")
