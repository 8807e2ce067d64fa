"""Lens and place: each photo's lens and GPS position from its EXIF, and which reading of
EXIF filled a row (rows from before are read again by the next run, never re-embedded).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("files", sa.Column("lens", sa.Text))
    op.add_column("files", sa.Column("latitude", sa.Float))
    op.add_column("files", sa.Column("longitude", sa.Float))
    op.add_column("files", sa.Column("exif_read", sa.Integer))
    op.create_index("ix_files_latitude", "files", ["latitude"])


def downgrade() -> None:
    op.drop_index("ix_files_latitude", "files")
    with op.batch_alter_table("files") as batch:
        for column in ("exif_read", "longitude", "latitude", "lens"):
            batch.drop_column(column)
