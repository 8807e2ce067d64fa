"""Vector change log and built vector indexes, for incremental FAISS updates.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vector_log",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("file_id", sa.BigInteger, nullable=False),
        sa.Column("op", sa.String(1), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_vector_log_model_seq", "vector_log", ["model_id", "seq"])
    # Vectors that existed before the log: one '+' each, so the first index build sees them.
    op.execute(
        "INSERT INTO vector_log (model_id, file_id, op) SELECT model_id, file_id, '+' FROM vectors"
    )
    op.create_table(
        "vector_indexes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "model_id",
            sa.Integer,
            sa.ForeignKey("models.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column("preset", sa.String(32), nullable=False),
        sa.Column("factory", sa.Text, nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("filename", sa.Text, nullable=False),
        sa.Column("log_seq", sa.Integer, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("tombstones", sa.Integer, nullable=False),
        sa.Column("built_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("vector_indexes")
    op.drop_table("vector_log")
