"""Fixtures shared by the core's tests: the run's throwaway PostgreSQL database, a JetStream stream of a test's own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def pg_database(sbt_postgres_url: str) -> str:
    """A PostgreSQL database ``sbt_test_<random>`` for this test run (URL), dropped at the end (the
    ``sbt_postgres_url`` fixture of sbt's pytest plugin, under the name the core's tests use)."""
    return sbt_postgres_url


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
            for stream in (name, f"KV_{name}_HANDLING"):  # and the transport's marks bucket, if it made one
                try:
                    await nc.jetstream().delete_stream(stream)
                except nats.js.errors.NotFoundError:
                    pass
        finally:
            await nc.close()

    asyncio.run(delete())
