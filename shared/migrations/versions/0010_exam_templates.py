"""exam templates: the blank paper's pages and each question's answer region

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("exams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("template", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("exams", schema=None) as batch_op:
        batch_op.drop_column("template")
