"""school vocabularies: a school's own knowledge points, shared by all its exams

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("knowledge_points") as batch_op:
        batch_op.add_column(sa.Column("school_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("refines", sa.String(length=100), nullable=True))
        batch_op.create_foreign_key(
            "fk_knowledge_points_school_id_schools", "schools", ["school_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.create_index("ix_knowledge_points_school_id", ["school_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("knowledge_points") as batch_op:
        batch_op.drop_index("ix_knowledge_points_school_id")
        batch_op.drop_constraint("fk_knowledge_points_school_id_schools", type_="foreignkey")
        batch_op.drop_column("refines")
        batch_op.drop_column("school_id")
