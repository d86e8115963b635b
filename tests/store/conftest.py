"""Fixtures of the store tests: one real PostgreSQL server for the session (pgserver.py)."""
import subprocess
import uuid

import pytest

import pgserver


@pytest.fixture(scope="session")
def pg():
    """A running PostgreSQL server; the tests are skipped with the reason where none can be started."""
    reason = pgserver.available()
    if reason:
        pytest.skip(reason)
    try:
        server = pgserver.start()
    except subprocess.CalledProcessError as e:
        pytest.skip(f"PostgreSQL did not start: {(e.stderr or e.stdout or '').strip()[-300:]}")
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg):
    """A fresh, empty database on the session's server."""
    return pg.create_database("t_" + uuid.uuid4().hex[:12])
