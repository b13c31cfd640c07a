"""``sbt cognito token``: a user's access token through InitiateAuth (against moto_server), and the machine
client's through OAuth client_credentials (moto has no /oauth2/token, so that request is checked against
an httpx MockTransport that answers as Cognito's token endpoint documents)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from sbt_cognito_auth import CognitoAuth, CognitoSettings
from sbt_cognito_auth.tokens import client_credentials_token
from typer.testing import CliRunner

from sbt_core.cli import CliState, build_app
from sbt_core.errors import UnauthorizedError
from sbt_core.models import CreateUserRequest, Secret
from sbt_core.runtime.authorizer import Authorizer

runner = CliRunner()


@pytest.fixture
def config_path(pool: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TEST_COGNITO_MACHINE_SECRET", pool.machine_client_secret.get_secret_value())
    path = tmp_path / "sbt.toml"
    path.write_text(f"""
[providers.auth]
type = "cognito"
region = "{pool.region}"
user_pool_id = "{pool.user_pool_id}"
user_client_id = "{pool.user_client_id}"
machine_client_id = "{pool.machine_client_id}"
machine_client_secret = {{ env = "TEST_COGNITO_MACHINE_SECRET" }}
endpoint_url = "{pool.endpoint_url}"
enforce_scopes = false
""")
    return path


def _token(config_path: Path, *args: str, stdin: str | None = None) -> Any:
    app = build_app(CliState(extra={"cognito": CognitoAuth}, entry_points=False))
    return runner.invoke(app, ["cognito", "token", "--config", str(config_path), *args], input=stdin)


def test_user_token_is_accepted_by_the_authorizer(config_path: Path, provider: CognitoAuth, login: Any) -> None:
    provider.auth_create_user(CreateUserRequest(user_name="alice", user_role="r", email="alice@example.com"))
    login("alice")  # sets the permanent password
    result = _token(config_path, "--user", "alice", "--password-stdin", stdin="Passw0rd!long\n")
    assert result.exit_code == 0, result.output
    claims = Authorizer(provider.auth_settings()).verify(result.stdout.strip())
    assert claims["username"] == "alice" and claims["token_use"] == "access"


def test_wrong_password_and_pending_challenge_are_one_line_errors(config_path: Path, cognito: Any, pool: Any,
                                                                  login: Any) -> None:
    cognito.admin_create_user(UserPoolId=pool.user_pool_id, Username="bob", TemporaryPassword="Temp0rary!pw",
                              MessageAction="SUPPRESS", UserAttributes=[{"Name": "email", "Value": "b@example.com"}])
    pending = _token(config_path, "--user", "bob", "--password-stdin", stdin="Temp0rary!pw\n")
    assert pending.exit_code == 1 and pending.stdout == ""
    assert pending.stderr.startswith("error: Cognito asks for NEW_PASSWORD_REQUIRED")
    login("bob")
    wrong = _token(config_path, "--user", "bob", "--password-stdin", stdin="not-the-password\n")
    assert wrong.exit_code == 1 and wrong.stderr.startswith("error: sign-in refused (NotAuthorizedException)")
    assert "not-the-password" not in wrong.stderr


def test_machine_token_against_moto_fails_cleanly(config_path: Path, pool: Any) -> None:
    result = _token(config_path)  # moto has no /oauth2/token: answered 500
    assert result.exit_code == 1 and result.stdout == ""
    assert "without an access token" in result.stderr
    assert pool.machine_client_secret.get_secret_value() not in result.stderr


SETTINGS = CognitoSettings(region="us-east-1", user_pool_id="us-east-1_AbC123", user_client_id="userclient",
                           machine_client_id="machineclient", machine_client_secret=Secret("s3cret-value"),
                           domain="my-saas")


def test_client_credentials_request_shape() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"access_token": "tok", "token_type": "Bearer", "expires_in": 3600})

    http = httpx.Client(transport=httpx.MockTransport(handler))
    assert client_credentials_token(SETTINGS, ["user/user_write", "tenant/tenant_write"], http=http) == "tok"
    request = seen[0]
    assert str(request.url) == "https://my-saas.auth.us-east-1.amazoncognito.com/oauth2/token"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"machineclient:s3cret-value").decode()
    assert parse_qs(request.content.decode()) == {"grant_type": ["client_credentials"],
                                                  "scope": ["user/user_write tenant/tenant_write"]}


def test_client_credentials_refused_names_the_oauth_error_only() -> None:
    http = httpx.Client(transport=httpx.MockTransport(
        lambda request: httpx.Response(400, json={"error": "invalid_client"})))
    with pytest.raises(UnauthorizedError, match="invalid_client") as info:
        client_credentials_token(SETTINGS, http=http)
    assert "s3cret-value" not in info.value.message
