"""Fixtures shared by the core's tests: the run's throwaway PostgreSQL database."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def pg_database(sbt_postgres_url: str) -> str:
    """A PostgreSQL database ``sbt_test_<random>`` for this test run (URL), dropped at the end (the
    ``sbt_postgres_url`` fixture of sbt's pytest plugin, under the name the core's tests use)."""
    return sbt_postgres_url
