"""The real control plane (``sbt_core.testing`` harness) with the recording billing and metering
providers, its tenant registry on a given database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sbt_core.testing import Harness, start_control_plane
from sbt_core.testing.providers import RecordingBilling, RecordingMetering

PLUGINS = {"recording-billing": RecordingBilling, "recording-metering": RecordingMetering}


def plane_config(database_url: str, *, recorders: bool = True) -> dict[str, Any]:
    """The ``sbt.toml`` (as data) over the harness defaults: the recording providers and the registry
    on ``database_url``."""
    table: dict[str, Any] = {"tenants": {"database_url": database_url}}
    if recorders:
        table["providers"] = {"billing": {"type": "recording-billing"}, "metering": {"type": "recording-metering"}}
    return table


def start_plane(state_dir: Path, database_url: str, *, recorders: bool = True) -> Harness:
    """The real ControlPlane around the recording providers (registered without installing them)."""
    return start_control_plane(state_dir, plugins=PLUGINS, config=plane_config(database_url, recorders=recorders))
