"""The store URL reader is total: any string gives a usable store or one line (BadInput, exit 2), never a
traceback, never the password. URLs are built from parts that mix the valid (the session's real PostgreSQL
server, its real password, SQLite paths in a scratch dir) with the broken."""
import contextlib
import os
import tempfile
import urllib.parse

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

import pgserver
from edgeopt.errors import BadInput
from edgeopt.store import Store
from pgserver import pg  # noqa: F401  (fixture)

SECRET = st.text("ABCDEFGHJKLMNPQRSTUVWXYZ", min_size=6, max_size=10).map(lambda s: "Zq9" + s)  # in no other part
ODD = st.sampled_from(["", "@", "/", ":", "?", "#", "%", "%40", " ", "\n", "\x00", "'", '"', "\\", "é", "[", "]"])
SAFE = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-.", max_size=8)  # lowercase: cannot contain SECRET


def _cat(a, b):
    return st.builds(lambda x, y: x + y, a, b)


SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))


@contextlib.contextmanager
def _scratch_cwd():
    """Relative SQLite paths land in a scratch dir, never in the checkout; any PostgreSQL host name is reached at
    127.0.0.1 (libpq's PGHOSTADDR), so a generated name never goes to a name server."""
    here, hostaddr = os.getcwd(), os.environ.get("PGHOSTADDR")
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)
        os.environ["PGHOSTADDR"] = "127.0.0.1"
        try:
            yield scratch
        finally:
            os.chdir(here)
            if hostaddr is None:
                del os.environ["PGHOSTADDR"]
            else:
                os.environ["PGHOSTADDR"] = hostaddr


def _check(text: str, secrets: list) -> None:
    try:
        store = Store(text)
    except BadInput as e:
        message = str(e)
        event("refused: " + message.split(": ")[1][:40])
        assert message and "\n" not in message and "\r" not in message, repr(message)
        for secret in secrets:
            assert secret not in message and urllib.parse.quote(secret) not in message, message
        return
    event(f"opened {store.url.get_backend_name()}")
    with store:  # a store that opened must be usable
        store.add({"created": "2026-12-01T00:00:00+00:00", "status": "ok", "device": {"name": "d"}})
        assert store.history(limit=1)[0]["device"] == "d"


PREFIX = st.sampled_from(["", "sqlite:///", "sqlite://", "postgresql://", "postgresql+psycopg://", "postgres://",
                          "postgresql://edgeopt:", "mysql://"])
# No '/' after the prefix: an SQLite path stays one name inside the scratch dir, never an absolute path or '..'.
# Control characters come from ODD below; here they would make nearly every string a refusal for that alone.
NO_SLASH = st.text(st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="/"), max_size=60)


@SETTINGS
@given(_cat(PREFIX, NO_SLASH))
def test_any_text(text):
    with _scratch_cwd():
        _check(text, [])


@pytest.fixture(scope="module")
def server(pg):  # noqa: F811
    pg.create_database("hyp")
    return pg


def _broken(server, secret):
    """For each part of a PostgreSQL URL, things a person could write instead of the right value."""
    return {
        "scheme": ["postgresql+psycopg2", "postgresql+asyncpg", "mysql", "SQLITE", "", "post gres", "sqlite"],
        "user": ["postgres", "nobody", "", "a/b", "a:b", "é", "a b", "x@y"],
        "password": [secret, "", "@" + secret, secret + "/:?#", "%" + secret, secret + "%zz", pgserver.PASSWORD],
        "host": ["localhost", "", "[::1]", "[::1", "127.0.0.1:", "0.0.0.0", "[", "%00"],
        "port": [str(pgserver.free_port()), "", "abc", "99999", "-1", "0"],
        "database": ["postgres", "missing_db", "", "/", "a/b", "x?y", "%00", "é"],
        "query": ["?sslmode=disable", "?foo=bar", "?timeout=x", f"?password={secret}", "?connect_timeout=abc", "?",
                  "#frag", "?connect_timeout=1&sslmode=require", "?host=/nonexistent"],
    }


@SETTINGS
@given(data=st.data())
def test_postgresql_urls(server, data):
    """The real server's URL with 0-3 parts broken: opens when none is, else one line without the password."""
    secret = data.draw(SECRET)
    parts = {"scheme": "postgresql", "user": pgserver.USER, "password": pgserver.PASSWORD, "host": "127.0.0.1",
             "port": str(server.port), "database": "hyp", "query": ""}
    parts["scheme"] = data.draw(st.sampled_from(["postgresql", "postgresql+psycopg", "postgres"]))
    broken = _broken(server, secret)
    for part in data.draw(st.lists(st.sampled_from(sorted(broken)), max_size=3, unique=True)):
        parts[part] = data.draw(st.sampled_from(broken[part]))
    quote = data.draw(st.booleans()) or parts["password"] == pgserver.PASSWORD  # the real one needs quoting
    password = urllib.parse.quote(parts["password"], safe="") if quote else parts["password"]
    userinfo = parts["user"] + (":" + password if password else "")
    netloc = (userinfo + "@" if userinfo else "") + parts["host"] + (":" + parts["port"] if parts["port"] else "")
    text = f"{parts['scheme']}://{netloc}/{parts['database']}{parts['query']}"
    secrets = [secret, pgserver.PASSWORD]
    if parts["scheme"] == "sqlite" and "/" in parts["user"]:
        secrets = []  # sqlite:///… is a path to the end: no user, no password, whatever it spells
    with _scratch_cwd():
        _check(text, secrets)


SEGMENTS = st.lists((SAFE | ODD | st.sampled_from([".", "x.db", "results@pi.db", ":memory:", "file:x.db"]))
                    .filter(lambda seg: seg != ".."), max_size=4).map("/".join)


@SETTINGS
@given(st.sampled_from(["sqlite", "sqlite+pysqlite", "sqlite+aiosqlite", "SQLite"]),
       st.sampled_from(["///./", "///{scratch}/", "//./", "/./", ":./", "///:memory:", "//"]), SEGMENTS,
       st.sampled_from(["", "?timeout=1", "?mode=ro", "#x"]))
def test_sqlite_urls(scheme, start, path, query):
    """Every path stays inside the scratch dir: relative ('./…', no '..') or absolute under it."""
    with _scratch_cwd() as scratch:
        _check(f"{scheme}:{start.format(scratch=scratch)}{path}{query}", [])
