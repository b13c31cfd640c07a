"""The cognito provider against sbt's conformance suite, on moto_server with a pool made by the same code
as ``sbt cognito bootstrap``."""

from collections.abc import Callable
from typing import Any

import attrs
import pytest
from sbt_cognito_auth import CognitoAuth

from sbt_core.testing.conformance import ConformanceTarget, TestAuthConformance  # noqa: F401 - the suite


@pytest.fixture
def sbt_conformance_auth(pool: Any, settings_for: Callable[..., Any]) -> ConformanceTarget:
    settings = {k: v for k, v in attrs.asdict(settings_for(pool), recurse=False).items() if v is not None}
    if "machine_client_secret" in settings:
        settings["machine_client_secret"] = settings["machine_client_secret"].get_secret_value()
    return ConformanceTarget("auth", "cognito", CognitoAuth, settings)
