"""The memory provider against sbt's conformance suite (the same checks as
``pytest --sbt-conformance metering=memory``), built with its default settings."""

import pytest
from sbt_memory_metering import MemoryMetering

from sbt_core.testing.conformance import ConformanceTarget, TestMeteringConformance  # noqa: F401 - the suite


@pytest.fixture
def sbt_conformance_metering() -> ConformanceTarget:
    return ConformanceTarget("metering", "memory", MemoryMetering)
