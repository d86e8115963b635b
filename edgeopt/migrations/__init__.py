"""The results store's schema history, as Alembic revisions; edgeopt.store runs them when it opens a store.

A developer adding a revision: `alembic -c edgeopt/migrations/alembic.ini revision -m "what"` with
EDGEOPT_STORE naming a scratch database, then set edgeopt.store.HEAD to the new revision.
"""
