"""the Flex lane: what a flex exam does when the Flex tier has no capacity; the questions each
call asked about, so estimates measure the replies' length a question

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("exams", sa.Column("flex_fallback", sa.String(length=10), nullable=False, server_default="wait"))
    op.add_column("usage", sa.Column("questions", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("usage", "questions")
    op.drop_column("exams", "flex_fallback")
