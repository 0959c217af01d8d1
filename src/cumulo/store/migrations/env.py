"""Alembic environment: cumulo passes its own connection (see cumulo.store.migrate)."""

from alembic import context

from cumulo.store.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
