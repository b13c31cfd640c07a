"""Fixtures of the tenant-registry tests: a database per backend (SQLite file, or the run's throwaway
PostgreSQL database, ``pg_database`` of ``tests/conftest.py``), and services over it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sbt_core.models import Event
from sbt_core.runtime.contracts import PutEventsEntryResult
from sbt_core.tenants import TenantService, TenantStore
from sbt_core.tenants._store import metadata


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
