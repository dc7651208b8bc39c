"""offline marking and the cascade: exams.provider, papers.local_reading, question_results.marked_by

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 13:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("exams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("provider", sa.String(length=10), server_default="vision", nullable=False))
    with op.batch_alter_table("papers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("local_reading", sa.JSON(), nullable=True))
    with op.batch_alter_table("question_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("marked_by", sa.String(length=10), server_default="vision", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("question_results", schema=None) as batch_op:
        batch_op.drop_column("marked_by")
    with op.batch_alter_table("papers", schema=None) as batch_op:
        batch_op.drop_column("local_reading")
    with op.batch_alter_table("exams", schema=None) as batch_op:
        batch_op.drop_column("provider")
