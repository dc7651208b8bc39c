"""economy lane batches

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 11:59:57.279374
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provider_batches",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("exam_id", sa.Uuid(), nullable=False),
        sa.Column("provider_batch_id", sa.String(length=100), nullable=False),
        sa.Column("input_file_id", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["exam_id"], ["exams.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["school_id"], ["schools.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider_batch_id"),
    )
    with op.batch_alter_table("provider_batches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_provider_batches_exam_id"), ["exam_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_provider_batches_school_id"), ["school_id"], unique=False)

    with op.batch_alter_table("exams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("priority", sa.String(length=10), nullable=False, server_default="standard"))

    with op.batch_alter_table("papers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("batch_id", sa.Uuid(), nullable=True))
        batch_op.create_index(batch_op.f("ix_papers_batch_id"), ["batch_id"], unique=False)
        batch_op.create_foreign_key("fk_papers_batch_id_provider_batches", "provider_batches", ["batch_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("papers", schema=None) as batch_op:
        # WARNING: constraint name is None; this directive will fail as
        # rendered.  Add a name, or use a naming convention; see
        # https://alembic.sqlalchemy.org/en/latest/naming.html
        batch_op.drop_constraint("fk_papers_batch_id_provider_batches", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_papers_batch_id"))
        batch_op.drop_column("batch_id")

    with op.batch_alter_table("exams", schema=None) as batch_op:
        batch_op.drop_column("priority")

    with op.batch_alter_table("provider_batches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_provider_batches_school_id"))
        batch_op.drop_index(batch_op.f("ix_provider_batches_exam_id"))

    op.drop_table("provider_batches")
