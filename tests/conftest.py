"""Fixtures shared by the core's tests: the run's throwaway PostgreSQL database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"


def _pg_available() -> bool:
    try:
        with psycopg.connect(PG_ADMIN):
            return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database ``sbt_test_<random>`` for this test run (URL), dropped at the end."""
    if not _pg_available():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    name = f"sbt_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
