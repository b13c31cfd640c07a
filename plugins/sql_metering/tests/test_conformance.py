"""The sql provider against sbt's conformance suite (the same checks as ``pytest --sbt-conformance
metering=sql``), on SQLite (its default file in the state directory) and on PostgreSQL (its own schema of
the run's database, so the other tests' emptying of tables never meets the suite's shared control plane)."""

import psycopg
import pytest
from sbt_sql_metering import SqlMetering

from sbt_core.testing.conformance import ConformanceTarget, TestMeteringConformance  # noqa: F401 - the suite


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def sbt_conformance_metering(request: pytest.FixtureRequest) -> ConformanceTarget:
    if request.param == "sqlite":
        return ConformanceTarget("metering", "sql", SqlMetering)
    url: str = request.getfixturevalue("sbt_postgres_url")
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS sbt_conformance")
    return ConformanceTarget("metering", "sql", SqlMetering,
                             settings={"database_url": f"{url}?options=-csearch_path%3Dsbt_conformance"})
