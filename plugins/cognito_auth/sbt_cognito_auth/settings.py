"""``[providers.auth]`` settings of the ``cognito`` provider, validated when the config loads.

Mirrors what sbt-aws's CognitoAuth derives from its CDK props and the pool it creates (sbt-aws
``src/control-plane/auth/cognito-auth.ts``): the pool, the user and machine clients, the domain behind the
token endpoint, ``setAPIGWScopes`` (here ``enforce_scopes``) and the ``custom:userRole`` attribute.

Security: ``endpoint_url`` points boto3 *and the JWKS fetch* at another server. A local Cognito-compatible
server (moto) signs with a fixed private key that ships in its package, so trusting such a server's JWKS
anywhere but on this machine would let anyone mint tokens. A non-loopback ``endpoint_url`` is therefore
refused unless ``allow_non_loopback_endpoint = true`` says the operator means it.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

import attrs

from sbt_core.models import Secret
from sbt_core.structure import Refusal

__all__ = ["CognitoSettings", "is_loopback_url"]

# Cognito region names (us-east-1, ap-southeast-2, us-gov-west-1, eu-isoe-west-1 ...).
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
# ``<region>_<id>``. Lenient on the id part: real ids are 9 alphanumerics, moto's are 32 hex digits.
_POOL_ID = re.compile(r"^[\w-]+_[0-9a-zA-Z]+$")
_CLIENT_ID = re.compile(r"^[\w+]{1,128}$")
# A Cognito domain prefix: lowercase letters, digits and hyphens (custom domains are given as token_endpoint).
_DOMAIN_PREFIX = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_ATTRIBUTE = re.compile(r"^[\w:.-]{1,64}$")


def is_loopback_url(url: str) -> bool:
    """Whether ``url``'s host is this machine: ``localhost``, 127.0.0.0/8 (also IPv4-mapped) or ``::1``.

    Host names other than ``localhost`` are not resolved (a DNS answer can change after validation).
    """
    host = urlsplit(url).hostname
    if host is None:
        return False
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    # ::ffff:127.0.0.1 is loopback too (Python < 3.13 says no for IPv4-mapped addresses).
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def _matches(pattern: re.Pattern[str], what: str) -> Any:
    def check(_: object, __: attrs.Attribute, value: str | None) -> None:  # type: ignore[type-arg]
        if value is not None and not pattern.match(value):
            raise Refusal(f"must be {what}", repr(value))

    return check


def _http_url(_: object, __: attrs.Attribute, value: str | None) -> None:  # type: ignore[type-arg]
    if value is None:
        return
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refusal("must be an http(s) URL", repr(value))


@attrs.frozen
class CognitoSettings:
    """Validated ``[providers.auth]`` table of ``type = "cognito"``.

    - ``region``, ``user_pool_id``: the pool (``us-east-1_AbCdEf123``).
    - ``user_client_id``: the app client users sign in with (no secret).
    - ``machine_client_id`` + ``machine_client_secret``: the client-credentials client (SBT's machine
      client); the secret is a reference (``{ env = "NAME" }``) and becomes a :class:`Secret`. Give both or neither.
    - ``machine_client_audience``: the ``audience`` sent with the machine client's client-credentials
      request (SBT's ``machineClientAudience``), when the token endpoint wants one.
    - ``domain``, ``token_endpoint``: the Cognito domain prefix; the token endpoint becomes
      ``https://<domain>.auth.<region>.amazoncognito.com/oauth2/token`` unless ``token_endpoint`` is given
      (custom domains). One of the two is required, except with ``endpoint_url`` (then
      ``<endpoint_url>/oauth2/token``).
    - ``endpoint_url``, ``allow_non_loopback_endpoint``: a local Cognito-compatible server (moto); loopback only unless
      ``allow_non_loopback_endpoint`` (see the module docstring).
    - ``enforce_scopes``: SBT's ``setAPIGWScopes``; false when tokens carry no API scopes.
    - ``role_attribute``: the user attribute holding ``userRole`` (SBT: ``custom:userRole``).
    - ``tenant_attribute``: optional attribute holding a tenant id (e.g. ``custom:tenantId``); declared by
      ``sbt cognito bootstrap --tenant-attribute``. At start-up the provider checks that the pool declares
      the role attribute and, when set, the tenant attribute (real Cognito refuses undeclared custom
      attributes only at the first AdminCreateUser; this fails fast instead).
    - ``send_invitations``: AdminCreateUser sends Cognito's invitation email with a temporary password
      (SBT's behaviour); false sets ``MessageAction=SUPPRESS``.
    - ``max_attempts``, ``retry_initial_seconds``, ``retry_max_seconds``: throttling retries (exponential
      backoff with jitter) before a 502.
    """

    region: str = attrs.field(validator=_matches(_REGION, "an AWS region name (e.g. us-east-1)"))
    user_pool_id: str = attrs.field(validator=_matches(_POOL_ID, "a Cognito user pool id (<region>_<id>)"))
    user_client_id: str = attrs.field(validator=_matches(_CLIENT_ID, "a Cognito app client id"))
    machine_client_id: str | None = attrs.field(default=None,
                                                validator=_matches(_CLIENT_ID, "a Cognito app client id"))
    machine_client_secret: Secret | None = None
    machine_client_audience: str | None = None
    domain: str | None = attrs.field(default=None, validator=_matches(_DOMAIN_PREFIX, "a Cognito domain prefix"))
    token_endpoint: str | None = attrs.field(default=None, validator=_http_url)
    endpoint_url: str | None = attrs.field(default=None, validator=_http_url)
    allow_non_loopback_endpoint: bool = False
    enforce_scopes: bool = True
    role_attribute: str = attrs.field(default="custom:userRole",
                                      validator=_matches(_ATTRIBUTE, "a Cognito attribute name"))
    tenant_attribute: str | None = attrs.field(default=None,
                                               validator=_matches(_ATTRIBUTE, "a Cognito attribute name"))
    send_invitations: bool = True
    max_attempts: int = attrs.field(default=5, validator=[attrs.validators.ge(1), attrs.validators.le(20)])
    retry_initial_seconds: float = attrs.field(default=0.2, validator=attrs.validators.ge(0))
    retry_max_seconds: float = attrs.field(default=5.0, validator=attrs.validators.ge(0))

    def __attrs_post_init__(self) -> None:
        if (self.machine_client_id is None) != (self.machine_client_secret is None):
            raise ValueError("give machine_client_id and machine_client_secret together (or neither)")
        if self.machine_client_secret is not None and not self.machine_client_secret.get_secret_value():
            raise ValueError("machine_client_secret is empty")
        if not self.user_pool_id.startswith(self.region + "_"):
            raise ValueError(f"user_pool_id {self.user_pool_id!r} is not a pool of region {self.region!r}")
        if self.endpoint_url is not None and not self.allow_non_loopback_endpoint \
                and not is_loopback_url(self.endpoint_url):
            raise ValueError(
                f"endpoint_url {self.endpoint_url!r} is not on this machine (localhost, 127.0.0.0/8, ::1). "
                "A local Cognito-compatible server signs tokens with a published key, so its JWKS must never be "
                "trusted across a network; set allow_non_loopback_endpoint = true only if this server is "
                "really an identity provider you trust")
        if self.token_endpoint is None and self.domain is None and self.endpoint_url is None:
            raise ValueError("give domain (the Cognito domain prefix) or token_endpoint (the OAuth token URL)")

    @property
    def issuer(self) -> str:
        """``https://cognito-idp.<region>.amazonaws.com/<poolId>``: the ``iss`` Cognito (and moto) sign."""
        return f"https://cognito-idp.{self.region}.amazonaws.com/{self.user_pool_id}"

    @property
    def resolved_token_endpoint(self) -> str:
        """``token_endpoint``, else the domain's ``/oauth2/token``, else ``<endpoint_url>/oauth2/token``."""
        if self.token_endpoint is not None:
            return self.token_endpoint
        if self.domain is not None:
            return f"https://{self.domain}.auth.{self.region}.amazoncognito.com/oauth2/token"
        assert self.endpoint_url is not None  # __attrs_post_init__ requires one of the three
        return self.endpoint_url.rstrip("/") + "/oauth2/token"

    @property
    def jwks_url(self) -> str:
        """``<issuer>/.well-known/jwks.json``, or the same path on ``endpoint_url`` (moto serves it there)."""
        if self.endpoint_url is not None:
            return f"{self.endpoint_url.rstrip('/')}/{self.user_pool_id}/.well-known/jwks.json"
        return f"{self.issuer}/.well-known/jwks.json"
