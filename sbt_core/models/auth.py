"""Records of IAuth: the settings the authorizer reads, users, and the requests that change them.

Shapes follow sbt-aws's user Lambda (sbt-aws ``resources/functions/user-management/index.py``): camelCase
``{userName, userRole, email, status, enabled, created, modified}``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import attrs

from ..input_policy import NONBLANK_NAME_PATTERN, WHITESPACE, name_problem
from . import scopes
from ._convert import camel, stating
from .common import Secret

#: What an email field accepts: ``local@domain.tld``, no ``@``, white space or control character in a part
#: (the input policy's rule for names); the OpenAPI document states this pattern.
_EMAIL_PART = f"[^@{WHITESPACE}\\u0000-\\u001f\\u007f-\\u009f]+"
EMAIL_PATTERN = f"^{_EMAIL_PART}@{_EMAIL_PART}\\.{_EMAIL_PART}$"
_EMAIL = re.compile(EMAIL_PATTERN)


def _email(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and (not _EMAIL.fullmatch(value) or name_problem(value) is not None):
        raise ValueError(f"{camel(attribute.name)} {value!r} is not an email address")


stating(_email, format="email", pattern=EMAIL_PATTERN)


def _name(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and (not value.strip() or len(value) > 128):
        raise ValueError(f"{camel(attribute.name)} must be 1 to 128 characters")
    if value is not None and (problem := name_problem(value)) is not None:
        raise ValueError(f"{camel(attribute.name)}: {problem}")


stating(_name, minLength=1, maxLength=128, pattern=NONBLANK_NAME_PATTERN)


@attrs.frozen
class AuthSettings:
    """What the selected auth provider tells the core (IAuth's JWT/OAuth properties and scope names).

    ``jwt_issuer`` and ``jwt_audience`` configure the authorizer (a token's ``aud`` or, for access
    tokens without one, ``client_id`` must be in the audience). ``jwks_url`` defaults to
    ``<issuer>/.well-known/jwks.json``. ``enforce_scopes`` is SBT's ``setAPIGWScopes``: False for
    providers whose tokens carry no scopes. ``token_use`` is the ``token_use`` claim routes accept
    (Cognito access tokens say ``access``; None skips the check for providers that do not set it).
    """

    jwt_issuer: str
    jwt_audience: list[str]
    token_endpoint: str
    well_known_endpoint_url: str
    user_client_id: str
    machine_client_id: str | None = None
    machine_client_secret: Secret | None = None
    machine_client_audience: str | None = None
    jwks_url: str | None = None
    enforce_scopes: bool = True
    token_use: str | None = "access"
    algorithms: list[str] = attrs.field(factory=lambda: ["RS256", "ES256"])
    fetch_user_scope: str = scopes.USER_READ
    fetch_all_users_scope: str = scopes.USER_READ
    create_user_scope: str = scopes.USER_WRITE
    update_user_scope: str = scopes.USER_WRITE
    delete_user_scope: str = scopes.USER_WRITE
    disable_user_scope: str = scopes.USER_WRITE
    enable_user_scope: str = scopes.USER_WRITE
    fetch_tenant_registration_scope: str = scopes.TENANT_READ
    fetch_all_tenant_registrations_scope: str = scopes.TENANT_READ
    create_tenant_registration_scope: str = scopes.TENANT_WRITE
    update_tenant_registration_scope: str = scopes.TENANT_WRITE
    delete_tenant_registration_scope: str = scopes.TENANT_WRITE
    activate_tenant_registration_scope: str = scopes.TENANT_WRITE
    deactivate_tenant_registration_scope: str = scopes.TENANT_WRITE

    @property
    def resolved_jwks_url(self) -> str:
        """``jwks_url`` or the issuer's ``/.well-known/jwks.json``."""
        return self.jwks_url or self.jwt_issuer.rstrip("/") + "/.well-known/jwks.json"


@attrs.frozen
class AdminUser:
    """The system admin created once at start-up (sbt-aws ControlPlaneProps systemAdminName/Email/RoleName)."""

    name: str = attrs.field(default="admin", validator=_name)
    email: str = attrs.field(default="admin@example.com", validator=_email)
    role: str = "SystemAdmin"


@attrs.frozen
class User:
    """A user as ``GET /users/{userId}`` answers: ``status`` is the provider's account status
    (Cognito's ``CONFIRMED``, ``FORCE_CHANGE_PASSWORD``…), ``enabled`` False once disabled."""

    user_name: str
    email: str | None = None
    user_role: str | None = None
    status: str = "CONFIRMED"
    enabled: bool = True
    created: datetime | None = None
    modified: datetime | None = None


@attrs.frozen
class CreateUserRequest:
    """Body of ``POST /users``: ``{userName, userRole, email}``, all required (sbt-aws)."""

    user_name: str = attrs.field(validator=_name)
    user_role: str = attrs.field(validator=_name)
    email: str = attrs.field(validator=_email)


@attrs.frozen
class UpdateUserRequest:
    """Body of ``PUT /users/{userId}``: ``{userRole?, email?}``; one alone is fine (fixes sbt-aws's KeyError)."""

    user_role: str | None = attrs.field(default=None, validator=_name)
    email: str | None = attrs.field(default=None, validator=_email)

    def __attrs_post_init__(self) -> None:
        if self.user_role is None and self.email is None:
            raise ValueError("give userRole, email or both")


stating(UpdateUserRequest, anyOf=[{"required": ["userRole"], "properties": {"userRole": {"type": "string"}}},
                                  {"required": ["email"], "properties": {"email": {"type": "string"}}}])
