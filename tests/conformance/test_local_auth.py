"""The built-in ``local`` auth provider against sbt's conformance suite."""

import pytest

from sbt_core.auth_local import LocalAuth
from sbt_core.testing.conformance import ConformanceTarget, TestAuthConformance  # noqa: F401 - the suite


@pytest.fixture
def sbt_conformance_auth() -> ConformanceTarget:
    return ConformanceTarget("auth", "local", LocalAuth)
