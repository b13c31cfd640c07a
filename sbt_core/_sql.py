"""The SQL engine recipe every sbt store shares (the tenant registry, the bus's dead letters): SQLAlchemy 2
over SQLite (embedded, a file under the state directory) or PostgreSQL (psycopg 3).

On SQLite the file is in WAL mode and every write transaction begins IMMEDIATE, so two ``sbt serve``
processes on one file queue for the write lock instead of failing mid-transaction; a read-only
transaction (:func:`read_only`) begins deferred and never waits for another reader.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

from .models import Secret

__all__ = ["check_database_url", "create_engine", "database_url", "read_only", "unreachable"]

_BACKENDS = ("sqlite", "postgresql")

#: Execution option marking a read-only transaction (see :func:`read_only`).
_READ_ONLY = "sbt_read_only"


@retry(retry=retry_if_exception(lambda exc: "locked" in str(exc)), stop=stop_after_attempt(60),
       wait=wait_random_exponential(multiplier=0.01, max=0.25), reraise=True)
def _use_wal(cursor: Any) -> None:
    """Put the file in WAL mode (readers never block the writer; the mode is kept in the file). SQLite
    answers "database is locked" at once, ignoring busy_timeout, when another connection opens the file
    while it switches, so processes starting together retry here, briefly and boundedly."""
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        cursor.execute("PRAGMA journal_mode=WAL")


def create_engine(url: URL, *, sync_every_commit: bool = True) -> Engine:
    """An engine for ``url``: PostgreSQL with pre-ping (a restarted server's stale connections are
    replaced), or SQLite as the module docstring says (the file's directory is created).

    :param sync_every_commit: SQLite only. True (``synchronous=FULL``): a commit is on disk when it
        returns, whatever happens next. False (``synchronous=NORMAL``): a commit survives the process
        being killed but may be lost with the machine's power; the WAL is synced at checkpoints. For a
        store written once per delivered event, where FULL costs an fsync per event (~10 ms here)."""
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    # SQLAlchemy's documented pysqlite recipe: let SQLAlchemy emit BEGIN itself, as IMMEDIATE, so a
    # read-then-write transaction holds the write lock from its first read (two processes on one file
    # then queue on busy_timeout instead of failing with "database is locked" mid-transaction).
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA busy_timeout=30000")
            _use_wal(cursor)
            if not sync_every_commit:
                cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Reads take a plain (deferred) BEGIN so that readers never queue behind each other.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(_READ_ONLY) else "BEGIN IMMEDIATE")

    return engine


def database_url(configured: Any, sqlite_file: Path) -> URL:
    """The URL a store opens: ``configured`` (a :class:`~sbt_core.models.Secret` or a string, as a store's
    ``database_url`` setting holds it; a plain ``postgresql://`` gets the psycopg 3 driver sbt ships, not
    SQLAlchemy's default psycopg2), or SQLite in ``sqlite_file`` when None."""
    if configured is None:
        return URL.create("sqlite", database=str(sqlite_file))
    text = configured.get_secret_value() if hasattr(configured, "get_secret_value") else str(configured)
    url = sa.make_url(text)
    return url.set(drivername="postgresql+psycopg") if url.drivername == "postgresql" else url


@contextmanager
def read_only(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction on ``engine`` (on SQLite a deferred one, which takes no write lock)."""
    with engine.connect() as conn:
        conn = conn.execution_options(**{_READ_ONLY: True})
        with conn.begin():
            yield conn


def check_database_url(value: Any, path: str, problems: list[str]) -> Secret | None:
    """A config's ``database_url`` (a string or a resolved secret reference) checked as one sbt can open
    (SQLite, or PostgreSQL through psycopg 3); None with a problem under ``path`` when it is not. The value
    is never echoed: it may hold a password."""
    if isinstance(value, str):
        value = Secret(value)
    if not isinstance(value, Secret):
        problems.append(f"{path}: expected a URL string or a {{ env = ... }} / {{ file = ... }} reference")
        return None
    try:
        url = make_url(value.get_secret_value())
    except ArgumentError:
        problems.append(f"{path}: not a database URL (e.g. postgresql+psycopg://user@host:5432/db)")
        return None
    if url.get_backend_name() not in _BACKENDS:
        problems.append(f"{path}: unsupported database {url.get_backend_name()!r}; use one of {', '.join(_BACKENDS)}")
        return None
    if url.get_backend_name() == "postgresql" and "+" in url.drivername and url.get_driver_name() != "psycopg":
        problems.append(f"{path}: sbt talks to PostgreSQL through psycopg 3; write postgresql+psycopg:// "
                        f"(not {url.drivername}://)")
        return None
    return value


def unreachable(engine: Engine) -> str | None:
    """None when the database answers ``SELECT 1``, else why not (for ``/health``; no password shown)."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure makes the process unhealthy
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return f"{engine.url.render_as_string(hide_password=True)}: {reason[0] if reason else type(exc).__name__}"
    return None
