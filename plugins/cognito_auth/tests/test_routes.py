"""Every ``/users`` route through the core's ASGI app with ``cognito`` selected, against moto_server.

The control plane is the core's in-process harness (:func:`sbt_core.testing.start_control_plane`): config
validated from a ``[providers.auth]`` table, ``sbt_startup``, the admin user created at start-up, the JWT
authorizer on every route. Callers sign in through ``initiate_auth`` (USER_PASSWORD_AUTH) and send the
access token moto issued.

Scopes: moto's access tokens carry only ``aws.cognito.signin.user.admin``, so these route tests run with
``enforce_scopes = false`` (SBT's ``setAPIGWScopes: false``); the scope check with
``enforce_scopes = true`` is tested at the end of this module and in test_tokens.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sbt_cognito_auth import CognitoAuth

ADMIN = {"name": "admin", "email": "admin@example.com", "role": "SystemAdmin"}


@pytest.fixture
def auth_table(pool: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The ``[providers.auth]`` table ``sbt cognito bootstrap`` prints for ``pool``, secret from the env."""
    monkeypatch.setenv("TEST_COGNITO_MACHINE_SECRET", pool.machine_client_secret.get_secret_value())
    return {"type": "cognito", "region": pool.region, "user_pool_id": pool.user_pool_id,
            "user_client_id": pool.user_client_id, "machine_client_id": pool.machine_client_id,
            "machine_client_secret": {"env": "TEST_COGNITO_MACHINE_SECRET"}, "domain": pool.domain,
            "endpoint_url": pool.endpoint_url, "tenant_attribute": pool.tenant_attribute,
            "send_invitations": False, "enforce_scopes": False}


def _start(tmp_path: Path, auth_table: dict[str, Any], **auth_overrides: Any) -> Any:
    from sbt_core.testing import start_control_plane

    return start_control_plane(tmp_path, plugins={"cognito": CognitoAuth}, tenants=False,
                               config={"providers": {"auth": {**auth_table, **auth_overrides}}, "admin": ADMIN})


@pytest.fixture
def harness(tmp_path: Path, auth_table: dict[str, Any]) -> Iterator[Any]:
    h = _start(tmp_path, auth_table)
    yield h
    h.close()


@pytest.fixture
def client(harness: Any, login: Any) -> Any:
    """A TestClient carrying the admin's access token (the admin was created at start-up)."""
    return harness.client(token=login("admin")["AccessToken"])


def test_admin_user_is_created_at_startup(harness: Any, client: Any, tmp_path: Path,
                                          auth_table: dict[str, Any]) -> None:
    assert harness.control_plane.admin_user.user_name == "admin"
    body = client.get("/users/admin").json()["data"]
    assert body["userName"] == "admin" and body["userRole"] == "SystemAdmin"
    assert body["email"] == "admin@example.com" and body["enabled"] is True
    assert set(body) == {"userName", "userRole", "email", "status", "enabled", "created", "modified"}
    # A second start-up with the admin already there is fine (idempotent).
    second = _start(tmp_path / "again", auth_table)
    try:
        assert second.control_plane.admin_user.user_name == "admin"
    finally:
        second.close()


def test_create_get_and_conflict(client: Any) -> None:
    created = client.post("/users", json={"userName": "alice", "userRole": "TenantAdmin",
                                          "email": "alice@example.com"})
    assert created.status_code == 201 and created.json() == {"data": {"userName": "alice"}}
    got = client.get("/users/alice")
    assert got.status_code == 200
    assert got.json()["data"]["userRole"] == "TenantAdmin" and got.json()["data"]["status"] == "FORCE_CHANGE_PASSWORD"
    again = client.post("/users", json={"userName": "alice", "userRole": "x", "email": "a2@example.com"})
    assert again.status_code == 409 and "alice" in again.json()["message"]


def test_create_needs_every_field(client: Any) -> None:
    assert client.post("/users", json={"userName": "bob", "email": "bob@example.com"}).status_code == 400


def test_list_with_paging(client: Any) -> None:
    for i in range(4):
        assert client.post("/users", json={"userName": f"user{i}", "userRole": "r",
                                           "email": f"user{i}@example.com"}).status_code == 201
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    pages = 0
    while True:
        response = client.get("/users", params=params)
        assert response.status_code == 200
        body = response.json()
        assert len(body["data"]) <= 2
        seen += [u["userName"] for u in body["data"]]
        pages += 1
        if "next_token" not in body:
            break
        params = {"limit": 2, "next_token": body["next_token"]}
    assert sorted(seen) == ["admin", "user0", "user1", "user2", "user3"] and pages >= 3
    assert client.get("/users", params={"limit": 61}).status_code == 400
    assert client.get("/users", params={"next_token": "garbage"}).status_code == 400


def test_update_one_then_both_attributes(client: Any) -> None:
    client.post("/users", json={"userName": "carol", "userRole": "Reader", "email": "carol@example.com"})
    response = client.put("/users/carol", json={"userRole": "Writer"})
    assert response.status_code == 200 and response.json() == {"message": "User updated"}
    assert client.get("/users/carol").json()["data"]["userRole"] == "Writer"
    client.put("/users/carol", json={"email": "c@example.com"})
    data = client.get("/users/carol").json()["data"]
    assert (data["userRole"], data["email"]) == ("Writer", "c@example.com")
    client.put("/users/carol", json={"userRole": "Admin", "email": "carol2@example.com"})
    data = client.get("/users/carol").json()["data"]
    assert (data["userRole"], data["email"]) == ("Admin", "carol2@example.com")
    assert client.put("/users/ghost", json={"userRole": "x"}).status_code == 404
    assert client.put("/users/carol", json={}).status_code == 400


def test_disable_refuses_login_then_enable_restores_it(client: Any, login: Any) -> None:
    client.post("/users", json={"userName": "dave", "userRole": "r", "email": "dave@example.com"})
    login("dave")  # sets a permanent password and signs in
    response = client.put("/users/dave/disable")
    assert response.status_code == 200 and response.json() == {"message": "User disabled"}
    assert client.get("/users/dave").json()["data"]["enabled"] is False
    with pytest.raises(ClientError) as info:
        login("dave", set_password=False)
    assert info.value.response["Error"]["Code"] == "NotAuthorizedException"
    response = client.put("/users/dave/enable")
    assert response.status_code == 200 and response.json() == {"message": "User enabled"}
    assert client.get("/users/dave").json()["data"]["enabled"] is True
    assert login("dave", set_password=False)["AccessToken"]


def test_delete_and_404s(client: Any) -> None:
    client.post("/users", json={"userName": "erin", "userRole": "r", "email": "erin@example.com"})
    response = client.delete("/users/erin")
    assert response.status_code == 200 and response.json() == {"message": "User deleted"}
    missing = client.get("/users/erin")
    assert missing.status_code == 404 and missing.json() == {"message": "User erin not found."}
    for method, path in [("DELETE", "/users/erin"), ("PUT", "/users/erin/disable"), ("PUT", "/users/erin/enable")]:
        assert client.request(method, path).status_code == 404, (method, path)


def test_tokens_the_authorizer_refuses(harness: Any, login: Any, cognito: Any, pool: Any) -> None:
    tokens = login("admin")
    assert harness.client(authenticated=False).get("/users").status_code == 401
    assert harness.client(token=tokens["IdToken"]).get("/users").status_code == 401  # id token, not access
    head, payload, sig = tokens["AccessToken"].split(".")
    tampered = f"{head}.{payload[:-4]}AAAA.{sig}"
    assert harness.client(token=tampered).get("/users").status_code == 401
    other = cognito.create_user_pool_client(UserPoolId=pool.user_pool_id, ClientName="not-ours",
                                            ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"])["UserPoolClient"]
    wrong_client = login("admin", client_id=other["ClientId"], set_password=False)["AccessToken"]
    response = harness.client(token=wrong_client).get("/users")
    assert response.status_code == 401 and "audience" in response.json()["message"]


def test_scopes_enforced_refuse_password_tokens(tmp_path: Path, auth_table: dict[str, Any], login: Any) -> None:
    """``enforce_scopes = true``: a password-login access token (no API scopes) is verified, then 403."""
    harness = _start(tmp_path, auth_table, enforce_scopes=True)
    try:
        response = harness.client(token=login("admin")["AccessToken"]).get("/users")
        assert response.status_code == 403 and "user/user_read" in response.json()["message"]
    finally:
        harness.close()
