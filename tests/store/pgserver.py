"""A real PostgreSQL server for the store tests: a throwaway cluster in a temp dir (../shared/TESTRIG.md).

Debian's postgresql puts its programs under /usr/lib/postgresql/<version>/bin. The cluster runs as the
`postgres` user (a server refuses to run as root) through runuser, listens on a unix socket in its own
directory and on 127.0.0.1 at a free port; TCP logins need a password (scram), so the tests see real
authentication failures.
"""
import dataclasses
import glob
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid

import pytest
import sqlalchemy as sa

USER, PASSWORD = "edgeopt", "s3cr@t/pw:x%?#"  # characters a URL must escape: the store has to cope with them


def bindir() -> str:
    """The newest PostgreSQL bin directory with initdb and pg_ctl, or ''."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[-3]))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb and shutil.which("pg_ctl") else ""


def available() -> str:
    """Empty when a PostgreSQL server can be started here, else the reason it cannot."""
    if not bindir():
        return "PostgreSQL server binaries not found (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run the server as"
        if not shutil.which("runuser"):
            return "running as root and runuser is missing"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'edgeopt[postgres]')"
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Server:
    root: pathlib.Path
    port: int

    @property
    def sockdir(self) -> str:
        return str(self.root / "sock")

    def url(self, database: str = "postgres", password: str | None = PASSWORD, user: str = USER,
            driver: str = "postgresql+psycopg", host: str = "127.0.0.1") -> sa.engine.URL:
        return sa.engine.URL.create(driver, user, password, host, self.port, database)

    def admin(self):
        """A superuser engine over the unix socket (trusted: no password)."""
        return sa.create_engine(sa.engine.URL.create("postgresql+psycopg", "postgres", None, None, None, "postgres",
                                                     {"host": self.sockdir, "port": str(self.port)}),
                                isolation_level="AUTOCOMMIT")

    def create_database(self, name: str) -> sa.engine.URL:
        engine = self.admin()
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                conn.exec_driver_sql(f'CREATE DATABASE "{name}" OWNER {USER}')
        finally:
            engine.dispose()
        return self.url(name)

    def stop(self):
        _as_postgres([f"{bindir()}/pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop"],
                     check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def _as_postgres(argv, check=True):
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=120)


def start() -> Server:
    """initdb + pg_ctl start in a fresh temp dir; the caller stops it. Raises CalledProcessError with the log."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="edgeopt-pg-"))  # not pytest's tmp: that one is root-only
    (root / "sock").mkdir()
    if os.geteuid() == 0:
        uid, gid = pwd.getpwnam("postgres")[2:4]
        for path in (root, root / "sock"):
            os.chown(path, uid, gid)
    server = Server(root, free_port())
    bins = bindir()
    try:
        _as_postgres([f"{bins}/initdb", "-D", str(root / "data"), "-U", "postgres", "--auth-local=trust",
                      "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"])
        # Room for 80 concurrent first opens; durability is not what these tests are about.
        opts = (f"-k {server.sockdir} -p {server.port} -c listen_addresses=127.0.0.1 -c max_connections=250 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        _as_postgres([f"{bins}/pg_ctl", "-D", str(root / "data"), "-l", str(root / "server.log"), "-o", opts,
                      "-w", "-t", "60", "start"])
        engine = server.admin()
        try:
            with engine.connect() as conn:
                quoted = "'" + PASSWORD.replace("'", "''") + "'"  # utility statements take no bound parameters
                conn.exec_driver_sql(f"CREATE ROLE {USER} LOGIN PASSWORD {quoted}".replace("%", "%%"))
        finally:
            engine.dispose()
    except BaseException:
        server.stop()
        raise
    return server


# Fixtures: a test module imports them (`from pgserver import pg, pg_url`); a conftest.py here would shadow
# tests/conftest.py, which test modules import by that name.
@pytest.fixture(scope="session")
def pg():
    """A running PostgreSQL server for the session; tests are skipped with the reason where none can start."""
    reason = available()
    if reason:
        pytest.skip(reason)
    try:
        server = start()
    except subprocess.CalledProcessError as e:
        pytest.skip(f"PostgreSQL did not start: {(e.stderr or e.stdout or '').strip()[-300:]}")
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg):
    """A fresh, empty database on the session's server."""
    return pg.create_database("t_" + uuid.uuid4().hex[:12])
