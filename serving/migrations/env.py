"""Alembic environment: runs against the connection pestid hands it (serving.db.migrate)."""

from alembic import context

from pestid.serving.db import Base

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic` on the command line: use sqlalchemy.url from the ini
    from sqlalchemy import create_engine

    connection = create_engine(context.config.get_main_option("sqlalchemy.url") or "sqlite://").connect()
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
