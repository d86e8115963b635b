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


def test_history_add_of_one_folder_by_several_processes_at_once_adds_each_result_once(url, int8_result, tmp_path):
    """Three `history --add` of one folder at once stored 495 rows of 415 results (941 on PostgreSQL): each
    process found a result absent before another added it (a walkthrough)."""
    import json
    folder = tmp_path / "results"
    folder.mkdir()
    doc = {k: v for k, v in int8_result.items() if not k.startswith("_")}
    for i in range(40):
        (folder / f"r{i}.json").write_text(json.dumps(dict(doc, created=f"2026-12-01T10:00:{i:02d}+00:00")))
    added = concurrency.adders(url, 3, folder)
    assert added["errors"] == [] and added["rows"] == 40 and sum(added["added"]) == 40, added
