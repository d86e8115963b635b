"""The results store on SQLite and on a real PostgreSQL server (pgserver.py): typed columns, upgrading a
store that the pre-migration edgeopt made, refusals, masked passwords, and the CLI around it."""
import datetime
import json
import pathlib
import subprocess
import sys

import pytest
import sqlalchemy as sa
import yaml
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import postgresql

import legacy_store
import pgserver
from pgserver import pg, pg_url  # noqa: F401  (fixtures)
from conftest import FAST_BENCH_ARGS
from edgeopt.errors import BadInput
from edgeopt import store as store_module
from edgeopt.store import HEAD, MIGRATIONS, Store

UTC = datetime.timezone.utc
DOC = {"schema": "edgeopt.result/1", "created": "2026-11-30T10:15:00.250000+01:00", "status": "ok",
       "device": {"name": "pi-kitchen", "host": "10.0.0.7"}, "bundle": {"name": "mnet", "manifest_sha256": "ab" * 32},
       "latency": {"p50_ms": 1.5, "p90_ms": 2.25, "p99_ms": 3.0, "raw": [1.0, 2.0]}, "memory": {"peak_rss_mb": 80.5},
       "accuracy": {"top1": 0.97}, "_path": "results/mnet@pi-kitchen.json"}
FAILED = {"schema": "edgeopt.result/1", "status": "failed", "device": {"name": "pi-garage"},
          "error": {"message": "no route to host", "exit_code": 3}}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    """A new, empty store on each backend."""
    if request.param == "sqlite":
        return sa.engine.URL.create("sqlite", database=str(tmp_path / "results" / "edgeopt.db"))
    return request.getfixturevalue("pg_url")


def _query(url, sql):
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql(sql).all()
    finally:
        engine.dispose()


def test_head_is_the_newest_migration():
    scripts = ScriptDirectory(str(MIGRATIONS))
    assert scripts.get_heads() == [HEAD]


def test_created_is_aware_and_document_is_json(url):
    before = datetime.datetime.now(UTC)
    with Store(url) as store:
        store.add(DOC, "run-1")
        store.add(FAILED)  # no `created`: the time it was stored
        newest, oldest = store.history()
        documents = store.documents([oldest["id"], newest["id"]])
        assert store.revision() == HEAD
    assert datetime.datetime.fromisoformat(oldest["created"]) == datetime.datetime(2026, 11, 30, 9, 15, 0, 250000, UTC)
    assert datetime.datetime.fromisoformat(oldest["created"]).utcoffset() == datetime.timedelta(0)
    assert before <= datetime.datetime.fromisoformat(newest["created"]) <= datetime.datetime.now(UTC)
    assert (oldest["device"], oldest["p90_ms"], oldest["top1"], oldest["run_id"]) == ("pi-kitchen", 2.25, 0.97, "run-1")
    assert documents[oldest["id"]] == {k: v for k, v in DOC.items() if k != "_path"}
    assert newest["status"] == "failed" and newest["error"] == "no route to host"
    columns = {c["name"]: c["type"] for c in sa.inspect(sa.create_engine(url)).get_columns("results")}
    if url.get_backend_name() == "postgresql":
        assert isinstance(columns["document"], postgresql.JSONB)
        assert isinstance(columns["created"], sa.TIMESTAMP) and columns["created"].timezone


def test_times_read_back_in_utc_whatever_the_sessions_zone_and_a_z_suffix_is_utc(url, monkeypatch):
    """PostgreSQL gave timestamptz in its session's zone (PGTZ, the server's default), and the report sorts the
    history by the ISO text: runs across a DST change read out of order. A `created` ending in Z was stored at
    the time of storing on Python 3.10 (a code review)."""
    monkeypatch.setenv("PGTZ", "America/New_York")
    with Store(url) as store:
        store.add(dict(DOC, created="2026-11-01T06:10:00Z"))
        store.add(dict(DOC, created="2026-11-01T05:50:00+00:00"))
        rows = store.history()
    assert [r["created"] for r in rows] == ["2026-11-01T06:10:00+00:00", "2026-11-01T05:50:00+00:00"]


def test_non_finite_numbers_are_stored_as_null(url):
    doc = dict(DOC, latency={"p90_ms": float("nan"), "max_ms": float("inf")})
    with Store(url) as store:
        store.add(doc)
        row, = store.history()
        assert row["p90_ms"] is None and store.documents([row["id"]])[row["id"]]["latency"] == \
            {"p90_ms": None, "max_ms": None}


def test_store_made_by_the_previous_edgeopt_is_upgraded_in_place(url):
    legacy = legacy_store.Store(url.render_as_string(hide_password=False))
    legacy.add(DOC, "old-run")
    legacy.add(FAILED)  # stored with created "" by that version
    legacy.add(dict(DOC, latency={"p90_ms": float("nan")}))  # its document text holds NaN
    legacy.close()
    assert _query(url, "SELECT count(*) FROM results") == [(3,)]
    upgraded_at = datetime.datetime.now(UTC)
    with Store(url) as store:
        rows = store.history()
        documents = store.documents([r["id"] for r in rows])
        store.add(DOC)
        assert max(r["id"] for r in store.history()) == 4
    # newest measured first: the failed row was stored with no time and took the upgrade's; then id breaks the tie
    assert [r["id"] for r in rows] == [2, 3, 1]
    assert [r["device"] for r in rows] == ["pi-garage", "pi-kitchen", "pi-kitchen"]
    rows = sorted(rows, key=lambda r: -r["id"])
    assert rows[2]["run_id"] == "old-run" and rows[2]["p90_ms"] == 2.25
    assert datetime.datetime.fromisoformat(rows[2]["created"]) == datetime.datetime(2026, 11, 30, 9, 15, 0, 250000, UTC)
    assert datetime.datetime.fromisoformat(rows[1]["created"]) >= upgraded_at.replace(microsecond=0)
    assert documents[1] == {k: v for k, v in DOC.items() if k != "_path"}
    assert documents[3]["latency"] == {"p90_ms": None}
    assert _query(url, "SELECT version_num FROM edgeopt_alembic_version") == [(HEAD,)]


def test_a_store_made_before_migrations_is_read_by_history_too(cli, url):
    """Only a writer upgraded it: `history`, `check --baseline store` and `report` called it empty ("holds no
    edgeopt results"), though the README says an older version's store keeps its rows (a code review)."""
    legacy = legacy_store.Store(url.render_as_string(hide_password=False))
    legacy.add(DOC, "old-run")
    legacy.close()
    r = cli("history", "--store", url.render_as_string(hide_password=False), "--json")
    assert r.exit_code == 0 and [row["run_id"] for row in r.json()] == ["old-run"], r.stderr


def test_rows_an_older_edgeopt_writes_to_an_upgraded_store_keep_their_order(tmp_path):
    """An upgrade walkthrough: the pre-migration edgeopt still writes to an SQLite store today's upgraded (it makes
    no schema, so nothing stops it; PostgreSQL refuses its text for a timestamp), `created` as
    "2026-12-01T10:00:00+00:00", which SQLite sorted after today's "2026-12-01 10:30:00": history out of order and
    an older baseline chosen."""
    url = sa.engine.URL.create("sqlite", database=str(tmp_path / "edgeopt.db"))
    with Store(url) as store:
        store.add(dict(DOC, created="2026-12-01T10:30:00+00:00"), "new")   # the schema upgraded
    legacy = legacy_store.Store(url.render_as_string(hide_password=False))
    legacy.add(dict(DOC, created="2026-12-01T10:00:00+00:00"), "old-earlier")
    legacy.add(dict(DOC, created="2026-12-01T12:00:00+01:00"), "old-later")   # 11:00 UTC
    legacy.close()
    with Store(url) as store:
        assert [r["run_id"] for r in store.history()] == ["old-later", "new", "old-earlier"]
        baseline = store.last_good("mnet", "pi-kitchen", "2026-12-01T10:45:00+00:00")
        assert baseline["created"] == "2026-12-01T10:30:00+00:00"
        assert store.last_good("mnet", "pi-kitchen", "2026-12-01T10:20:00+00:00")["created"] == \
            "2026-12-01T10:00:00+00:00"


def test_a_newer_schema_is_refused(url):
    Store(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE edgeopt_alembic_version SET version_num = '9999'")
    engine.dispose()
    with pytest.raises(BadInput, match="cannot upgrade its schema: its schema revision '9999' is newer than this edgeopt knows"):
        Store(url)


def test_a_results_table_that_is_not_edgeopts_is_left_alone(url):
    if url.get_backend_name() == "sqlite":
        pathlib.Path(url.database).parent.mkdir()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE results (id INTEGER PRIMARY KEY, score FLOAT)")
        conn.exec_driver_sql("INSERT INTO results VALUES (1, 0.5)")
    engine.dispose()
    with pytest.raises(BadInput, match=r"cannot upgrade its schema: its table `results` was not made by edgeopt"):
        Store(url)
    assert _query(url, "SELECT * FROM results") == [(1, 0.5)]


def test_bare_postgresql_url_means_psycopg(pg_url):
    for scheme in ("postgresql", "postgres"):
        with Store(pg_url.set(drivername=scheme).render_as_string(hide_password=False)) as store:
            assert store.url.drivername == "postgresql+psycopg"
            assert store.history() == []


def test_wrong_password_and_no_server_are_one_line_without_the_password(pg):
    """A server that does not answer is exit 3, as a device that does not (it was 2 at the start of a run and 3 in
    its middle: CI could not tell "server down, retry" from "wrong password"); a wrong password stays 2."""
    from edgeopt.errors import StoreUnreachable
    secret = "Wr0ng-Pa55word"
    for url, said, code in ((pg.url("postgres", password=secret), "password authentication failed", 2),
                            (pg.url("postgres", password=secret).set(port=pgserver.free_port()), "Connection refused",
                             3)):
        with pytest.raises(BadInput) as caught:
            Store(url.render_as_string(hide_password=False))
        message = str(caught.value)
        assert "\n" not in message and secret not in message and ":***@127.0.0.1" in message
        assert said in message and caught.value.exit_code == code, message
        assert isinstance(caught.value, StoreUnreachable) == (code == 3)
    with pytest.raises(BadInput) as caught:   # a host name that does not resolve: the user's to fix
        Store("postgresql://team@no-such-host.invalid/results")
    assert caught.value.exit_code == 2 and "failed to resolve host" in str(caught.value), caught.value
    # no FATAL from these either, and they are the user's to fix: no password given, SSL the server lacks
    for url in (pg.url("postgres").set(password=None), pg.url("postgres").update_query_dict({"sslmode": "require"})):
        with pytest.raises(BadInput) as caught:
            Store(url.render_as_string(hide_password=False))
        assert caught.value.exit_code == 2, caught.value


def test_cli_messages_never_show_the_password(cli, pg):
    secret = "Wr0ng-Pa55word"
    url = pg.url("postgres", password=secret).render_as_string(hide_password=False)
    r = cli("history", "--store", url)
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.stderr
    assert secret not in r.stderr and "password authentication failed" in r.stderr
    r = cli("history", "--store", url + "?password=" + secret)
    assert r.exit_code == 2 and secret not in r.stderr, r.stderr


def test_a_store_server_that_does_not_answer_is_exit_3_before_anything_is_measured(cli, bundles, tmp_path):
    """Exit 3 at the start as in the middle of a run (it was 2 at the start: CI could not tell a server down from a
    wrong password), nothing measured and no results folder made."""
    down = f"postgresql://team:Sup3rS3cret@127.0.0.1:{pgserver.free_port()}/results"
    for verb in (["history"], ["bench", bundles["fp32"], "--results-dir", tmp_path / "r"]):
        r = cli(*verb, "--store", down)
        assert r.exit_code == 3 and r.stderr.count("\n") == 1 and "Connection refused" in r.stderr, r.stderr
        assert "Sup3rS3cret" not in r.stderr and not (tmp_path / "r").exists()


def test_history_on_a_missing_sqlite_store_creates_nothing(cli, tmp_path):
    r = cli("history", "--results-dir", tmp_path / "none" / "deeper")
    assert r.exit_code == 2 and r.stderr.startswith("edgeopt: error: no results store at ") and r.stderr.count("\n") == 1
    r = cli("history", "--store", f"sqlite:///{tmp_path / 'elsewhere' / 'h.db'}")
    assert r.exit_code == 2 and "no results store at" in r.stderr
    r = cli("history", "--results-dir", tmp_path / "two\nlines")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "two\\nlines" in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_history_on_a_database_without_edgeopts_tables_creates_none(cli, url):
    """A read of a mistyped but existing database (`postgres`, an empty SQLite file) is refused and makes no
    tables there; the first write makes them."""
    if url.get_backend_name() == "sqlite":
        pathlib.Path(url.database).parent.mkdir()
    _query(url, "SELECT 1")   # the database exists, empty
    text = url.render_as_string(hide_password=False)
    r = cli("history", "--store", text)
    assert r.exit_code == 2 and "holds no edgeopt results" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not sa.inspect(sa.create_engine(url)).get_table_names()
    with Store(url) as store:
        store.add(DOC)
    assert len(cli("history", "--store", text, "--json").json()) == 1


def test_the_last_good_result_is_the_candidates_own_hosts(url):
    """On both backends (a JSON path in SQL): the newest ok result of another host of the same device name is
    passed over; a row that records no host still counts."""
    mine = dict(DOC, device=dict(DOC["device"], hostname="ci-7"), created="2026-11-30T09:00:00+00:00")
    theirs = dict(DOC, device=dict(DOC["device"], hostname="laptop"), created="2026-11-30T10:00:00+00:00")
    with Store(url) as store:
        store.add(mine)
        store.add(theirs)
        later = "2026-12-01T00:00:00+00:00"
        assert store.last_good("mnet", "pi-kitchen", later, "ci-7")["created"] == mine["created"]
        assert store.last_good("mnet", "pi-kitchen", later, "laptop")["created"] == theirs["created"]
        assert store.last_good("mnet", "pi-kitchen", later)["created"] == theirs["created"]   # no host: the newest
        assert store.last_good("mnet", "pi-kitchen", later, "elsewhere") is None
        store.add(dict(DOC, created="2026-11-30T11:00:00+00:00"))   # an older agent's: no hostname
        assert store.last_good("mnet", "pi-kitchen", later, "elsewhere")["created"] == "2026-11-30T11:00:00+00:00"
        # the bundle's profile too: a bundle of that name for another profile is another bundle
        pi = dict(DOC, bundle=dict(DOC["bundle"], profile={"name": "raspberry-pi-5"}), created="2026-11-30T12:00:00+00:00")
        store.add(pi)
        assert store.last_good("mnet", "pi-kitchen", later, profile="raspberry-pi-5")["created"] == pi["created"]
        assert store.last_good("mnet", "pi-kitchen", later, profile="generic")["created"] == "2026-11-30T11:00:00+00:00"


def test_a_connection_the_server_dropped_is_replaced_before_the_write(pg, pg_url):
    """A long measurement outlives a pooled connection (a restart, a failover, an idle timeout): the result is
    still stored at the end, where the pool handed out the dead connection and the write failed."""
    with Store(pg_url) as store:
        store.add(DOC)
        engine = pg.admin()
        try:
            with engine.connect() as conn:
                killed = conn.exec_driver_sql(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %(db)s",
                    {"db": pg_url.database}).scalar()
        finally:
            engine.dispose()
        assert killed >= 1
        store.add(DOC)
        assert len(store.history()) == 2


def _terminate_connections(pg, database: str) -> int:
    engine = pg.admin()
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %(db)s",
                {"db": database}).scalar()
    finally:
        engine.dispose()


def test_a_study_outlives_a_connection_the_server_dropped(pg, pg_url):
    """A server restart a second long killed a running study, where bench outlived it (a team walkthrough):
    Optuna's engine is made as the store's, with the pre-ping."""
    import optuna
    from edgeopt.search.rdb import open_storage

    storage = open_storage(pg_url.render_as_string(hide_password=False), writing=True)
    study = optuna.create_study(study_name="s", storage=storage)
    study.set_user_attr("before", 1)
    assert _terminate_connections(pg, pg_url.database) >= 1
    study.set_user_attr("after", 2)
    assert study.user_attrs == {"before": 1, "after": 2}


@pytest.mark.slow
def test_bench_then_history_on_postgresql(cli, bundles, pg_url, tmp_path):
    url = pg_url.render_as_string(hide_password=False)
    r = cli("bench", bundles["fp32"], "--results-dir", tmp_path, "--store", url, *FAST_BENCH_ARGS, "--json")
    assert r.exit_code == 0, r.stderr
    r = cli("history", "--store", url, "--json")
    row, = json.loads(r.stdout)
    assert row["status"] == "ok" and row["device"] == "local" and row["p90_ms"] > 0
    # the row's file is this run's own copy: the latest file, which it named, is replaced by the next run
    assert pathlib.Path(row["path"]).parent == tmp_path / "history"
    assert json.loads(pathlib.Path(row["path"]).read_text())["latency"]["p90_ms"] == row["p90_ms"]
    assert datetime.datetime.fromisoformat(row["created"]).tzinfo is not None
    shown = cli("history", "--store", url, "-q").stdout.splitlines()[-1].split("\t")
    assert f"{row['p90_ms']:.4f}" in shown   # as compare shows it: 3 decimals read a 0.0212 ms p90 as 0.021


BLOCK_PSYCOPG = "import sys; sys.modules['psycopg'] = None; from edgeopt.cli import main; main()"


@pytest.mark.slow
def test_without_psycopg_nothing_is_measured(bundles, tmp_path):
    """One line naming the extra, exit 2, before bench or fleet bench measure or reach anything."""
    url = "postgresql://team:Sup3rS3cret@127.0.0.1:1/results"
    inventory = tmp_path / "fleet.yaml"
    inventory.write_text(yaml.safe_dump({"devices": {"far": {"host": "127.0.0.9", "port": 1, "user": "x"}}}))
    for verb in (["bench", bundles["fp32"]], ["fleet", "bench", bundles["fp32"], "--inventory", inventory]):
        p = subprocess.run([sys.executable, "-c", BLOCK_PSYCOPG, *map(str, verb), "--results-dir", tmp_path / "r",
                            "--store", url], capture_output=True, text=True, timeout=120)
        assert p.returncode == 2, p.stderr
        assert p.stderr.count("\n") == 1 and "pip install 'edgeopt[postgres]'" in p.stderr
        assert "Sup3rS3cret" not in p.stderr and "team:***@127.0.0.1:1" in p.stderr
        assert not (tmp_path / "r").exists()  # no result, no fleet run directory


def test_revision_kept_in_alembics_default_table_moves_to_ours(url):
    """Stores made before the version table was named keep the revision in `alembic_version`, which Optuna's
    study storage needs for its own schema in the same database."""
    Store(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        conn.exec_driver_sql(f"INSERT INTO alembic_version VALUES ('{HEAD}')")
        conn.exec_driver_sql("DROP TABLE edgeopt_alembic_version")
    engine.dispose()
    with Store(url) as store:
        assert store.revision() == HEAD
        store.add(DOC)
    assert _query(url, "SELECT version_num FROM edgeopt_alembic_version") == [(HEAD,)]
    assert not sa.inspect(sa.create_engine(url)).has_table("alembic_version")


def test_optuna_study_storage_shares_the_store_database(url):
    import optuna

    Store(url).close()
    storage = optuna.storages.RDBStorage(url.render_as_string(hide_password=False))
    study = optuna.create_study(study_name="s", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    storage.remove_session()
    storage.engine.dispose()
    with Store(url) as store:   # and the store still opens, at its own revision, beside Optuna's
        assert store.revision() == HEAD
        store.add(DOC)
    again = optuna.load_study(study_name="s", storage=url.render_as_string(hide_password=False))
    assert len(again.trials) == 2


def test_a_short_password_is_masked_where_echoed_not_in_every_word():
    message = "results store postgresql://u:p@127.0.0.1/db: opening: connection to server failed: p @ peer"
    masked_message = store_module._without(message, "p")
    assert masked_message == ("results store postgresql://u:***@127.0.0.1/db: opening: connection to server "
                              "failed: *** @ peer")
    assert store_module._without("password=s3cr.t; user u", "s3cr.t") == "password=***; user u"


def test_a_file_that_is_no_database_is_the_drivers_line_alone(cli, tmp_path):
    """SQLAlchemy's message wraps the driver's in '(sqlite3.DatabaseError) ... [SQL: ...] (Background ...)':
    the error quotes the driver's first line (errors.first_line of the wrapped error)."""
    path = tmp_path / "notes.db"
    path.write_text("meeting notes, not a database " * 8)
    r = cli("history", "--store", f"sqlite:///{path}")
    assert r.exit_code == 2 and r.stderr == f"edgeopt: error: results store sqlite:///{path}: cannot open it: " \
                                            "file is not a database\n", r.stderr


def test_a_result_file_is_kept_by_its_absolute_path(tmp_path, monkeypatch):
    """`history --json` gave `results/history/x.json`, relative to the folder bench ran in (a walkthrough)."""
    monkeypatch.chdir(tmp_path)
    with Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        store.add(dict(DOC, _path="results/history/x.json"))
        assert store.history()[0]["path"] == str(tmp_path / "results" / "history" / "x.json")


def test_history_says_what_each_bundle_was_made_into(url):
    """An fp32 bundle under an int8 name read as int8 in history: the column says what its manifest says."""
    from edgeopt.report.tables import history_table
    int8 = dict(DOC, bundle=dict(DOC["bundle"], compression={"quantize": "int8", "precision": "fp32"},
                                 transforms=["prune", "distill"]))
    with Store(url) as store:
        store.add(int8)
        store.add(dict(DOC, created="2026-11-30T11:00:00+00:00"))   # a result that does not say
        rows = store.history()
    assert [r["variant"] for r in rows] == [None, "int8 + prune + distill"]
    assert "compression" not in rows[0] and "transforms" not in rows[0]
    from rich.console import Console
    console = Console(width=250, record=True)
    console.print(history_table(rows))
    assert "int8 + prune + distill" in console.export_text()


def test_history_says_how_many_results_its_limit_left_out(cli, url):
    """`history` showed the newest 50 of 1,781 results and said nothing of the others (a scale walkthrough)."""
    with Store(url) as store:
        for hour in range(5):
            store.add(dict(DOC, created=f"2026-11-30T1{hour}:00:00+00:00"))
        store.add(dict(DOC, created="2026-11-30T09:00:00+00:00", device={"name": "other"}))
        assert store.count() == 6 and store.count(device="other") == 1 and store.count(bundle="nothing") == 0
    given = url.render_as_string(hide_password=False)
    r = cli("history", "--store", given, "--limit", "3")
    assert r.exit_code == 0 and "the newest 3 of 6 results shown: --limit N shows more" in r.stdout, r.stdout
    r = cli("history", "--store", given, "--limit", "5", "--device", DOC["device"]["name"])
    assert r.exit_code == 0 and "results shown" not in r.stdout   # all five of that device


def test_a_row_edited_by_hand_is_one_line_and_the_report_goes_on_without_history(cli, int8_result, tmp_path):
    """`created` 0 in a row was a TypeError traceback in history, report (whose history is a supplement) and
    check --baseline store (a fuzzing audit)."""
    import shutil
    import sqlite3
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    result = results_dir / "r.json"
    shutil.copy(int8_result["_path"], result)
    db = results_dir / "edgeopt.db"
    Store(f"sqlite:///{db}").add(json.loads(result.read_text()) | {"_path": str(result)})
    with sqlite3.connect(db) as c:
        c.execute("update results set created = 0")
    r = cli("history", "--results-dir", results_dir)
    assert r.exit_code == 2 and "cannot read the history: a row holds a value of the wrong type" in r.stderr, r.stderr
    r = cli("report", result, "-o", tmp_path / "r.html")
    assert r.exit_code == 0 and "the report has no history" in r.stderr and (tmp_path / "r.html").is_file()
    r = cli("check", result, "--baseline", "store")
    assert r.exit_code == 2 and "Traceback" not in r.stderr, r.stderr
    with sqlite3.connect(db) as c:   # SQLite keeps any type: a status of bytes crashed the history table
        c.execute("update results set created = '2026-12-01 10:00:00.000000', status = x'00'")
    r = cli("history", "--results-dir", results_dir)
    assert r.exit_code == 2 and "wrong type (status is bytes, not text)" in r.stderr, r.stderr


def test_a_role_that_may_not_add_rows_is_refused_before_the_measurement(cli, bundles, pg, pg_url, tmp_path):
    """bench measured fully, then failed to store its result with "permission denied for table results" (a team
    walkthrough): the server's permissions are read before anything is measured."""
    with Store(pg_url) as store:   # the owner makes the schema
        store.add(DOC)
    engine = pg.admin()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("DROP ROLE IF EXISTS viewer")
            conn.exec_driver_sql("CREATE ROLE viewer LOGIN PASSWORD 'view'")
        with sa.create_engine(pg_url.set(username="postgres", password=None, host=None, port=None,
                                         query={"host": pg.sockdir, "port": str(pg.port)}),
                              isolation_level="AUTOCOMMIT").connect() as conn:
            conn.exec_driver_sql("GRANT SELECT ON ALL TABLES IN SCHEMA public TO viewer")
    finally:
        engine.dispose()
    url = pg_url.set(username="viewer", password="view").render_as_string(hide_password=False)
    with Store(url) as viewer:
        assert len(viewer.history()) == 1   # it may read
        with pytest.raises(BadInput, match=r"role viewer may not add rows to its results table \(GRANT INSERT"):
            viewer.refuse_unwritable()
    r = cli("bench", bundles["fp32"], "--results-dir", tmp_path, "--store", url, *FAST_BENCH_ARGS)
    assert r.exit_code == 2 and "role viewer may not add rows" in r.stderr and "view@" not in r.stderr, r.stderr
    assert not list(tmp_path.glob("*.json"))   # nothing was measured
    # INSERT without the id sequence's USAGE still fails at the end: refused too; with both, it may write
    with sa.create_engine(pg_url.set(username="postgres", password=None, host=None, port=None,
                                     query={"host": pg.sockdir, "port": str(pg.port)}),
                          isolation_level="AUTOCOMMIT").connect() as conn:
        conn.exec_driver_sql("GRANT INSERT ON ALL TABLES IN SCHEMA public TO viewer")
        with Store(url) as viewer, pytest.raises(BadInput, match="USAGE on its id sequence"):
            viewer.refuse_unwritable()
        conn.exec_driver_sql("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO viewer")
        with Store(url) as viewer:
            viewer.refuse_unwritable()
            viewer.add(DOC)
            # forgetting needs DELETE: a role without it failed after the files were removed (a review)
            with pytest.raises(BadInput, match=r"role viewer may not delete rows of its results table"):
                viewer.refuse_undeletable()


def test_a_store_that_fails_while_history_add_adds_says_so_once_with_its_own_exit_code(int8_result, tmp_path,
                                                                                       monkeypatch):
    """A store error while adding read "cannot lock it for adding: results store ...: cannot store ...", and a
    server down became exit 2 (a review): the lock's words are for taking the lock only."""
    from edgeopt import api
    from edgeopt.errors import StoreUnreachable
    (tmp_path / "r.json").write_text(json.dumps({k: v for k, v in int8_result.items() if not k.startswith("_")}))

    def down(self, doc, **kwargs):
        raise StoreUnreachable("results store X: cannot store the result: connection failed: Connection refused")
    monkeypatch.setattr(Store, "add", down)
    with pytest.raises(StoreUnreachable) as caught:
        api.add_to_store([tmp_path / "r.json"], store_url=f"sqlite:///{tmp_path / 's.db'}")
    assert str(caught.value).startswith("results store X: cannot store") and caught.value.exit_code == 3


def test_history_add_puts_result_files_in_the_store_once(cli, int8_result, tmp_path):
    """Results from before a store existed, a CI artifact's, a teammate's for a shared store, or one whose run was
    killed between its file and its row had no way into the store (a team walkthrough)."""
    folder = tmp_path / "artifact"
    folder.mkdir()
    doc = {k: v for k, v in int8_result.items() if k != "_path"}
    for i in range(3):
        (folder / f"r{i}.json").write_text(json.dumps(dict(doc, created=f"2026-12-0{i + 1}T10:00:00+00:00")))
    (folder / "copy.json").write_text(json.dumps(dict(doc, created="2026-12-01T10:00:00+00:00")))   # r0, read once
    (folder / "cut.json").write_text('{"schema": "edgeopt.result/1", "sta')
    store = f"sqlite:///{tmp_path / 'team.db'}"
    r = cli("history", "--add", folder, "--store", store, "--json")
    assert r.exit_code == 2 and f"edgeopt: error: {folder / 'cut.json'} is not valid JSON" in r.stderr, r.stderr
    answer = r.json()
    assert len(answer["added"]) == 3 and not answer["held"] and len(answer["history"]) == 3
    assert [row["created"][:10] for row in answer["history"]] == ["2026-12-03", "2026-12-02", "2026-12-01"]
    (folder / "cut.json").unlink()
    again = cli("history", "--add", folder, "--store", store)
    assert again.exit_code == 0 and "added 0 result(s) to" in again.stdout and "(3 it held already)" in again.stdout
    missing = cli("history", "--add", tmp_path / "nothing.json", "--store", store)
    assert missing.exit_code == 2 and "result file not found" in missing.stderr


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_stored_result_is_held_as_itself(request, tmp_path, backend):
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{tmp_path / 's.db'}"
    with Store(url) as store:
        assert not store.holds(DOC)
        store.add(DOC)
        assert store.holds(DOC) and store.holds(dict(DOC, _path="elsewhere.json"))   # the file's name is no part
        assert not store.holds(dict(DOC, latency=dict(DOC["latency"], p90_ms=2.5)))
        # a result that records no time is stored at the time it was added: each --add added it again
        undated = {k: v for k, v in DOC.items() if k != "created"}
        assert not store.holds(undated)
        store.add(undated)
        assert store.holds(undated) and not store.holds(dict(undated, status="failed"))


def test_history_add_warns_of_a_result_dated_in_the_future(cli, int8_result, tmp_path):
    """A result a device's clock dated 2100 (the agent run by hand) stays at the top of history for good and is never
    forgotten (a clock walkthrough): added, and said."""
    doc = {k: v for k, v in int8_result.items() if not k.startswith("_")}
    (tmp_path / "future.json").write_text(json.dumps(dict(doc, created="2100-01-01T00:00:00+00:00")))
    (tmp_path / "now.json").write_text(json.dumps(doc))
    r = cli("history", "--add", tmp_path / "future.json", "--add", tmp_path / "now.json", "--store",
            f"sqlite:///{tmp_path / 's.db'}")
    assert r.exit_code == 0 and "added 2 result(s)" in r.stdout
    assert r.stderr.count("warning") == 1 and f"{tmp_path / 'future.json'} is dated 2100-01-01T00:00:00+00:00, " \
        "after this host's clock" in r.stderr, r.stderr
