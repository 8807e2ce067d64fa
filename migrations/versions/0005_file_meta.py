"""What a dataset says about an item: a tar shard's sidecars (caption, JSON), a list
file's other columns, as JSON.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("files", sa.Column("meta", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.drop_column("meta")
