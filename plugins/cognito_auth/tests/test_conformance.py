"""The cognito provider against sbt's conformance suite, on moto_server with a pool made by the same code
as ``sbt cognito bootstrap``; the route checks sign the admin in (moto's tokens carry no API scopes, so
``enforce_scopes = false``, as in test_routes.py)."""

from collections.abc import Callable
from typing import Any

import attrs
import pytest
from sbt_cognito_auth import CognitoAuth

from sbt_core.testing.conformance import ConformanceTarget, TestAuthConformance  # noqa: F401 - the suite

ADMIN = {"name": "admin", "email": "admin@example.com", "role": "SystemAdmin"}


@pytest.fixture
def sbt_conformance_auth(pool: Any, settings_for: Callable[..., Any],
                         login: Callable[..., dict[str, Any]]) -> ConformanceTarget:
    settings = {k: v for k, v in attrs.asdict(settings_for(pool), recurse=False).items() if v is not None}
    settings["machine_client_secret"] = settings["machine_client_secret"].get_secret_value()
    return ConformanceTarget("auth", "cognito", CognitoAuth, settings, config={"admin": ADMIN},
                             token=lambda harness: str(login("admin")["AccessToken"]))
