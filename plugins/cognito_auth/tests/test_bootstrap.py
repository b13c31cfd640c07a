"""``sbt cognito bootstrap`` against moto_server: what it creates, and the config block it prints (stdout
is only TOML with the secret as a reference; the secret goes to stderr or a 0600 file)."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
from sbt_cognito_auth import CognitoAuth, CognitoSettings
from typer.testing import CliRunner

from sbt_core.cli import CliState, build_app
from sbt_core.config import load_config
from sbt_core.plugins import build_providers, discover

runner = CliRunner()


def _bootstrap(*args: str) -> Any:
    app = build_app(CliState(extra={"cognito": CognitoAuth}, entry_points=False))
    return runner.invoke(app, ["cognito", "bootstrap", *args])


@pytest.fixture
def fresh(moto_endpoint: str) -> str:
    httpx.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    return moto_endpoint


def test_pool_has_attributes_scopes_and_clients(pool: Any, cognito: Any) -> None:
    described = cognito.describe_user_pool(UserPoolId=pool.user_pool_id)["UserPool"]
    names = {a["Name"] for a in described["SchemaAttributes"]}
    assert {"custom:userRole", "custom:tenantId", "email"} <= names
    servers = {s["Identifier"]: sorted(x["ScopeName"] for x in s["Scopes"]) for s in
               cognito.list_resource_servers(UserPoolId=pool.user_pool_id, MaxResults=50)["ResourceServers"]}
    assert servers == {"user": ["user_read", "user_write"], "tenant": ["tenant_read", "tenant_write"],
                       "meter": ["meter_read", "meter_write"], "usage": ["usage_read", "usage_write"],
                       "event": ["event_read", "event_write"]}
    user = cognito.describe_user_pool_client(UserPoolId=pool.user_pool_id,
                                             ClientId=pool.user_client_id)["UserPoolClient"]
    assert "ClientSecret" not in user
    assert {"ALLOW_USER_PASSWORD_AUTH", "ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"} <= set(
        user["ExplicitAuthFlows"])
    machine = cognito.describe_user_pool_client(UserPoolId=pool.user_pool_id,
                                                ClientId=pool.machine_client_id)["UserPoolClient"]
    assert machine["ClientSecret"] == pool.machine_client_secret.get_secret_value()
    assert machine["AllowedOAuthFlows"] == ["client_credentials"]
    assert sorted(machine["AllowedOAuthScopes"]) == sorted(
        ["user/user_write", "tenant/tenant_write", "meter/meter_write", "usage/usage_write", "event/event_write"])
    assert cognito.describe_user_pool_domain(Domain="sbt-test")["DomainDescription"]["UserPoolId"] \
        == pool.user_pool_id


def test_cli_prints_a_config_block_that_loads_and_starts(fresh: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    result = _bootstrap("--region", "us-east-1", "--endpoint-url", fresh, "--pool-name", "cli-pool",
                        "--tenant-attribute")
    assert result.exit_code == 0, result.output
    block = tomllib.loads(result.stdout)["providers"]["auth"]
    assert block["machine_client_secret"] == {"env": "SBT_COGNITO_MACHINE_CLIENT_SECRET"}
    assert block["endpoint_url"] == fresh and block["enforce_scopes"] is False
    assert block["tenant_attribute"] == "custom:tenantId"
    # The secret: only on stderr, on a marked export line.
    export = next(line for line in result.stderr.splitlines() if line.startswith("export "))
    secret = export.split("=", 1)[1].strip("'")
    assert "SECRET" in result.stderr and secret and secret not in result.stdout
    # The printed block is a working config once the variable is set.
    monkeypatch.setenv("SBT_COGNITO_MACHINE_CLIENT_SECRET", secret)
    path = tmp_path / "sbt.toml"
    path.write_text(result.stdout)
    catalog = discover(entry_points=False, extra={"cognito": CognitoAuth})
    config = load_config(catalog, path)
    settings = config.providers["auth"].settings
    assert isinstance(settings, CognitoSettings)
    assert settings.machine_client_secret is not None and settings.machine_client_secret.get_secret_value() == secret
    providers = build_providers(catalog, config, state_dir=tmp_path)
    providers.startup()
    assert providers.auth is not None and providers.auth.fetch_all_users().items == []


def test_cli_secret_file_is_0600_and_referenced(fresh: str, tmp_path: Path) -> None:
    secret_file = tmp_path / "cognito.secret"
    result = _bootstrap("--region", "us-east-1", "--endpoint-url", fresh, "--domain", "my-prefix",
                        "--secret-file", str(secret_file))
    assert result.exit_code == 0, result.output
    block = tomllib.loads(result.stdout)["providers"]["auth"]
    assert block["machine_client_secret"] == {"file": str(secret_file.resolve())}
    assert block["domain"] == "my-prefix"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = secret_file.read_text().strip()
    assert secret and secret not in result.stdout and secret not in result.stderr
    again = _bootstrap("--region", "us-east-1", "--endpoint-url", fresh, "--secret-file", str(secret_file))
    assert again.exit_code == 1 and "exists" in again.stderr


def test_cli_refuses_a_remote_endpoint(fresh: str) -> None:
    result = _bootstrap("--region", "us-east-1", "--endpoint-url", "http://192.0.2.1:5000")
    assert result.exit_code == 1
    assert "not on this machine" in result.stderr and result.stdout == ""


def test_cli_reports_a_cognito_failure_in_one_line(fresh: str) -> None:
    result = _bootstrap("--region", "us-east-1", "--endpoint-url", fresh.replace(fresh.rsplit(":", 1)[1], "9"))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: Cognito CreateUserPool failed") and result.stdout == ""
