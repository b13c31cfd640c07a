"""Fixtures: a ``memory`` provider constructed directly, with a pinned clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sbt_memory_metering import MemoryMetering, MemoryMeteringSettings

from sbt_core import ProviderContext

#: The tests' "now": a few days after the Paris spring DST change (2026-03-29), so the 35-day horizon
#: spans it.
NOW = datetime(2026, 4, 2, 9, 30, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def make_provider(tmp_path: Path, **settings: Any) -> MemoryMetering:
    provider = MemoryMetering(MemoryMeteringSettings(**settings), ProviderContext("memory", "metering", tmp_path))
    provider.engine.clock = lambda: NOW_MS
    return provider


@pytest.fixture
def new_provider(tmp_path: Path) -> Callable[..., MemoryMetering]:
    """``new_provider(**settings)``: a fresh provider whose clock reads :data:`NOW`."""
    return lambda **settings: make_provider(tmp_path, **settings)


@pytest.fixture
def provider(new_provider: Callable[..., MemoryMetering]) -> MemoryMetering:
    return new_provider()
