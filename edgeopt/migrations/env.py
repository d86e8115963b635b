"""Alembic's environment for the results store.

edgeopt.store passes the connection it opened (already inside the transaction that holds the upgrade lock) as
config.attributes["connection"]; the `alembic` command line, for developers, gets one from $EDGEOPT_STORE.
"""
import os

from alembic import context


def _run(connection) -> None:
    # render_as_batch: SQLite alters a table by copying it, and Alembic's batch mode does that for us.
    from edgeopt.store import VERSION_TABLE
    context.configure(connection=connection, render_as_batch=True, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    from edgeopt.store import parse_url
    import sqlalchemy as sa
    engine = sa.create_engine(parse_url(os.environ.get("EDGEOPT_STORE", "")))
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()
