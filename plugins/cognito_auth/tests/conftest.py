"""Fixtures: a real ``moto_server`` on 127.0.0.1 (a free port), a pool created through the bootstrap code
path, and the provider pointed at it.

Nothing here reaches the internet: AWS credentials, region and config files are dummies so boto3 never
looks at the machine's profile or the instance metadata service, and every client is given the local
``endpoint_url``.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sbt_cognito_auth import CognitoAuth, CognitoSettings
from sbt_cognito_auth.bootstrap import BootstrapResult, bootstrap_pool
from sbt_cognito_auth.client import make_client

from sbt_core import ProviderContext
from sbt_core.testing.processes import background_server, free_port

REGION = "us-east-1"
PASSWORD = "Passw0rd!long"

_DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION, "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(scope="session", autouse=True)
def aws_env() -> Iterator[None]:
    """Dummy AWS credentials and region for the whole session (boto3 never reads real ones)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("AWS_PROFILE", raising=False)
        for key, value in _DUMMY_ENV.items():
            mp.setenv(key, value)
        yield


@pytest.fixture(scope="session")
def moto_endpoint(aws_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a ``moto_server`` started for this session and stopped after it."""
    port = free_port()
    exe = shutil.which("moto_server")
    cmd = [exe] if exe else [sys.executable, "-m", "moto.server"]
    endpoint = f"http://127.0.0.1:{port}"
    # Ready once it answers its own API.
    with background_server([*cmd, "-H", "127.0.0.1", "-p", str(port)], ready=f"{endpoint}/moto-api/",
                           log_path=tmp_path_factory.mktemp("moto") / "moto_server.log",
                           env={**os.environ, **_DUMMY_ENV}, name="moto_server", timeout=30):
        yield endpoint


@pytest.fixture
def cognito(moto_endpoint: str) -> Any:
    """A boto3 ``cognito-idp`` client on the moto server (for test set-up and logins)."""
    return make_client(REGION, moto_endpoint)


@pytest.fixture
def pool(moto_endpoint: str, cognito: Any) -> BootstrapResult:
    """A fresh moto state and a pool created by the same code as ``sbt cognito bootstrap``."""
    httpx.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    return bootstrap_pool(cognito, REGION, pool_name="sbt-test", domain="sbt-test", tenant_attribute=True,
                          endpoint_url=moto_endpoint)


@pytest.fixture
def settings_for() -> Callable[..., CognitoSettings]:
    """``settings_for(pool, **overrides)``: provider settings for ``pool`` as the printed config block says
    (invitations suppressed; ``enforce_scopes=false`` because moto's access tokens carry no API scopes)."""

    def make(pool: BootstrapResult, **overrides: Any) -> CognitoSettings:
        values: dict[str, Any] = dict(
            region=pool.region, user_pool_id=pool.user_pool_id, user_client_id=pool.user_client_id,
            machine_client_id=pool.machine_client_id, machine_client_secret=pool.machine_client_secret,
            domain=pool.domain, endpoint_url=pool.endpoint_url, tenant_attribute=pool.tenant_attribute,
            send_invitations=False, enforce_scopes=False)
        values.update(overrides)
        return CognitoSettings(**values)

    return make


@pytest.fixture
def provider(pool: BootstrapResult, settings_for: Callable[..., CognitoSettings], tmp_path: Path) -> CognitoAuth:
    """The provider on the fresh pool, called directly (no runtime)."""
    return CognitoAuth(settings_for(pool), ProviderContext("cognito", "auth", tmp_path))


@pytest.fixture
def login(cognito: Any, pool: BootstrapResult) -> Callable[..., dict[str, Any]]:
    """``login(user_name, client_id=None, password=PASSWORD)``: set a permanent password once asked, then
    USER_PASSWORD_AUTH through ``initiate_auth``; returns the AuthenticationResult (AccessToken, IdToken...)."""

    def do(user_name: str, client_id: str | None = None, password: str = PASSWORD,
           set_password: bool = True) -> dict[str, Any]:
        if set_password:
            # CONFIRMED with a permanent password: skips the NEW_PASSWORD_REQUIRED challenge.
            cognito.admin_set_user_password(UserPoolId=pool.user_pool_id, Username=user_name, Password=password,
                                            Permanent=True)
        result: dict[str, Any] = cognito.initiate_auth(
            ClientId=client_id or pool.user_client_id, AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": user_name, "PASSWORD": password})["AuthenticationResult"]
        return result

    return do
