"""Alembic's entry point: run the revisions on the connection `interview.store.migrate` gives."""

from alembic import context

from interview.store.tables import Base

if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not set up: the service migrates live")

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("run migrations through interview.store.migrate, which passes a connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # Autogenerate writes batch operations, the way SQLite alters a table (PostgreSQL runs them
    # as plain ALTERs).
    render_as_batch=True,
    compare_type=True,
)
# Inside the caller's transaction (begin_transaction then does nothing): the lock taken there
# is held until every revision has run.
with context.begin_transaction():
    context.run_migrations()
