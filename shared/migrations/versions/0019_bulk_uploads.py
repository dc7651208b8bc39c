"""class ZIPs uploaded by URL, unpacked by a worker

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bulk_uploads",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("school_id", sa.Integer(), sa.ForeignKey("schools.id", ondelete="CASCADE"), nullable=False),
        sa.Column("exam_id", sa.Uuid(), sa.ForeignKey("exams.id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("archive_name", sa.String(255), nullable=False),
        sa.Column("archive_bytes", sa.BigInteger(), nullable=False),
        sa.Column("archive_key", sa.String(300), nullable=False),
        sa.Column("class_label", sa.String(100), nullable=False),
        sa.Column("roster", sa.JSON(), nullable=True),
        sa.Column("upload_token_hash", sa.String(64), nullable=True),
        sa.Column("upload_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("parts_id", sa.String(1000), nullable=True),
        sa.Column("part_bytes", sa.Integer(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_bulk_uploads_school_id", "bulk_uploads", ["school_id"])
    op.create_index("ix_bulk_uploads_exam_id", "bulk_uploads", ["exam_id"])
    op.create_index("ix_bulk_uploads_status_updated", "bulk_uploads", ["status", "updated_at"])


def downgrade() -> None:
    op.drop_table("bulk_uploads")
