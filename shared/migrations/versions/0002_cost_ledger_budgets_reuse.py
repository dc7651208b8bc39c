"""cost ledger budgets reuse

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 11:07:49.765462
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("exams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("budget_usd", sa.Numeric(precision=12, scale=4), nullable=True))

    with op.batch_alter_table("pages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sent_width", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("sent_height", sa.Integer(), nullable=True))

    with op.batch_alter_table("papers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("paused_for", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("pages_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("prompt_version", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("reused_from", sa.Uuid(), nullable=True))
        batch_op.create_index("ix_papers_reuse", ["school_id", "pages_hash", "prompt_version"], unique=False)

    with op.batch_alter_table("schools", schema=None) as batch_op:
        batch_op.add_column(sa.Column("daily_budget_usd", sa.Numeric(precision=12, scale=4), nullable=True))

    with op.batch_alter_table("usage", schema=None) as batch_op:
        batch_op.add_column(sa.Column("estimated_prompt_tokens", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("estimated_completion_tokens", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("estimated_cost_usd", sa.Numeric(precision=12, scale=6), nullable=False, server_default="0")
        )
        batch_op.create_index(batch_op.f("ix_usage_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("usage", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_usage_created_at"))
        batch_op.drop_column("estimated_cost_usd")
        batch_op.drop_column("estimated_completion_tokens")
        batch_op.drop_column("estimated_prompt_tokens")

    with op.batch_alter_table("schools", schema=None) as batch_op:
        batch_op.drop_column("daily_budget_usd")

    with op.batch_alter_table("papers", schema=None) as batch_op:
        batch_op.drop_index("ix_papers_reuse")
        batch_op.drop_column("reused_from")
        batch_op.drop_column("prompt_version")
        batch_op.drop_column("pages_hash")
        batch_op.drop_column("paused_for")

    with op.batch_alter_table("pages", schema=None) as batch_op:
        batch_op.drop_column("sent_height")
        batch_op.drop_column("sent_width")

    with op.batch_alter_table("exams", schema=None) as batch_op:
        batch_op.drop_column("budget_usd")
