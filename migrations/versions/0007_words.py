"""Words: what each file carries in words (its name, folders, caption, camera, text read
in it), for search by words. SQLite: an FTS5 table (its rowid the file's id); PostgreSQL:
a table with a GIN index over its words. Filled here for the files already indexed. And
the lines of text read in images (`index --ocr`), with which reading read each file.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from clipsearch.storage.catalog_words import FIELDS, PG_DOCUMENT, WordRecords

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("files", sa.Column("text_read", sa.Integer))
    op.create_table(
        "text_lines",
        sa.Column(
            "file_id", sa.Integer, sa.ForeignKey("files.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("line", sa.Integer, primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("box", sa.Text, nullable=False),
    )
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        columns = ", ".join(FIELDS)
        op.execute(
            f"CREATE VIRTUAL TABLE words USING fts5({columns}, "
            "tokenize = 'unicode61 remove_diacritics 2')"
        )
    else:
        op.create_table(
            "words",
            sa.Column("rowid", sa.Integer, primary_key=True),
            *(sa.Column(field, sa.Text) for field in FIELDS),
        )
        op.execute(f"CREATE INDEX ix_words_document ON words USING GIN ({PG_DOCUMENT})")
    session = sa.orm.Session(bind=bind)
    ids = [i for (i,) in bind.execute(sa.text("SELECT id FROM files WHERE state = 'ok'"))]
    WordRecords.refresh(session, ids)
    session.flush()


def downgrade() -> None:
    op.execute("DROP TABLE words")
    op.drop_table("text_lines")
    with op.batch_alter_table("files") as batch:
        batch.drop_column("text_read")
