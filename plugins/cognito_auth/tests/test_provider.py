"""The provider's hooks called directly against moto_server (the routes are in test_routes.py)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sbt_cognito_auth import CognitoAuth

from sbt_core import ProviderContext
from sbt_core.errors import BadRequestError, ConflictError, NotFoundError, ProviderError
from sbt_core.models import AdminUser, CreateUserRequest, UpdateUserRequest


def _create(provider: CognitoAuth, name: str, role: str = "TenantAdmin") -> None:
    provider.auth_create_user(CreateUserRequest(user_name=name, user_role=role, email=f"{name}@example.com"))


def test_auth_settings_mirror_cognito_auth(provider: CognitoAuth, pool: Any) -> None:
    s = provider.auth_settings()
    issuer = f"https://cognito-idp.us-east-1.amazonaws.com/{pool.user_pool_id}"
    assert s.jwt_issuer == issuer
    assert s.jwt_audience == [pool.user_client_id, pool.machine_client_id]
    assert s.well_known_endpoint_url == issuer + "/.well-known/openid-configuration"
    assert s.jwks_url == f"{pool.endpoint_url}/{pool.user_pool_id}/.well-known/jwks.json"
    assert s.token_endpoint == "https://sbt-test.auth.us-east-1.amazoncognito.com/oauth2/token"
    assert s.token_use == "access" and s.algorithms == ["RS256"]
    assert s.machine_client_secret is not None and s.machine_client_secret.get_secret_value()
    assert (s.fetch_user_scope, s.create_user_scope) == ("user/user_read", "user/user_write")
    assert (s.fetch_tenant_registration_scope, s.update_tenant_registration_scope) == (
        "tenant/tenant_read", "tenant/tenant_write")


def test_create_user_writes_email_verified_and_role(provider: CognitoAuth, cognito: Any, pool: Any) -> None:
    user = provider.auth_create_user(CreateUserRequest(user_name="alice", user_role="TenantAdmin",
                                                       email="alice@example.com"))
    assert (user.user_name, user.email, user.user_role, user.enabled) == ("alice", "alice@example.com",
                                                                          "TenantAdmin", True)
    assert user.status == "FORCE_CHANGE_PASSWORD"
    assert user.created is not None and user.created.tzinfo == UTC
    attrs = {a["Name"]: a["Value"] for a in
             cognito.admin_get_user(UserPoolId=pool.user_pool_id, Username="alice")["UserAttributes"]}
    assert attrs["email_verified"] == "true" and attrs["custom:userRole"] == "TenantAdmin"


def test_create_existing_user_is_a_conflict(provider: CognitoAuth) -> None:
    _create(provider, "alice")
    with pytest.raises(ConflictError, match="alice"):
        _create(provider, "alice")


def test_admin_user_is_idempotent(provider: CognitoAuth) -> None:
    first = provider.auth_create_admin_user(AdminUser(name="admin", email="admin@example.com", role="SystemAdmin"))
    again = provider.auth_create_admin_user(AdminUser(name="admin", email="other@example.com", role="Other"))
    assert first is not None and again is not None
    assert (again.email, again.user_role) == ("admin@example.com", "SystemAdmin")  # left as it was


def test_list_pages_with_limit_and_next_token(provider: CognitoAuth) -> None:
    for i in range(5):
        _create(provider, f"user{i}")
    names, token, sizes = [], None, []
    while True:
        page = provider.auth_fetch_all_users(2, token)
        sizes.append(len(page.items))
        names += [u.user_name for u in page.items]
        token = page.next_token
        if token is None:
            break
    assert sorted(names) == [f"user{i}" for i in range(5)]
    assert sizes[:2] == [2, 2] and sum(sizes) == 5


@pytest.mark.parametrize("limit", [0, 61])
def test_list_limit_is_1_to_60(provider: CognitoAuth, limit: int) -> None:
    with pytest.raises(BadRequestError, match="between 1 and 60"):
        provider.auth_fetch_all_users(limit, None)


def test_list_with_a_bad_token_is_a_bad_request(provider: CognitoAuth) -> None:
    with pytest.raises(BadRequestError):
        provider.auth_fetch_all_users(10, "not-a-token")


def test_update_one_attribute_then_both(provider: CognitoAuth) -> None:
    _create(provider, "bob", role="Reader")
    user = provider.auth_update_user("bob", UpdateUserRequest(user_role="Writer"))
    assert (user.user_role, user.email) == ("Writer", "bob@example.com")
    user = provider.auth_update_user("bob", UpdateUserRequest(email="robert@example.com"))
    assert (user.user_role, user.email) == ("Writer", "robert@example.com")
    user = provider.auth_update_user("bob", UpdateUserRequest(user_role="Admin", email="b@example.com"))
    assert (user.user_role, user.email) == ("Admin", "b@example.com")


def test_disable_enable_and_login(provider: CognitoAuth, login: Any) -> None:
    _create(provider, "carol")
    assert login("carol")["AccessToken"]
    provider.auth_disable_user("carol")
    assert provider.auth_fetch_user("carol").enabled is False
    with pytest.raises(ClientError, match="disabled"):
        login("carol", set_password=False)
    provider.auth_enable_user("carol")
    assert provider.auth_fetch_user("carol").enabled is True
    assert login("carol", set_password=False)["AccessToken"]


def test_delete_then_404(provider: CognitoAuth) -> None:
    _create(provider, "dave")
    provider.auth_delete_user("dave")
    with pytest.raises(NotFoundError, match=r"^User dave not found\.$"):
        provider.auth_fetch_user("dave")


@pytest.mark.parametrize("call", ["auth_delete_user", "auth_disable_user", "auth_enable_user", "auth_fetch_user"])
def test_missing_user_is_404(provider: CognitoAuth, call: str) -> None:
    with pytest.raises(NotFoundError) as info:
        getattr(provider, call)("ghost")
    assert info.value.status == 404


def test_update_missing_user_is_404(provider: CognitoAuth) -> None:
    with pytest.raises(NotFoundError):
        provider.auth_update_user("ghost", UpdateUserRequest(user_role="x"))


def test_startup_checks_the_pool_declares_the_attributes(provider: CognitoAuth, pool: Any,
                                                         settings_for: Any, tmp_path: Any) -> None:
    provider.sbt_startup()  # bootstrap declared custom:userRole and custom:tenantId
    wrong = CognitoAuth(settings_for(pool, role_attribute="custom:role"), ProviderContext("cognito", "auth", tmp_path))
    with pytest.raises(ProviderError, match="custom:role"):
        wrong.sbt_startup()


def test_unknown_pool_is_a_502_with_the_aws_code(pool: Any, settings_for: Any, tmp_path: Any) -> None:
    gone = CognitoAuth(settings_for(pool, user_pool_id="us-east-1_doesnotexist"),
                       ProviderContext("cognito", "auth", tmp_path))
    with pytest.raises(ProviderError, match="ResourceNotFoundException") as info:
        gone.auth_fetch_user("x")
    assert info.value.status == 502
    assert pool.machine_client_secret.get_secret_value() not in info.value.message
