"""Datasets: what a dataset says about an item (a tar shard's sidecars, a list file's
other columns) as JSON, and the tar shards read whole (their members known without
opening them while they are unchanged).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from clipsearch.storage.schema import FsPath

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("files", sa.Column("meta", sa.Text))
    op.create_table(
        "shards",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("path", FsPath, nullable=False, unique=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("shards")
    with op.batch_alter_table("files") as batch:
        batch.drop_column("meta")
