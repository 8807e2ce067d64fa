"""Generation: a number that every write transaction raises, so that a reader can tell
from one row that nothing in the catalog changed since it last looked (an unchanged re-run
of `index` then answers from a walk alone: indexing/settled.py).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "generation",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("number", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(table, [{"id": 1, "number": 0}])


def downgrade() -> None:
    op.drop_table("generation")
