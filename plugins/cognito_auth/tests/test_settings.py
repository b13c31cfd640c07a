"""Settings validation, including the loopback-only ``endpoint_url`` (moto's signing key is public)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sbt_cognito_auth import CognitoAuth, CognitoSettings, is_loopback_url

from sbt_core.config import load_config
from sbt_core.errors import ConfigError
from sbt_core.models import Secret
from sbt_core.plugins import discover

BASE: dict[str, Any] = dict(region="us-east-1", user_pool_id="us-east-1_AbCdEf123", user_client_id="userclient123",
                            machine_client_id="machineclient1", machine_client_secret=Secret("s3cr3t"),
                            domain="my-saas")


@pytest.mark.parametrize("url", ["http://127.0.0.1:5000", "http://127.8.9.10", "http://localhost:5000",
                                 "http://LOCALHOST", "http://[::1]:5000", "https://localhost.",
                                 "http://[::ffff:127.0.0.1]:5000"])
def test_loopback_endpoints_are_accepted(url: str) -> None:
    assert is_loopback_url(url)
    assert CognitoSettings(**BASE, endpoint_url=url).endpoint_url == url


@pytest.mark.parametrize("url", ["http://10.0.0.5:5000", "http://0.0.0.0:5000", "http://moto.internal:5000",
                                 "http://localhost.evil.example", "http://127.0.0.1.nip.io", "http://[::2]",
                                 "http://127.0.0.1@evil.example"])
def test_non_loopback_endpoint_is_refused_unless_allowed(url: str) -> None:
    assert not is_loopback_url(url)
    with pytest.raises(ValueError, match="not on this machine"):
        CognitoSettings(**BASE, endpoint_url=url)
    assert CognitoSettings(**BASE, endpoint_url=url, allow_non_loopback_endpoint=True).endpoint_url == url


def test_derived_urls_without_endpoint() -> None:
    s = CognitoSettings(**BASE)
    assert s.issuer == "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEf123"
    assert s.jwks_url == s.issuer + "/.well-known/jwks.json"
    assert s.resolved_token_endpoint == "https://my-saas.auth.us-east-1.amazoncognito.com/oauth2/token"
    custom = CognitoSettings(**{**BASE, "token_endpoint": "https://auth.example.com/oauth2/token"})
    assert custom.resolved_token_endpoint == "https://auth.example.com/oauth2/token"


@pytest.mark.parametrize("change, message", [
    ({"region": "mars"}, "region"),
    ({"user_pool_id": "nope"}, "user pool id"),
    ({"user_pool_id": "eu-west-1_AbC"}, "not a pool of region"),
    ({"machine_client_secret": None}, "together"),
    ({"domain": None}, "domain"),
    ({"domain": "Not_A_Prefix"}, "domain prefix"),
    ({"endpoint_url": "ftp://127.0.0.1"}, "http"),
    ({"max_attempts": 0}, "max_attempts"),
])
def test_invalid_settings(change: dict[str, Any], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        CognitoSettings(**{**BASE, **change})


def test_config_table_validates_into_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_COGNITO_SECRET", "from-env")
    path = tmp_path / "sbt.toml"
    path.write_text("""
[providers.auth]
type = "cognito"
region = "us-east-1"
user_pool_id = "us-east-1_AbCdEf123"
user_client_id = "userclient123"
machine_client_id = "machineclient1"
machine_client_secret = { env = "TEST_COGNITO_SECRET" }
endpoint_url = "http://127.0.0.1:5000"
enforce_scopes = false
""")
    catalog = discover(entry_points=False, builtins=True, extra={"cognito": CognitoAuth})
    config = load_config(catalog, path)
    settings = config.providers["auth"].settings
    assert isinstance(settings, CognitoSettings)
    assert settings.machine_client_secret == Secret("from-env", reference="env:TEST_COGNITO_SECRET")
    assert settings.enforce_scopes is False


def test_config_refuses_a_remote_endpoint_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "sbt.toml"
    path.write_text("""
[providers.auth]
type = "cognito"
region = "us-east-1"
user_pool_id = "us-east-1_AbCdEf123"
user_client_id = "userclient123"
endpoint_url = "http://192.0.2.10:5000"
""")
    catalog = discover(entry_points=False, builtins=True, extra={"cognito": CognitoAuth})
    with pytest.raises(ConfigError) as info:
        load_config(catalog, path)
    assert any(p.startswith("providers.auth") and "not on this machine" in p for p in info.value.problems)
