"""Many processes at one results store, on SQLite and on a real PostgreSQL server (concurrency.py does the work;
run it on its own for the 80-process figures). Before migrations were serialised, 8 of 80 first opens of one
SQLite file failed with `table results already exists`."""
import pytest
import sqlalchemy as sa

import concurrency
from pgserver import pg, pg_url  # noqa: F401  (fixtures)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return sa.engine.URL.create("sqlite", database=str(tmp_path / "store.db"))
    return request.getfixturevalue("pg_url")


@pytest.mark.slow
def test_first_opens_at_once_then_writers_at_once(url):
    opened = concurrency.first_opens(url, 12)
    assert opened["errors"] == 0, opened
    written = concurrency.writers(url, 4, 20)
    assert (written["errors"], written["found"]) == (0, 80), written
