"""pending points: a paper's points still waiting for review, kept apart from its score

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("papers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pending_points", sa.Float(), server_default="0", nullable=False))
    # Papers marked before this revision: their pending answers' points move out of the score.
    op.execute(
        "UPDATE papers SET pending_points = COALESCE((SELECT SUM(q.max_score) FROM question_results q "
        "WHERE q.paper_id = papers.id AND q.needs_review), 0), "
        "score = (SELECT COALESCE(SUM(q.score), 0) FROM question_results q "
        "WHERE q.paper_id = papers.id AND NOT q.needs_review AND q.score IS NOT NULL) "
        "WHERE score IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("papers", schema=None) as batch_op:
        batch_op.drop_column("pending_points")
