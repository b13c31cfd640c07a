"""A throwaway PostgreSQL database per test session, for stores that run on PostgreSQL (the tenant registry,
a provider's ``database_url``): the ``sbt_postgres_url`` fixture of sbt's pytest plugin.

It connects to ``SBT_TEST_POSTGRES`` (a libpq connection string; default: the local server on
127.0.0.1:5432 as ``postgres``), creates ``sbt_test_<random>``, yields its SQLAlchemy URL and drops it at
the end. Without a reachable server the tests that ask for it are skipped, with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

__all__ = ["ADMIN_DSN", "postgres_available", "sbt_postgres_url"]

#: Where the test databases are created (override with ``SBT_TEST_POSTGRES``).
ADMIN_DSN = os.environ.get("SBT_TEST_POSTGRES",
                           "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5")


def postgres_available(dsn: str = ADMIN_DSN) -> bool:
    """Whether a PostgreSQL server answers at ``dsn``."""
    import psycopg

    try:
        with psycopg.connect(dsn):
            return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def sbt_postgres_url() -> Iterator[str]:
    """The SQLAlchemy URL (``postgresql+psycopg://…``) of a database made for this test session."""
    import psycopg
    from psycopg import sql

    if not postgres_available():
        pytest.skip(f"PostgreSQL is not reachable ({ADMIN_DSN!r}; set SBT_TEST_POSTGRES)")
    name = f"sbt_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        info = conn.info
        host, port, user = info.host, info.port, info.user
    try:
        yield f"postgresql+psycopg://{user}@{host}:{port}/{name}"
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
