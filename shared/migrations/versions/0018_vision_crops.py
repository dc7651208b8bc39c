"""the vision lane's crops: a templated exam's paper cut into its questions' regions, sent instead
of the pages when that is fewer tokens

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("papers", sa.Column("crops", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("papers", "crops")
