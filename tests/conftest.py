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


NATS_URL = "nats://127.0.0.1:4222"


def _nats_available() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def nats_stream() -> Iterator[dict[str, str]]:
    """A JetStream stream of its own for one test on the machine's nats-server (:4222): the NatsTransport
    keyword arguments ``url``, ``stream`` and ``subject_prefix``; the stream is deleted afterwards."""
    if not _nats_available():
        pytest.skip("NATS is not running on 127.0.0.1:4222")
    tag = uuid.uuid4().hex[:10]
    yield {"url": NATS_URL, "stream": f"SBT_TEST_{tag}", "subject_prefix": f"sbt_test.{tag}"}
    _delete_stream(f"SBT_TEST_{tag}")


def _delete_stream(name: str) -> None:
    import asyncio

    import nats
    import nats.js.errors

    async def delete() -> None:
        nc = await nats.connect(NATS_URL)
        try:
            await nc.jetstream().delete_stream(name)
        except nats.js.errors.NotFoundError:
            pass
        finally:
            await nc.close()

    asyncio.run(delete())
