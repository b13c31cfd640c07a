"""Create a Cognito user pool the way sbt-aws's CognitoAuth construct does, and render its config block.

What CognitoAuth (sbt-aws ``src/control-plane/auth/cognito-auth.ts``) creates, and what :func:`bootstrap_pool` creates:

- a pool: email required and auto-verified, password >= 8 with upper/lower/digit/symbol, admin-created
  users only, the custom attribute ``userRole`` (1..256, mutable) and, optionally, ``tenantId``;
- resource servers ``user``, ``tenant`` (SBT's) plus ``meter``, ``usage``, ``event`` (sbt's routes), each
  with ``<name>_read`` / ``<name>_write`` (:data:`sbt_core.models.scopes.RESOURCE_SERVERS`);
- a user client: no secret, USER_PASSWORD + SRP + refresh, authorization-code flow with email/openid/
  profile and every API scope, callback ``http://localhost`` (SBT's ``controlPlaneCallbackURL`` default);
- a machine client: secret, ``client_credentials`` only, with the write scopes (SBT gives it
  ``tenant/tenant_write``; sbt's bus also writes events, meters and usage);
- optionally a domain (the prefix of the OAuth token endpoint).

Differences, on purpose: advanced security is off (SBT's ENFORCED is a paid feature); the domain prefix is
chosen by the operator (SBT derives ``<account>-<node address>``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attrs

from sbt_core.errors import ProviderError, SbtError
from sbt_core.models import Secret
from sbt_core.models.scopes import RESOURCE_SERVERS

from ._errors import call_cognito

__all__ = ["BootstrapResult", "DEFAULT_SECRET_ENV", "bootstrap_pool", "render_config"]

DEFAULT_SECRET_ENV = "SBT_COGNITO_MACHINE_CLIENT_SECRET"
USER_CLIENT_NAME = "sbt-user-client"
MACHINE_CLIENT_NAME = "sbt-machine-client"


@attrs.frozen
class BootstrapResult:
    """What :func:`bootstrap_pool` created; ``machine_client_secret`` is a :class:`Secret` (never printed)."""

    region: str
    user_pool_id: str
    user_client_id: str
    machine_client_id: str
    machine_client_secret: Secret
    domain: str | None = None
    endpoint_url: str | None = None
    tenant_attribute: str | None = None

    @property
    def api_scopes(self) -> list[str]:
        """Every ``<server>/<scope>`` created."""
        return _scopes()


def _scopes(suffix: str = "") -> list[str]:
    return [f"{server}/{name}" for server, names in RESOURCE_SERVERS.items() for name in names
            if name.endswith(suffix)]


def _string_attribute(name: str) -> dict[str, Any]:
    return {"Name": name, "AttributeDataType": "String", "Mutable": True,
            "StringAttributeConstraints": {"MinLength": "1", "MaxLength": "256"}}


def bootstrap_pool(client: Any, region: str, *, pool_name: str = "sbt-control-plane", domain: str | None = None,
                   tenant_attribute: bool = False, callback_urls: Sequence[str] = ("http://localhost",),
                   endpoint_url: str | None = None, max_attempts: int = 5) -> BootstrapResult:
    """Create the pool, resource servers, both clients and (optionally) the domain with ``client``
    (a boto3 ``cognito-idp`` client, e.g. :func:`sbt_cognito_auth.client.make_client`).

    Not idempotent: each run creates a new pool. When a step after the pool fails, the error names the pool
    so the operator can delete it.

    :raises ProviderError: Cognito refused a step (the AWS error code is in the message).
    """
    def call(operation: str, method: str, **kwargs: Any) -> dict[str, Any]:
        result: dict[str, Any] = call_cognito(getattr(client, method), operation, max_attempts=max_attempts,
                                              initial_wait=0.5, max_wait=10.0, **kwargs)
        return result

    schema = [{"Name": "email", "AttributeDataType": "String", "Required": True, "Mutable": True},
              _string_attribute("userRole")]
    if tenant_attribute:
        schema.append(_string_attribute("tenantId"))
    pool = call("CreateUserPool", "create_user_pool",
                PoolName=pool_name,
                Policies={"PasswordPolicy": {"MinimumLength": 8, "RequireUppercase": True,
                                             "RequireLowercase": True, "RequireNumbers": True,
                                             "RequireSymbols": True, "TemporaryPasswordValidityDays": 7}},
                AutoVerifiedAttributes=["email"],
                Schema=schema,
                AdminCreateUserConfig={"AllowAdminCreateUserOnly": True},
                AccountRecoverySetting={"RecoveryMechanisms": [{"Priority": 1, "Name": "verified_email"}]},
                MfaConfiguration="OFF")["UserPool"]
    pool_id: str = pool["Id"]
    try:
        for server, names in RESOURCE_SERVERS.items():
            call("CreateResourceServer", "create_resource_server", UserPoolId=pool_id, Identifier=server,
                 Name=server, Scopes=[{"ScopeName": n, "ScopeDescription": f"{n.replace('_', ' ')} access"}
                                      for n in names])
        user_client = call(
            "CreateUserPoolClient", "create_user_pool_client", UserPoolId=pool_id, ClientName=USER_CLIENT_NAME,
            GenerateSecret=False,
            ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
            AllowedOAuthFlowsUserPoolClient=True, AllowedOAuthFlows=["code"],
            AllowedOAuthScopes=["email", "openid", "profile", *_scopes()],
            CallbackURLs=list(callback_urls), SupportedIdentityProviders=["COGNITO"],
            ReadAttributes=["email", "email_verified", "custom:userRole"]
            + (["custom:tenantId"] if tenant_attribute else []),
            WriteAttributes=["email", "custom:userRole"],
            PreventUserExistenceErrors="ENABLED", EnableTokenRevocation=True)["UserPoolClient"]
        machine_client = call(
            "CreateUserPoolClient", "create_user_pool_client", UserPoolId=pool_id,
            ClientName=MACHINE_CLIENT_NAME, GenerateSecret=True,
            AllowedOAuthFlowsUserPoolClient=True, AllowedOAuthFlows=["client_credentials"],
            AllowedOAuthScopes=_scopes("_write"), SupportedIdentityProviders=["COGNITO"],
            ExplicitAuthFlows=["ALLOW_REFRESH_TOKEN_AUTH"], EnableTokenRevocation=True)["UserPoolClient"]
        if domain:
            call("CreateUserPoolDomain", "create_user_pool_domain", UserPoolId=pool_id, Domain=domain)
    except SbtError as exc:
        raise ProviderError(f"{exc.message} (user pool {pool_id} was created; delete it with "
                            f"'aws cognito-idp delete-user-pool --user-pool-id {pool_id}')") from exc
    return BootstrapResult(
        region=region, user_pool_id=pool_id, user_client_id=user_client["ClientId"],
        machine_client_id=machine_client["ClientId"],
        machine_client_secret=Secret(machine_client["ClientSecret"], reference=f"env:{DEFAULT_SECRET_ENV}"),
        domain=domain or None, endpoint_url=endpoint_url,
        tenant_attribute="custom:tenantId" if tenant_attribute else None)


def _toml(value: str) -> str:
    # A JSON string of printable text is a valid TOML basic string.
    return json.dumps(value, ensure_ascii=False)


def render_config(result: BootstrapResult, *, secret_env: str = DEFAULT_SECRET_ENV,
                  secret_file: str | None = None, allow_non_loopback_endpoint: bool = False) -> str:
    """The ``[providers.auth]`` TOML block for ``result``, secret as a reference, never the secret itself.

    :param secret_env: the environment variable the block reads the machine client secret from.
    :param secret_file: reference ``{ file = ... }`` instead (the caller wrote the secret there).
    """
    secret_ref = f"{{ file = {_toml(secret_file)} }}" if secret_file else f"{{ env = {_toml(secret_env)} }}"
    lines = [
        "[providers.auth]",
        'type = "cognito"',
        f"region = {_toml(result.region)}",
        f"user_pool_id = {_toml(result.user_pool_id)}",
        f"user_client_id = {_toml(result.user_client_id)}",
        f"machine_client_id = {_toml(result.machine_client_id)}",
        f"machine_client_secret = {secret_ref}",
    ]
    if result.domain:
        lines.append(f"domain = {_toml(result.domain)}")
    if result.endpoint_url:
        lines.append(f"endpoint_url = {_toml(result.endpoint_url)}")
        if allow_non_loopback_endpoint:
            lines.append("allow_non_loopback_endpoint = true  # this server's JWKS is trusted across the network")
    if result.tenant_attribute:
        lines.append(f"tenant_attribute = {_toml(result.tenant_attribute)}")
    # SBT's setAPIGWScopes. Access tokens from password sign-in (InitiateAuth) carry no API scopes, only
    # OAuth flows (hosted UI, client_credentials) do; a local server issues no OAuth tokens at all.
    if result.endpoint_url:
        lines += ["# A local server's tokens carry no API scopes: routes check the token but not its scopes.",
                  "enforce_scopes = false"]
    else:
        lines += ["# Routes require the API scopes, which only OAuth tokens (hosted UI, client_credentials) carry;",
                  "# set false to accept password sign-in tokens on every route (SBT setAPIGWScopes: false).",
                  "enforce_scopes = true"]
    return "\n".join(lines) + "\n"
