"""uploads by URL: papers may be uploading (with an expiry), pages verified by the images worker

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("papers") as batch_op:
        batch_op.add_column(sa.Column("upload_expires_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("pages") as batch_op:
        batch_op.add_column(sa.Column("verified", sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column("upload_name", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("upload_token_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pages") as batch_op:
        batch_op.drop_column("upload_token_hash")
        batch_op.drop_column("upload_name")
        batch_op.drop_column("verified")
    with op.batch_alter_table("papers") as batch_op:
        batch_op.drop_column("upload_expires_at")
