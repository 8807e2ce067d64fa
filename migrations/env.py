"""Alembic environment: clipsearch passes the connection; nothing is read from an ini file."""

from alembic import context

from clipsearch.storage.schema import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite alters tables by copy
)
with context.begin_transaction():
    context.run_migrations()
