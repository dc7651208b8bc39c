"""review and reports

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 11:33:55.275927
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("exams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trial_papers", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("trial_released", sa.Boolean(), nullable=False, server_default=sa.false()))

    with op.batch_alter_table("knowledge_points", schema=None) as batch_op:
        batch_op.add_column(sa.Column("aliases", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("exam_id", sa.Uuid(), nullable=True))
        batch_op.create_index(batch_op.f("ix_knowledge_points_exam_id"), ["exam_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_knowledge_points_exam_id_exams", "exams", ["exam_id"], ["id"], ondelete="CASCADE"
        )

    with op.batch_alter_table("question_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("review_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("from_key", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column("check_equivalent", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("model_is_correct", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("model_score", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("model_knowledge_points", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.alter_column("score", existing_type=sa.FLOAT(), nullable=True)

    # Results graded before this revision: the model's verdict is the one they hold.
    op.execute("UPDATE question_results SET model_is_correct = is_correct, model_score = score")


def downgrade() -> None:
    with op.batch_alter_table("question_results", schema=None) as batch_op:
        batch_op.alter_column("score", existing_type=sa.FLOAT(), nullable=False)
        batch_op.drop_column("reviewed_at")
        batch_op.drop_column("model_knowledge_points")
        batch_op.drop_column("model_score")
        batch_op.drop_column("model_is_correct")
        batch_op.drop_column("check_equivalent")
        batch_op.drop_column("from_key")
        batch_op.drop_column("review_reason")

    with op.batch_alter_table("knowledge_points", schema=None) as batch_op:
        # WARNING: constraint name is None; this directive will fail as
        # rendered.  Add a name, or use a naming convention; see
        # https://alembic.sqlalchemy.org/en/latest/naming.html
        batch_op.drop_constraint("fk_knowledge_points_exam_id_exams", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_knowledge_points_exam_id"))
        batch_op.drop_column("exam_id")
        batch_op.drop_column("aliases")

    with op.batch_alter_table("exams", schema=None) as batch_op:
        batch_op.drop_column("trial_released")
        batch_op.drop_column("trial_papers")
