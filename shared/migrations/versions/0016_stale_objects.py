"""stored objects left behind while storage was away, for the sweep to delete; each live
call's duration, for the metrics

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stale_objects",
        sa.Column("key", sa.String(length=500), nullable=False),
        sa.Column("noted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.add_column("usage", sa.Column("seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("usage", "seconds")
    op.drop_table("stale_objects")
