"""Fixtures of the tenant-registry tests: a database per backend (SQLite file, or a throwaway PostgreSQL
database created for this run on 127.0.0.1:5432 and dropped after), and services over it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql

from sbt_core.models import Event
from sbt_core.runtime.seams import PutEventsEntryResult
from sbt_core.tenants import TenantService, TenantStore
from sbt_core.tenants._store import metadata

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


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty registry database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tenants.sqlite3'}"
    url: str = request.getfixturevalue("pg_database")
    engine = sa.create_engine(url)
    metadata.drop_all(engine)  # each test starts from empty tables
    engine.dispose()
    return url


class Recorder:
    """A ``put_events`` that keeps what it is given (and can be told to fail)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.fail = False

    def __call__(self, events: Sequence[Event]) -> list[PutEventsEntryResult]:
        if self.fail:
            raise RuntimeError("bus down")
        self.events.extend(events)
        return [PutEventsEntryResult(event_id=e.id) for e in events]

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def service(database_url: str, recorder: Recorder) -> Iterator[TenantService]:
    svc = TenantService(TenantStore(database_url), recorder)
    svc.start()
    yield svc
    svc.close()


@pytest.fixture
def plane(tmp_path: Path, database_url: str) -> Iterator[Any]:
    """The real ControlPlane around the recording providers, its registry on ``database_url``."""
    from ._plane import start_plane

    harness = start_plane(tmp_path / "state", database_url)
    yield harness
    harness.close()


@pytest.fixture
def api(plane: Any) -> Iterator[Any]:
    """A TestClient of the control plane's ASGI app carrying a token with the tenant scopes."""
    from sbt_core.models import scopes

    with plane.client(scopes.TENANT_READ, scopes.TENANT_WRITE) as client:
        yield client
