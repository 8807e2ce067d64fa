"""The recall a vector index reached against exact search, per query set, when measured.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("vector_indexes", sa.Column("recall", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("vector_indexes") as batch:
        batch.drop_column("recall")
