"""The results history: one row per result, behind SQLAlchemy Core, its schema kept by Alembic.

An SQLite file by default (results/edgeopt.db); PostgreSQL for a team (`pip install 'edgeopt[postgres]'`,
postgresql://USER@HOST/DB) by --store or $EDGEOPT_STORE. Opening a store for writing upgrades its schema first
(edgeopt/migrations), one process at a time: a transaction-scoped advisory lock on PostgreSQL, BEGIN IMMEDIATE
on SQLite, whose writers also wait out each other's locks (busy timeout). Every message shows the URL with its
password masked.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import pathlib
import re

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from .errors import BadInput, StoreUnreachable, first_line
from .results import bundle_variant

MIGRATIONS = pathlib.Path(__file__).with_name("migrations")
HEAD = "0002"  # the newest revision under migrations/versions (a test keeps the two in step)
REVISIONS = ("0001", "0002")  # every revision under migrations/versions
# Alembic's version table for our schema: not its default `alembic_version`, which Optuna's study storage
# (edgeopt optimize) keeps in the same database for its own schema.
VERSION_TABLE = "edgeopt_alembic_version"
LEGACY_VERSION_TABLE = "alembic_version"
SQLITE_BUSY_SECONDS = 60.0  # how long an SQLite writer waits for another's lock before giving up
PG_CONNECT_SECONDS = 10  # libpq connect_timeout unless the URL sets one
PG_MIGRATION_LOCK = 0x6564676F7074  # "edgeopt": the advisory lock key that serialises schema upgrades
ADDING_LOCK = 0x61646473  # "adds": history --add's check-then-add, one process at a time
FORMS = "sqlite:///PATH or postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE"
EXTRA = "pip install 'edgeopt[postgres]'"


class UtcDateTime(sa.types.TypeDecorator):
    """An aware datetime in, an aware datetime out: UTC on SQLite (which keeps no zone), timestamptz on PostgreSQL."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = value.astimezone(datetime.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        # UTC from both: PostgreSQL gives timestamptz in its session's zone, and the report sorts the history by
        # its ISO text (runs across a DST change read out of order)
        if value is None:
            return None
        return value.replace(tzinfo=datetime.timezone.utc) if value.tzinfo is None else \
            value.astimezone(datetime.timezone.utc)


metadata = sa.MetaData()
# The head schema, for queries only: migrations/ creates and upgrades the table, never metadata.create_all.
results_table = sa.Table(
    "results", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(80)),
    sa.Column("bundle", sa.String(200)),
    sa.Column("bundle_sha256", sa.String(64)),
    sa.Column("device", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("p50_ms", sa.Float), sa.Column("p90_ms", sa.Float), sa.Column("p99_ms", sa.Float),
    sa.Column("peak_rss_mb", sa.Float), sa.Column("power_w", sa.Float), sa.Column("top1", sa.Float),
    sa.Column("error", sa.Text),
    sa.Column("path", sa.Text),
    sa.Column("created", UtcDateTime(), nullable=False),
    sa.Column("document", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
)


def default_url(results_dir):
    """$EDGEOPT_STORE, else the SQLite file results_dir/edgeopt.db."""
    return os.environ.get("EDGEOPT_STORE") or file_url(pathlib.Path(results_dir) / "edgeopt.db")


def file_url(path) -> sa.engine.URL:
    """The SQLite store at `path`, as a URL object: any path, even one with '?', '#' or '%' (which text would
    read as a query, a fragment or an escape). A path this host's locale could not decode (bytes that are no
    UTF-8 under LANG=C) is refused: a URL is text, and its rendering was a traceback."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise BadInput(f"{shown}: the results store's path is not text in this host's locale (its bytes are no "
                       "UTF-8): give --results-dir or --store another path, or run under a UTF-8 locale") from None
    return sa.engine.URL.create("sqlite", database=text)


def sqlite_file(url) -> pathlib.Path | None:
    """The file of an SQLite store's URL (text is decoded as SQLAlchemy reads it: %20 is a space); None for
    another database, or for a URL that parse_url refuses (it says why where the store is opened)."""
    try:
        url = parse_url(url)
    except BadInput:
        return None
    return pathlib.Path(url.database) if url.drivername.startswith("sqlite") else None


def masked(url: sa.engine.URL) -> str:
    """The URL as a message may show it: no password, in the user part or in the query; on one line."""
    # Any query key that names a password (libpq's `password`, or a malformed `y?password` a driver may still
    # echo) has its value hidden.
    secret = {k: "***" for k in url.query if "pass" in k.lower()}
    if secret:
        url = url.update_query_dict(secret)
    return _one_line(url.render_as_string(hide_password=True))


def _one_line(text: str) -> str:
    """Control characters escaped (a --results-dir may hold a newline): an error is one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _without(message: str, password) -> str:
    """The message with every echo of the password masked: whole tokens only, so that a short password ('p')
    hides itself, not every 'p' of the text (which also told its length and letters)."""
    if not password:
        return message
    token = re.escape(str(password))
    return re.sub(rf"(?<![A-Za-z0-9]){token}(?![A-Za-z0-9])", "***", message)


def _masked_text(text: str) -> str:
    """A string that is not a URL, shown without anything that could be a password: all before its last '@'."""
    if "@" in text:
        scheme = re.match(r"[\w+.-]*://", text)
        text = (scheme.group(0) if scheme else "") + "***@" + text.rpartition("@")[2]
    return repr(re.sub(r"(password=)[^&#]*", r"\1***", text, flags=re.I))


def parse_url(url) -> sa.engine.URL:
    """A store URL, checked and normalised (bare postgresql:// means psycopg 3), or BadInput: one line."""
    if isinstance(url, pathlib.PurePath):
        url = file_url(url)
    if not isinstance(url, (str, sa.engine.URL)):
        raise BadInput(f"results store: expected a URL ({FORMS}), got {type(url).__name__}")
    if isinstance(url, str):
        url = _parse_text(url)
    url = url.set(drivername=url.drivername.lower())  # a URL scheme is case-insensitive
    backend, _, driver = url.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        return _postgres_url(url, driver)
    if backend == "sqlite":
        return _sqlite_url(url, driver)
    raise BadInput(f"results store {masked(url)}: edgeopt keeps results in SQLite or PostgreSQL, not {backend!r}: "
                   f"write {FORMS}")


def _parse_text(text: str) -> sa.engine.URL:
    if any(not c.isprintable() for c in text):  # a newline in a host or path would also break the one-line message
        raise BadInput(f"results store {_masked_text(text)}: a URL has no control characters: write {FORMS}")
    rest = text.partition("://")[2]
    if rest.count("@") > 1:  # the parser would take part of the password for the host
        raise BadInput(f"results store {_masked_text(text)}: more than one '@': write an '@' in the user name "
                       "or password as %40")
    try:
        url = sa.engine.make_url(text)
    except (sa.exc.ArgumentError, ValueError):
        raise BadInput(f"results store {_masked_text(text)} is not a database URL: write {FORMS}") from None
    if "@" in rest and url.username is None and url.password is None and not url.drivername.startswith("sqlite"):
        # The '@' went into the host or the database name: what precedes it may be a password (an SQLite URL's
        # path, though, may hold an '@' like the result files do).
        raise BadInput(f"results store {_masked_text(text)}: what precedes '@' is not USER[:PASSWORD]: write {FORMS}")
    return url


def _postgres_url(url: sa.engine.URL, driver: str) -> sa.engine.URL:
    if driver not in ("", "psycopg"):
        raise BadInput(f"results store {masked(url)}: edgeopt talks to PostgreSQL through psycopg 3, not {driver!r}: "
                       f"write postgresql:// or postgresql+psycopg://")
    try:
        import psycopg  # noqa: F401  (present and loadable: its libpq may be missing)
    except ImportError as e:
        raise BadInput(f"results store {masked(url)}: PostgreSQL needs psycopg 3: {EXTRA} "
                       f"({_database_said(e)})") from None
    return url.set(drivername="postgresql+psycopg")


def _sqlite_url(url: sa.engine.URL, driver: str) -> sa.engine.URL:
    if driver not in ("", "pysqlite"):
        raise BadInput(f"results store {masked(url)}: SQLite through {driver!r} is not supported: write sqlite:///PATH")
    if not url.database or url.database == ":memory:":
        raise BadInput(f"results store {masked(url)}: an SQLite store is a file: write sqlite:///PATH "
                       "(an in-memory one would be lost when edgeopt exits)")
    if url.query or url.host or url.username or url.port:
        raise BadInput(f"results store {masked(url)}: an SQLite URL is sqlite:///PATH, with no host and no ?options")
    return url


# SQLSTATEs of a server that is there but will not serve now: class 08 (connection exception), shutting down,
# crashed, starting up (cannot_connect_now), too many connections
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03", "53300")
# libpq's words, where psycopg has no SQLSTATE (at connect), for a server that did not answer or cannot serve now.
# Only these: a missing password ("fe_sendauth: no password supplied") or an SSL setting the server lacks also
# come without a FATAL, and are the user's to fix (a review).
_UNAVAILABLE_WORDS = ("Connection refused", "timeout expired", "Connection timed out", "server closed the connection",
                      "No route to host", "Network is unreachable", "could not receive data from server",
                      "the database system is", "too many clients", "remaining connection slots")


def _unreachable(error: BaseException) -> bool:
    """Whether the PostgreSQL server did not answer, or answered that it cannot serve now (exit 3, where CI may
    retry). A wrong password, database, host name or SSL setting is the user's to fix (bad input). SQLite's
    errors are of a file here, never of a server."""
    orig = getattr(error, "orig", None)
    if orig is None or not type(orig).__module__.startswith("psycopg"):
        return False
    state = getattr(orig, "sqlstate", None)
    if state:
        return state.startswith(_UNAVAILABLE_STATES)
    return type(orig).__name__ == "OperationalError" and any(words in str(orig) for words in _UNAVAILABLE_WORDS)


def _database_said(error: BaseException) -> str:
    """The first line of the driver's own error (SQLAlchemy wraps it as .orig, in a message that adds the SQL
    and a link), whitespace runs as one space."""
    return " ".join(first_line(error, str(getattr(error, "orig", None) or error)).split())


def _finite(value):
    """JSON both backends accept: NaN and infinities become null (JSONB has no such numbers), NUL characters go."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_finite(str(k)): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_dumps(value) -> str:
    return json.dumps(_finite(value), default=str)


def parse_created(text, fallback: datetime.datetime) -> datetime.datetime:
    """A result's ISO `created` as an aware datetime (UTC where it names no zone); `fallback` if it is not one."""
    from .results import parse_time

    when = parse_time(text)   # "Z" too, which Python 3.10's fromisoformat refuses: stored at "now", then the
    if when is None:          # regression gate's baseline cut-off was now, and could be the candidate itself
        return fallback
    return when if when.tzinfo is not None else when.replace(tzinfo=datetime.timezone.utc)


def _revision(conn, legacy: bool = True):
    """Plain SQL, not Alembic's MigrationContext: importing Alembic costs more than this query. A store made
    before edgeopt named its version table keeps its revision in Alembic's default table (_legacy_revision)."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return _legacy_revision(conn) if legacy else None
    return conn.execute(sa.select(sa.table(VERSION_TABLE, sa.column("version_num")).c.version_num)).scalar()


def _legacy_revision(conn):
    """Our revision in `alembic_version`, where stores made before version 0.1 of this rule keep it. Optuna's
    study storage, which shares the store's database, uses that table for its own schema: edgeopt moves out."""
    if not sa.inspect(conn).has_table(LEGACY_VERSION_TABLE):
        return None
    rows = conn.execute(sa.text(f"SELECT version_num FROM {LEGACY_VERSION_TABLE}")).scalars().all()
    ours = [r for r in rows if r in REVISIONS]
    return ours[0] if ours else None


def _move_version_table(conn, revision: str) -> None:
    """Move our revision out of Alembic's default table into VERSION_TABLE (inside the upgrade's lock)."""
    conn.execute(sa.text(f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
    conn.execute(sa.text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:r)"), {"r": revision})
    conn.execute(sa.text(f"DELETE FROM {LEGACY_VERSION_TABLE} WHERE version_num = :r"), {"r": revision})
    if not conn.execute(sa.text(f"SELECT COUNT(*) FROM {LEGACY_VERSION_TABLE}")).scalar():
        conn.execute(sa.text(f"DROP TABLE {LEGACY_VERSION_TABLE}"))



@contextlib.contextmanager
def exclusive(engine, key: int):
    """One process at a time, among all on `engine`'s database, inside: a session-level advisory lock on
    PostgreSQL; on SQLite an flock on a file beside the database (a held write transaction would block the very
    connections doing the work). Store.exclusive, and a study's runs (search.rdb.runs_locked)."""
    if engine.dialect.name == "sqlite":
        import fcntl
        with open(f"{engine.url.database}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        return
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": key})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            conn.commit()


class Store:
    """One results store. `create=False` (reading history) refuses a store that does not exist or holds no edgeopt
    results yet, and makes nothing: no SQLite file, no tables in a PostgreSQL database (a mistyped but existing
    database such as `postgres` must not get edgeopt's tables from a read)."""

    def __init__(self, url, create: bool = True):
        self.url = parse_url(url)
        self.name = masked(self.url)
        self.sqlite = self.url.get_backend_name() == "sqlite"
        if self.sqlite:
            self._sqlite_file(create)
        with self._errors("cannot open it"):
            self.engine = self._engine()
        try:
            self._upgrade(create)
        except BaseException:
            self.engine.dispose()
            raise

    def refuse_unwritable(self) -> None:
        """Before a measurement whose result it is to keep: an SQLite store that cannot be written (a read-only
        mount; access() sees one for root too) was found out after the measurement, its time spent. SQLite also
        writes its journal beside the file. On a server: a role that may not add rows, or a read-only server (a
        standby), measured fully and then failed to store its result (a team walkthrough)."""
        if not self.sqlite:
            return self._refuse_a_server_that_will_not_take_rows()
        path = pathlib.Path(self.url.database)
        unwritable = [p for p in (path, path.parent) if p.exists() and not os.access(p, os.W_OK)]
        if unwritable:
            raise BadInput(f"results store {self.name}: {_one_line(unwritable[0])} is not writable "
                           "(--store or $EDGEOPT_STORE names another)")

    def refuse_undeletable(self) -> None:
        """Before forgetting: a role that may add rows but not delete them (a CI's) failed after the files were
        removed, its rows left naming them (a review)."""
        if self.sqlite:
            return self.refuse_unwritable()
        query = sa.text("SELECT has_table_privilege(current_user, CAST(:table AS text), 'DELETE'), current_user")
        with self._errors("cannot read its permissions"), self.engine.connect() as conn:
            may_delete, user = conn.execute(query, {"table": results_table.name}).one()
        if not may_delete:
            raise BadInput(f"results store {self.name}: role {user} may not delete rows of its {results_table.name} "
                           "table (GRANT DELETE on it, or forget with a role that may)")

    def _refuse_a_server_that_will_not_take_rows(self) -> None:
        # a row's id comes from the table's sequence, which INSERT alone may not use
        query = sa.text("SELECT has_table_privilege(current_user, CAST(:table AS text), 'INSERT') AND "
                        "COALESCE(has_sequence_privilege(pg_get_serial_sequence(CAST(:table AS text), 'id'), 'USAGE'), "
                        "true), current_setting('transaction_read_only') = 'on', current_user")
        with self._errors("cannot read its permissions"), self.engine.connect() as conn:
            may_insert, read_only, user = conn.execute(query, {"table": results_table.name}).one()
        if read_only:
            raise BadInput(f"results store {self.name}: the server is read-only (a standby?): no result could be "
                           "stored there (--store or $EDGEOPT_STORE names another)")
        if not may_insert:
            raise BadInput(f"results store {self.name}: role {user} may not add rows to its {results_table.name} "
                           "table (GRANT INSERT on it and USAGE on its id sequence, or --store names another)")

    def _sqlite_file(self, create: bool) -> None:
        path = pathlib.Path(self.url.database)
        if path.is_dir():
            raise BadInput(f"results store {self.name}: {_one_line(path)} is a directory, not an SQLite file")
        if not create and not path.is_file():
            raise BadInput(f"no results store at {_one_line(path)}: nothing has been stored there yet "
                           "(bench and fleet bench write it; --store or $EDGEOPT_STORE names another)")
        with self._errors(f"cannot make the directory {_one_line(path.parent)}"):
            path.parent.mkdir(parents=True, exist_ok=True)

    def server_engine_options(self) -> dict:
        """How a PostgreSQL store's connections are made, the study's (Optuna's engine) as the store's own: a
        connection the server dropped (a restart, a failover, an idle timeout) during a long measurement is
        replaced by the pre-ping, rather than failing the write at the end (a study died of a restart the
        server was back from within a second: a team walkthrough); a server that does not answer is given up."""
        args = {} if "connect_timeout" in self.url.query else {"connect_timeout": PG_CONNECT_SECONDS}
        return {"connect_args": args, "pool_pre_ping": True}

    def _engine(self) -> sa.engine.Engine:
        if not self.sqlite:
            return sa.create_engine(self.url, json_serializer=_json_dumps, **self.server_engine_options())
        engine = sa.create_engine(self.url, connect_args={"timeout": SQLITE_BUSY_SECONDS}, json_serializer=_json_dumps)

        # pysqlite's own transaction handling would run DDL outside a transaction and take the write lock
        # late; edgeopt issues BEGIN itself (SQLAlchemy's documented recipe), IMMEDIATE for a writer.
        @sa.event.listens_for(engine, "connect")
        def _autocommit_driver(dbapi_connection, _record):
            dbapi_connection.isolation_level = None

        @sa.event.listens_for(engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("edgeopt_write") else "BEGIN")
        return engine

    @contextlib.contextmanager
    def _errors(self, doing: str, rows: bool = False):
        """A database, driver or file error as one line naming the store (password masked, even one echoed back).
        rows: reading rows, where a value edited by hand (`created` 0) is a TypeError of the column's type: said
        alike, its cause kept for --debug (elsewhere a TypeError is a bug, and stays a traceback)."""
        try:
            yield
        except (BadInput, sa.exc.SQLAlchemyError, OSError, ValueError, ImportError) as e:  # BadInput: a migration's
            message = _one_line(f"results store {self.name}: {doing}: {_database_said(e)}")
            raise (StoreUnreachable if _unreachable(e) else BadInput)(_without(message, self.url.password)) from None
        except (TypeError, AttributeError) as e:
            if not rows:
                raise
            message = _one_line(f"results store {self.name}: {doing}: a row holds a value of the wrong type ({e})")
            raise BadInput(_without(message, self.url.password)) from e

    @contextlib.contextmanager
    def _writing(self):
        """A connection in a write transaction: on SQLite it holds the write lock from its first statement."""
        with self.engine.connect() as conn:
            conn.execution_options(edgeopt_write=True)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def exclusive(self, key: int, doing: str):
        """One process at a time among all sharing this store, for work done on other connections (Optuna
        creating its tables: two workers started at once would both find none and both create them). A
        session-level advisory lock on PostgreSQL; on SQLite a lock file beside the database, since a held
        write transaction would block the very connections doing the work."""
        with self._errors(doing), exclusive(self.engine, key):
            yield

    @contextlib.contextmanager
    def locked(self, key: int, doing: str):
        """exclusive, with only the taking of the lock said as `doing`: the work inside says its own errors (a
        store that failed while `history --add` added read "cannot lock it for adding: results store ...: cannot
        store ...", and a server down lost its exit 3; a review)."""
        with contextlib.ExitStack() as held:
            with self._errors(doing):
                held.enter_context(exclusive(self.engine, key))
            yield

    def revision(self):
        """The schema revision the database is at (None: no edgeopt schema yet)."""
        with self._errors("cannot open it"), self.engine.connect() as conn:
            return _revision(conn)

    def _upgrade(self, create: bool = True) -> None:
        """Bring the schema to HEAD, one process at a time. Alembic is imported only by the one process that
        finds, holding the lock, that there is work to do: many first opens at once wait, then read one row."""
        with self._errors("cannot open it"), self.engine.connect() as conn:
            if _revision(conn, legacy=False) == HEAD:
                return
            # a store made before migrations (edgeopt 0.1) has its results table and no revision: not empty, and a
            # reader (history, check --baseline store, report) upgrades it as a writer does (it read as empty)
            empty = _revision(conn) is None and not sa.inspect(conn).has_table("results")
        if empty and not create:
            raise BadInput(f"results store {self.name} holds no edgeopt results: nothing has been stored there yet "
                           "(bench and fleet bench write it; --store or $EDGEOPT_STORE names another)")
        with self._errors("cannot upgrade its schema"), self._writing() as conn:
            if not self.sqlite:  # on SQLite, _writing's BEGIN IMMEDIATE is the lock
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK})
            current = _revision(conn)
            if current is not None and not sa.inspect(conn).has_table(VERSION_TABLE):
                _move_version_table(conn, current)
            if current != HEAD:
                self._migrate(conn, current)

    def _migrate(self, conn, current) -> None:
        from alembic import command
        from alembic.config import Config
        from alembic.script import ScriptDirectory
        from alembic.util import CommandError
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        if current is not None and current not in {s.revision for s in ScriptDirectory.from_config(config).walk_revisions()}:
            raise BadInput(f"its schema revision {current!r} is newer than this edgeopt knows: upgrade edgeopt")
        config.attributes["connection"] = conn
        try:
            command.upgrade(config, "head")
        except CommandError as e:
            raise BadInput(_database_said(e)) from None

    def add(self, doc: dict, run_id: str | None = None, path: str | None = None) -> None:
        """One result as a row; `path` the file that holds this result alone (else doc["_path"])."""
        bundle, lat = doc.get("bundle") or {}, doc.get("latency") or {}
        now = datetime.datetime.now(datetime.timezone.utc)
        device = (doc.get("device") or {}).get("name", "?")
        row = {"created": parse_created(doc.get("created"), now), "run_id": run_id, "bundle": bundle.get("name"),
               "bundle_sha256": bundle.get("manifest_sha256"), "device": device,
               "status": doc.get("status", "failed"), "p50_ms": lat.get("p50_ms"), "p90_ms": lat.get("p90_ms"),
               "p99_ms": lat.get("p99_ms"), "peak_rss_mb": (doc.get("memory") or {}).get("peak_rss_mb"),
               "power_w": (doc.get("power") or {}).get("mean_w"), "top1": (doc.get("accuracy") or {}).get("top1"),
               "error": (doc.get("error") or {}).get("message"), "path": _absolute(path or doc.get("_path")),
               "document": {k: v for k, v in doc.items() if not k.startswith("_")}}
        with self._errors(f"cannot store the result of {device}"), self._writing() as conn:
            conn.execute(results_table.insert().values(**_finite(row)))

    def run_has(self, run_id: str, device: str) -> bool:
        """Whether the store holds an ok row of `device` in the run `run_id` (a failed try before it is no row of
        the result that replaced it)."""
        t = results_table.c
        query = sa.select(t.id).where(t.run_id == run_id, t.device == device, t.status == "ok").limit(1)
        with self._errors("cannot read the stored results"), self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def history(self, device: str | None = None, bundle: str | None = None, limit: int = 50,
                since: datetime.datetime | None = None) -> list:
        """Rows newest first (by when they were measured), without the documents; `created` as an ISO 8601
        string with its zone; `host`, the machine the agent ran on (a team's `local` is every laptop and CI runner);
        `profile`, the bundle's (None for a result that records none)."""
        t = results_table.c
        host = t.document[("device", "hostname")].as_string().label("host")
        # which bundle of that name: one name packaged for two profiles read as one series
        profile = t.document[("bundle", "profile", "name")].as_string().label("profile")
        # what the bundle was made into (results.bundle_variant): an fp32 bundle under an int8 name read as int8
        compression = t.document[("bundle", "compression")].label("compression")
        transforms = t.document[("bundle", "transforms")].label("transforms")
        query = (sa.select(*[c for c in t if c.name != "document"], host, profile, compression, transforms)
                 .order_by(self._instant(t.created).desc(), t.id.desc()))
        query = self._of(query, device, bundle, since)
        with self._errors("cannot read the history", rows=True), self.engine.connect() as conn:
            rows = [_typed(dict(r._mapping)) for r in conn.execute(query.limit(limit))]
            return [_without_parts(row) | {"created": row["created"].isoformat(), "variant": bundle_variant(
                {"bundle": {"compression": row["compression"], "transforms": row["transforms"]}})} for row in rows]

    def count(self, device: str | None = None, bundle: str | None = None,
              since: datetime.datetime | None = None) -> int:
        """How many rows `history` would give without a limit: "50 shown" of 1,781 was said nowhere."""
        query = self._of(sa.select(sa.func.count()).select_from(results_table), device, bundle, since)
        with self._errors("cannot read the history", rows=True), self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def dated_rows(self) -> list:
        """Every row's id, `created` (aware), bundle, profile, device, host, hardware ({field: value}), status,
        path and `said` (the document's own `created` text, None where it records none: such a row is dated at its
        adding), without the documents: what retention.forget decides on."""
        from .regression import HARDWARE, hardware
        t = results_table.c
        host = t.document[("device", "hostname")].label("host")   # as JSON: retention.series_key reads it as a
        profile = t.document[("bundle", "profile", "name")].label("profile")   # file's is read, text only
        machine = [t.document[("device", key)].label(key) for key, _ in HARDWARE]
        said = t.document[("created",)].as_string().label("said")   # the document's own time: none, none kept
        query = sa.select(t.id, t.created, t.bundle, t.device, t.status, t.path, host, profile, said, *machine)
        with self._errors("cannot read the stored results", rows=True), self.engine.connect() as conn:
            rows = [_typed(dict(r._mapping)) for r in conn.execute(query)]
        for row in rows:   # as regression.hardware reads a document's: text and whole numbers only
            row["hardware"] = hardware({"device": {key: row.pop(key) for key, _ in HARDWARE}})
        return rows

    def forget(self, ids: list) -> int:
        """Deletes these rows; how many were there."""
        ids, deleted = list(ids), 0
        with self._errors("cannot forget results"), self._writing() as conn:
            for start in range(0, len(ids), 500):   # SQLite takes a bounded number of parameters
                chunk = ids[start:start + 500]
                deleted += conn.execute(results_table.delete().where(results_table.c.id.in_(chunk))).rowcount
        return deleted

    def holds(self, doc: dict) -> bool:
        """Whether a row holds this very result (of its bundle, device and time, the whole document): a result added
        again (history --add of a folder twice, a latest file beside its history copy) is not a second row. Only
        the rows of its time are read: every document of the bundle on the device, each with its samples, was read
        again for each file of a folder added."""
        from .results import parse_time
        t = results_table.c
        device = (doc.get("device") or {}).get("name", "?")
        query = sa.select(t.document).where(t.bundle == (doc.get("bundle") or {}).get("name"), t.device == device)
        if parse_time(doc.get("created")) is None:   # stored at the time it was added: each --add added it again
            query = query.where(t.document[("created",)].as_string().is_(None))
        else:   # by the instant: an older writer's row keeps its time as other text
            created = parse_created(doc.get("created"), datetime.datetime.now(datetime.timezone.utc))
            query = query.where(self._instant(t.created) == self._instant(sa.literal(created, UtcDateTime())))
        own = json.loads(_json_dumps({k: v for k, v in doc.items() if not k.startswith("_")}))
        with self._errors("cannot read the stored results"), self.engine.connect() as conn:
            return any(row.document == own for row in conn.execute(query))

    def documents(self, ids: list) -> dict:
        """The stored result documents by row id."""
        query = sa.select(results_table.c.id, results_table.c.document).where(results_table.c.id.in_(list(ids)))
        with self._errors("cannot read the documents"), self.engine.connect() as conn:
            return {r.id: r.document for r in conn.execute(query)}

    def documents_at(self, paths: list) -> dict:
        """{path: the newest stored result document saved to that file}, for the paths the store has rows of;
        each document with `_path` (the file): `report --study` on a host where the files of another worker's
        trials are not. A relative path (a study records them as its worker gave them) is the stored absolute path
        that ends with it: the store keeps absolute paths, and `report --study` found none of a study run with the
        default --results-dir (a walkthrough)."""
        t = results_table.c
        paths = [str(p) for p in paths]
        tails = {p: tail_of(p) for p in paths if not os.path.isabs(p)}
        matches = [t.path.in_(paths)] + [t.path.endswith(tail, autoescape=True) for tail in tails.values()]
        query = sa.select(t.id, t.path, t.document).where(sa.or_(*matches)).order_by(self._instant(t.created), t.id)
        with self._errors("cannot read the stored results"), self.engine.connect() as conn:
            rows = conn.execute(query).all()
        found = {}
        for row in (r for r in rows if isinstance(r.document, dict)):   # the newest row wins
            for path in paths:
                if row.path == path or path in tails and row.path.endswith(tails[path]):
                    found[path] = row.document
        return {path: dict(doc, _path=path) for path, doc in found.items()}

    def _of(self, query, device: str | None, bundle: str | None, since: datetime.datetime | None = None):
        """`query` narrowed to the rows of a device and a bundle, and measured since a time, where named (history
        and its count)."""
        t = results_table.c
        if device:
            query = query.where(t.device == device)
        if bundle:
            query = query.where(t.bundle == bundle)
        if since is not None:
            query = query.where(self._instant(t.created) >= self._instant(sa.literal(since, UtcDateTime())))
        return query

    def _instant(self, created):
        """`created` as a point in time to order and compare by. SQLite compares the text, and an edgeopt from
        before migration 0002 writing to an upgraded store (it creates no schema, so nothing stops it) writes
        "2026-12-07T12:11:08+00:00", which sorts after "2026-12-07 12:11:19": history out of order and an older
        baseline chosen (an upgrade walkthrough). julianday() reads both, any zone converted to UTC."""
        return sa.func.julianday(created) if self.engine.dialect.name == "sqlite" else created

    def close(self):
        self.engine.dispose()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def last_good(self, bundle: str, device: str, before: str, hostname: str | None = None,
                  profile: str | None = None) -> dict | None:
        """The newest `ok` result of `bundle` on `device` created before `before` (an ISO time), as its
        document with `_path`, or None: the regression gate's baseline when CI keeps no files. hostname: the
        machine the candidate ran on; a team's store holds `local` results of every laptop and CI runner, and only
        this machine's (or one that records no host) is a baseline. profile: the candidate bundle's; a bundle of
        the same name for another profile (generic/ONNX Runtime vs raspberry-pi-5/LiteRT) is another bundle."""
        found = self.good_results(bundle, device, before, hostname, profile, limit=1)
        return found[0] if found else None

    def good_results(self, bundle: str, device: str, before: str, hostname: str | None = None,
                     profile: str | None = None, limit: int = 1, hardware: dict | None = None) -> list:
        """The newest `limit` results last_good would choose from, newest first: the baseline and the runs before
        it, from which the gate reads the model's spread between runs (regression.between_run_floor). hardware:
        {device field: value} of the text fields (cpu_model, arch) a result must match where it records them (the
        gate compares the CPU counts itself): 60 newer rows of other VM types hid a runner's own (a review)."""
        t = results_table.c
        when = parse_created(before, datetime.datetime.now(datetime.timezone.utc))
        query = sa.select(t.id, t.document, t.created, t.path).where(
            t.bundle == bundle, t.device == device, t.status == "ok",
            self._instant(t.created) < self._instant(sa.literal(when, UtcDateTime())))
        if hostname:
            host = t.document[("device", "hostname")].as_string()
            query = query.where(sa.or_(host == hostname, host.is_(None)))
        if profile:
            made_for = t.document[("bundle", "profile", "name")].as_string()
            query = query.where(sa.or_(made_for == profile, made_for.is_(None)))
        for key, value in (hardware or {}).items():
            recorded = t.document[("device", key)].as_string()
            query = query.where(sa.or_(recorded == value, recorded.is_(None)))
        query = query.order_by(self._instant(t.created).desc(), t.id.desc()).limit(limit)
        with self._errors(f"cannot read the last good result of {bundle}@{device}", rows=True), \
                self.engine.connect() as conn:
            rows = conn.execute(query).all()
            if rows and not isinstance(rows[0].document, dict):   # the baseline itself; an older run is left out
                raise BadInput(f"results store {self.name}: row {rows[0].id} ({bundle}@{device}) holds no JSON "
                               "object")
            return [self._good_document(row) for row in rows if isinstance(row.document, dict)]

    @staticmethod
    def _good_document(row) -> dict:
        doc = dict(row.document)
        # where it came from: the store's row, by when it was measured and its file (which may be gone or
        # elsewhere): "row 5" named an id that only history --json shows
        created = row.created.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        doc["_path"] = f"the store's result of {created}" + (f" ({row.path})" if row.path else "")
        return doc


def tail_of(path: str) -> str:
    """What the absolute path of the file a relative `path` names ends with, whatever folder it was given from
    (os.sep first): a study records its results' paths as its worker gave them, the store absolute ones."""
    return os.sep + _below_parents(path)


def _below_parents(path: str) -> str:
    """A relative path without its leading ".." and "." parts: what any absolute form of it ends with
    (`--results-dir ../shared` recorded "../shared/results/history/x.json")."""
    parts = pathlib.PurePath(os.path.normpath(path)).parts
    while parts and parts[0] in ("..", "."):
        parts = parts[1:]
    return os.path.join(*parts) if parts else path


def _absolute(path):
    """A result file's path as the store keeps it: absolute, so `history --json` opens it from any folder (it was
    relative to the folder bench ran in: a walkthrough)."""
    return os.path.abspath(path) if isinstance(path, str) and path else path


def _typed(row: dict) -> dict:
    """The row, its text and number columns checked: SQLite keeps whatever a hand put there (a status of bytes
    x'00' crashed the history table). A wrong one is a TypeError, which _errors(rows=True) says as such."""
    for name, value in row.items():
        column = results_table.c.get(name)
        if value is None or column is None:
            continue
        wanted = ((str,), "text") if isinstance(column.type, sa.String) else ((int, float), "a number") \
            if isinstance(column.type, sa.Float) else None
        if wanted and (not isinstance(value, wanted[0]) or isinstance(value, bool)):
            raise TypeError(f"{name} is {type(value).__name__}, not {wanted[1]}")
    return row


def _without_parts(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("compression", "transforms")}
