"""Fixtures: ``sql`` providers on SQLite (a file under the test's directory) and on the run's PostgreSQL
database (``sbt_postgres_url``), with a pinned clock; ``new_provider`` starts each with empty tables."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sbt_sql_metering import SqlMetering, SqlMeteringSettings
from sbt_sql_metering._schema import metadata

from sbt_core import ProviderContext
from sbt_core.models import Secret
from sbt_core.testing.metering_oracle import NOW_MS

BACKENDS = ["sqlite", "postgresql"]


def empty(provider: SqlMetering) -> None:
    """Delete every row of the provider's tables (faster than a new schema for each example)."""
    with provider.store.write() as conn:
        for table in reversed(metadata.sorted_tables):
            if table.name != "sbt_metering_schema_versions":
                conn.execute(sa.delete(table))


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """None (the SQLite default under the state directory) or the run's PostgreSQL database."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("sbt_postgres_url")
    return url


@pytest.fixture
def new_provider(backend_url: str | None, tmp_path: Path) -> Iterator[Callable[..., SqlMetering]]:
    """``new_provider(**settings)``: a started provider on empty tables whose clock reads NOW."""
    made: list[SqlMetering] = []

    def make(**settings: Any) -> SqlMetering:
        if backend_url is not None:
            settings.setdefault("database_url", Secret(backend_url))
        provider = SqlMetering(SqlMeteringSettings(**settings), ProviderContext("sql", "metering", tmp_path))
        provider.clock = lambda: NOW_MS
        provider.sbt_startup()
        if not made:
            empty(provider)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.sbt_shutdown()


@pytest.fixture
def provider(new_provider: Callable[..., SqlMetering]) -> SqlMetering:
    return new_provider()


@pytest.fixture
def emptied(provider: SqlMetering) -> Callable[[], SqlMetering]:
    """``emptied()``: the test's provider with its tables emptied again (for each hypothesis example)."""
    def again() -> SqlMetering:
        empty(provider)
        return provider
    return again
