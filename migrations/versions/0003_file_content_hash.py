"""A hash of each file's whole content: a moved or copied file reuses a vector only on it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("files", sa.Column("content", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.drop_column("content")
