"""A control plane per backend: the embedded default, and the tenant registry on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from sbt_core.tenants._store import metadata

from ._api import Api, start


@pytest.fixture(params=["embedded", "postgresql"])
def backend(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    if request.param == "embedded":
        return "embedded", None
    url: str = request.getfixturevalue("pg_database")
    engine = sa.create_engine(url)
    metadata.drop_all(engine)  # each test starts from empty tables
    engine.dispose()
    return "postgresql", url


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def api(state_dir: Path, backend: tuple[str, str | None]) -> Iterator[Api]:
    harness = start(state_dir, *backend)
    try:
        yield Api(harness)
    finally:
        harness.close()
