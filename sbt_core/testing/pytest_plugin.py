"""pytest fixtures of sbt, loaded through the ``pytest11`` entry point ``sbt`` (as datasette ships its own).

- ``sbt_control_plane``: a factory — ``sbt_control_plane(plugins={...}, config={...})`` starts an
  in-process control plane with only the built-ins and the named plugins (see
  :func:`sbt_core.testing.start_control_plane`) under the test's ``tmp_path``, and returns its
  :class:`~sbt_core.testing.Harness` (``.client(*scopes)``, ``.token(*scopes)``, ``.events``,
  ``.settle()``, ``.tick()``…). Every control plane it started is stopped after the test.
- ``sbt_events``: the builders of SBT events (:mod:`sbt_core.testing.events`), e.g.
  ``sbt_events.ingest_usage("t1", "api_calls", 3)``.
- ``sbt_postgres_url``: a throwaway PostgreSQL database for the session (:mod:`sbt_core.testing.postgres`).
- The conformance kit (:mod:`sbt_core.testing.conformance`): the option ``--sbt-conformance INTERFACE=TYPE``,
  the fixtures ``sbt_conformance_metering`` / ``_billing`` / ``_auth`` and the summary of the checks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

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
from .postgres import sbt_postgres_url

__all__ = ["sbt_control_plane", "sbt_events", "sbt_postgres_url"]


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
