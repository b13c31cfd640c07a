"""Error mapping and throttling retries, with botocore's Stubber (no server; retries wait 0 s)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from sbt_cognito_auth import CognitoAuth, CognitoSettings
from sbt_cognito_auth.client import make_client

from sbt_core import ProviderContext
from sbt_core.errors import ConflictError, NotFoundError, ProviderError
from sbt_core.models import AdminUser, Secret

POOL = "us-east-1_AbCdEf123"
SECRET = "machine-secret-value"
USER = {"Username": "u1", "UserAttributes": [{"Name": "email", "Value": "u1@example.com"},
                                             {"Name": "custom:userRole", "Value": "R"}],
        "Enabled": True, "UserStatus": "CONFIRMED"}


@pytest.fixture
def stubbed(tmp_path: Path) -> tuple[CognitoAuth, Stubber]:
    client = make_client("us-east-1", "http://127.0.0.1:9")  # never contacted: the Stubber answers
    settings = CognitoSettings(region="us-east-1", user_pool_id=POOL, user_client_id="userclient",
                               machine_client_id="machineclient", machine_client_secret=Secret(SECRET),
                               domain="d", max_attempts=3, retry_initial_seconds=0, retry_max_seconds=0)
    stubber = Stubber(client)
    stubber.activate()
    return CognitoAuth(settings, ProviderContext("cognito", "auth", tmp_path), client=client), stubber


def _params(**extra: Any) -> dict[str, Any]:
    return {"UserPoolId": POOL, **extra}


@pytest.mark.parametrize("code", ["TooManyRequestsException", "ThrottlingException"])
def test_throttling_is_retried_then_succeeds(stubbed: tuple[CognitoAuth, Stubber], code: str) -> None:
    provider, stubber = stubbed
    stubber.add_client_error("admin_get_user", service_error_code=code, http_status_code=400)
    stubber.add_client_error("admin_get_user", service_error_code=code, http_status_code=400)
    stubber.add_response("admin_get_user", USER, _params(Username="u1"))
    assert provider.auth_fetch_user("u1").user_role == "R"
    stubber.assert_no_pending_responses()


def test_throttling_after_the_last_attempt_is_a_502(stubbed: tuple[CognitoAuth, Stubber]) -> None:
    provider, stubber = stubbed
    for _ in range(3):  # max_attempts = 3
        stubber.add_client_error("admin_get_user", service_error_code="TooManyRequestsException",
                                 service_message="Too many requests", http_status_code=400)
    with pytest.raises(ProviderError, match="TooManyRequestsException") as info:
        provider.auth_fetch_user("u1")
    assert info.value.status == 502 and "after retries" in info.value.message
    stubber.assert_no_pending_responses()


def test_other_errors_are_not_retried_and_name_the_code(stubbed: tuple[CognitoAuth, Stubber]) -> None:
    provider, stubber = stubbed
    stubber.add_client_error("admin_delete_user", service_error_code="NotAuthorizedException",
                             service_message="Access denied", http_status_code=400)
    with pytest.raises(ProviderError) as info:
        provider.auth_delete_user("u1")
    assert info.value.status == 502
    assert "AdminDeleteUser" in info.value.message and "NotAuthorizedException" in info.value.message
    assert SECRET not in info.value.message
    stubber.assert_no_pending_responses()


def test_user_not_found_and_exists(stubbed: tuple[CognitoAuth, Stubber]) -> None:
    provider, stubber = stubbed
    stubber.add_client_error("admin_disable_user", service_error_code="UserNotFoundException",
                             service_message="User does not exist.")
    with pytest.raises(NotFoundError, match="User u9 not found."):
        provider.auth_disable_user("u9")
    stubber.add_client_error("admin_create_user", service_error_code="UsernameExistsException")
    stubber.add_response("admin_get_user", USER, _params(Username="admin"))
    # The admin user is idempotent: UsernameExists -> the existing user.
    assert provider.auth_create_admin_user(AdminUser()).user_name == "u1"  # type: ignore[union-attr]
    stubber.add_client_error("admin_create_user", service_error_code="AliasExistsException")
    with pytest.raises(ConflictError):
        provider.auth_create_admin_user(AdminUser())


def test_unreachable_server_is_a_502(tmp_path: Path) -> None:
    settings = CognitoSettings(region="us-east-1", user_pool_id=POOL, user_client_id="userclient",
                               endpoint_url="http://127.0.0.1:9", max_attempts=1)
    provider = CognitoAuth(settings, ProviderContext("cognito", "auth", tmp_path))
    with pytest.raises(ProviderError, match="EndpointConnectionError") as info:
        provider.auth_fetch_user("u1")
    assert info.value.status == 502
