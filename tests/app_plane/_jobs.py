"""Helpers of the application-plane tests: a control plane with jobs, and waiting for them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sbt_core.app_plane import AppPlane
from sbt_core.testing import Harness, start_control_plane

#: A hang guard for waiting on jobs, never a timing assertion.
WAIT = 30.0


def start_with_jobs(state_dir: Path, jobs: list[dict[str, Any]], *, tenants: bool = True,
                    plugins: dict[str, Any] | None = None, **config: Any) -> Harness:
    """The in-process control plane (local auth, the tenant registry unless ``tenants`` is False) with
    ``jobs`` as its ``[[jobs]]``, ``config`` as its other sections and ``plugins`` registered."""
    return start_control_plane(state_dir, config={"jobs": jobs, **config}, tenants=tenants, plugins=plugins)


def app_plane(harness: Harness) -> AppPlane:
    return next(c for c in harness.control_plane.components if isinstance(c, AppPlane))


def settle(harness: Harness) -> None:
    """Every event delivered, every job finished, and every outcome event delivered."""
    plane = app_plane(harness)
    for _ in range(3):
        harness.settle()
        assert plane.join(WAIT)
    harness.settle()
