"""reply first: usage rows keep the paid reply until its marks are recorded

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reply_content", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("reply_model", sa.String(length=100), nullable=True))
        batch_op.create_index("ix_usage_paper_outcome", ["paper_id", "outcome"])


def downgrade() -> None:
    with op.batch_alter_table("usage", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_paper_outcome")
        batch_op.drop_column("reply_model")
        batch_op.drop_column("reply_content")
