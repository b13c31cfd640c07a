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
from sqlalchemy.engine import URL, Connection, Engine
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

__all__ = ["create_engine", "read_only", "unreachable"]

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


def create_engine(url: URL) -> Engine:
    """An engine for ``url``: PostgreSQL with pre-ping (a restarted server's stale connections are
    replaced), or SQLite as the module docstring says (the file's directory is created)."""
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
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Reads take a plain (deferred) BEGIN so that readers never queue behind each other.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(_READ_ONLY) else "BEGIN IMMEDIATE")

    return engine


@contextmanager
def read_only(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction on ``engine`` (on SQLite a deferred one, which takes no write lock)."""
    with engine.connect() as conn:
        conn = conn.execution_options(**{_READ_ONLY: True})
        with conn.begin():
            yield conn


def unreachable(engine: Engine) -> str | None:
    """None when the database answers ``SELECT 1``, else why not (for ``/health``; no password shown)."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure makes the process unhealthy
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return f"{engine.url.render_as_string(hide_password=True)}: {reason[0] if reason else type(exc).__name__}"
    return None
