"""Tokens issued by moto_server through ``initiate_auth`` against the core's JWT authorizer, configured from
this provider's ``auth_settings()`` (JWKS fetched from moto over HTTP on 127.0.0.1).

Forged tokens (expired, or carrying API scopes that moto cannot issue) are signed with moto's private key,
which ships inside the moto package; it is loaded here, in tests only. That the key is public is exactly
why the provider refuses a non-loopback ``endpoint_url`` (test_settings.py).
"""

from __future__ import annotations

import base64
import gzip
import json
import time
from importlib import resources
from typing import Any

import jwt
import pytest
from sbt_cognito_auth import CognitoAuth
from sbt_cognito_auth.bootstrap import bootstrap_pool

from sbt_core import ProviderContext
from sbt_core.errors import ForbiddenError, UnauthorizedError
from sbt_core.models import CreateUserRequest
from sbt_core.runtime.authorizer import Authorizer


def _moto_private_key() -> Any:
    """moto's fixed Cognito signing key (kid ``dummy``), from its package resources."""
    blob = resources.files("moto.cognitoidp").joinpath("resources/jwks-private.json.gz").read_bytes()
    return jwt.PyJWK.from_dict(json.loads(gzip.decompress(blob))).key  # a single JWK, not a set


def _sign(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, _moto_private_key(), algorithm="RS256", headers={"kid": "dummy"})


@pytest.fixture
def alice(provider: CognitoAuth, login: Any) -> dict[str, Any]:
    """A user signed in through the user client: its AuthenticationResult."""
    provider.auth_create_user(CreateUserRequest(user_name="alice", user_role="TenantAdmin", email="a@example.com"))
    return login("alice")


@pytest.fixture
def authorizer(provider: CognitoAuth) -> Authorizer:
    return Authorizer(provider.auth_settings())


def test_access_token_from_initiate_auth_is_accepted(authorizer: Authorizer, alice: dict[str, Any],
                                                     pool: Any) -> None:
    claims = authorizer.authorize(f"Bearer {alice['AccessToken']}", "user/user_read")  # scopes not enforced
    assert claims["token_use"] == "access" and claims["client_id"] == pool.user_client_id
    assert claims["username"] == "alice"


def test_machine_client_token_is_accepted(authorizer: Authorizer, provider: CognitoAuth, login: Any,
                                          pool: Any) -> None:
    # moto has no /oauth2/token; it does sign a password login on the machine client (without SECRET_HASH),
    # which gives an access token whose client_id is the machine client: the second audience entry.
    provider.auth_create_user(CreateUserRequest(user_name="svc", user_role="Service", email="svc@example.com"))
    token = login("svc", client_id=pool.machine_client_id)["AccessToken"]
    assert authorizer.verify(token)["client_id"] == pool.machine_client_id


def test_id_token_is_refused_where_an_access_token_is_required(authorizer: Authorizer,
                                                                alice: dict[str, Any]) -> None:
    with pytest.raises(UnauthorizedError, match="token_use"):
        authorizer.verify(alice["IdToken"])


def test_tampered_token_is_refused(authorizer: Authorizer, alice: dict[str, Any]) -> None:
    header, payload, signature = alice["AccessToken"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["username"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(UnauthorizedError, match="signature"):
        authorizer.verify(f"{header}.{forged}.{signature}")


def test_expired_token_is_refused(authorizer: Authorizer, alice: dict[str, Any]) -> None:
    claims = jwt.decode(alice["AccessToken"], options={"verify_signature": False})
    now = int(time.time())
    claims.update(iat=now - 7200, auth_time=now - 7200, exp=now - 3600)  # expired an hour ago, no waiting
    with pytest.raises(UnauthorizedError, match="expired"):
        authorizer.verify(_sign(claims))
    claims["exp"] = now + 3600  # the same forged claims, unexpired, verify: only exp made the difference
    assert authorizer.verify(_sign(claims))["username"] == "alice"


def test_token_of_another_client_of_the_pool_is_refused(authorizer: Authorizer, provider: CognitoAuth,
                                                        cognito: Any, pool: Any, login: Any) -> None:
    other = cognito.create_user_pool_client(UserPoolId=pool.user_pool_id, ClientName="not-ours",
                                            ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"])["UserPoolClient"]
    provider.auth_create_user(CreateUserRequest(user_name="eve", user_role="x", email="eve@example.com"))
    token = login("eve", client_id=other["ClientId"])["AccessToken"]
    with pytest.raises(UnauthorizedError, match="audience"):
        authorizer.verify(token)


def test_token_of_another_pool_is_refused(authorizer: Authorizer, cognito: Any, moto_endpoint: str) -> None:
    # Same server, same (fixed) moto key: only the issuer check tells the pools apart.
    other = bootstrap_pool(cognito, "us-east-1", pool_name="other", endpoint_url=moto_endpoint)
    cognito.admin_create_user(UserPoolId=other.user_pool_id, Username="mallory", MessageAction="SUPPRESS",
                              UserAttributes=[{"Name": "email", "Value": "m@example.com"}])
    cognito.admin_set_user_password(UserPoolId=other.user_pool_id, Username="mallory", Password="Passw0rd!long",
                                    Permanent=True)
    token = cognito.initiate_auth(ClientId=other.user_client_id, AuthFlow="USER_PASSWORD_AUTH",
                                  AuthParameters={"USERNAME": "mallory", "PASSWORD": "Passw0rd!long"}
                                  )["AuthenticationResult"]["AccessToken"]
    with pytest.raises(UnauthorizedError, match="issuer"):
        authorizer.verify(token)


def test_unsigned_and_hmac_tokens_are_refused(authorizer: Authorizer, alice: dict[str, Any]) -> None:
    claims = jwt.decode(alice["AccessToken"], options={"verify_signature": False})
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    hmac = jwt.encode(claims, "the-public-jwks-used-as-an-hmac-secret", algorithm="HS256",
                      headers={"kid": "dummy"})
    for token in (unsigned, hmac):
        with pytest.raises(UnauthorizedError, match="algorithm"):
            authorizer.verify(token)


def test_scopes_when_enforced(provider: CognitoAuth, pool: Any, settings_for: Any, tmp_path: Any,
                              alice: dict[str, Any]) -> None:
    """enforce_scopes=true (SBT setAPIGWScopes): moto's access tokens carry only
    ``aws.cognito.signin.user.admin``, so they are 403; a token with the API scope (as a Cognito
    client_credentials token would carry, signed here with moto's key because moto cannot issue one) passes."""
    strict = Authorizer(CognitoAuth(settings_for(pool, enforce_scopes=True),
                                    ProviderContext("cognito", "auth", tmp_path)).auth_settings())
    claims = strict.verify(alice["AccessToken"])
    assert claims["scope"] == "aws.cognito.signin.user.admin"
    with pytest.raises(ForbiddenError, match="user/user_read"):
        strict.check_scope(claims, "user/user_read")
    now = int(time.time())
    machine = _sign({"sub": pool.machine_client_id, "token_use": "access", "client_id": pool.machine_client_id,
                     "scope": "user/user_write tenant/tenant_write", "iss": strict.settings.jwt_issuer,
                     "iat": now, "exp": now + 3600})
    strict.authorize(f"Bearer {machine}", "user/user_write")
    with pytest.raises(ForbiddenError):
        strict.authorize(f"Bearer {machine}", "user/user_read")
