"""pytest fixtures of sbt, loaded through the ``pytest11`` entry point ``sbt`` (as datasette ships its own).

- ``sbt_control_plane``: a factory — ``sbt_control_plane(plugins={...}, config={...})`` starts an
  in-process control plane with only the built-ins and the named plugins (see
  :func:`sbt_core.testing.start_control_plane`) under the test's ``tmp_path``, and returns its
  :class:`~sbt_core.testing.Harness` (``.client(*scopes)``, ``.token(*scopes)``, ``.events``,
  ``.settle()``, ``.tick()``…). Every control plane it started is stopped after the test.
- ``sbt_events``: the builders of SBT events (:mod:`sbt_core.testing.events`), e.g.
  ``sbt_events.ingest_usage("t1", "api_calls", 3)``.
- The conformance kit (:mod:`sbt_core.testing.conformance`): the option ``--sbt-conformance INTERFACE=TYPE``,
  the fixtures ``sbt_conformance_metering`` / ``_billing`` / ``_auth`` and the summary of the checks.
- ``pg_database``: the URL of a throwaway PostgreSQL database ``sbt_test_<random>`` on 127.0.0.1:5432
  for the test session (dropped at its end); skips when PostgreSQL is not running.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from psycopg import sql

from . import events as _events
from .conformance._pytest import (  # noqa: F401 - pytest finds hooks and fixtures by name in this module
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_runtest_makereport,
    pytest_terminal_summary,
    sbt_conformance_auth,
    sbt_conformance_billing,
    sbt_conformance_metering,
    sbt_conformance_planes,
)
from .harness import Harness, start_control_plane


@pytest.fixture
def sbt_control_plane(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    """Factory of started in-process control planes, each in its own state directory under ``tmp_path``."""
    started: list[Harness] = []

    def factory(*, plugins: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
                **kwargs: Any) -> Harness:
        state_dir = kwargs.pop("state_dir", None) or tmp_path / f"sbt-{len(started)}"
        harness = start_control_plane(state_dir, plugins=plugins, config=config, **kwargs)
        started.append(harness)
        return harness

    yield factory
    for harness in reversed(started):
        harness.close()


@pytest.fixture
def sbt_events() -> ModuleType:
    """The SBT event builders (:mod:`sbt_core.testing.events`)."""
    return _events


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
