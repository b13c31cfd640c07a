"""The ``cognito`` provider: IAuth on an Amazon Cognito user pool through boto3.

Mirrors sbt-aws's CognitoAuth and its user-management Lambda (sbt-aws
``src/control-plane/auth/cognito-auth.ts``, ``resources/functions/user-management/``):
the same Admin* calls and the same camelCase user shape, with its known bugs fixed (updating one attribute
works, deleting a missing user is a 404, creating an existing one a 409, enable/disable are routed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sbt_core import Provider, ProviderContext, hookimpl
from sbt_core.errors import BadRequestError, ProviderError
from sbt_core.models import AdminUser, AuthSettings, CreateUserRequest, Page, UpdateUserRequest, User

from ._errors import UserExistsError, call_cognito
from .client import make_client
from .settings import CognitoSettings

if TYPE_CHECKING:
    import typer

__all__ = ["CognitoAuth", "MAX_LIST_LIMIT"]

#: Cognito ListUsers' maximum ``Limit``.
MAX_LIST_LIMIT = 60
#: ListUsers answers these for a malformed or expired PaginationToken (moto says InvalidToken).
_BAD_TOKEN_CODES = frozenset({"InvalidParameterException", "InvalidToken", "InvalidPaginationTokenException"})


def _as_utc(value: datetime | None) -> datetime | None:
    # botocore parses Cognito's epoch timestamps into local-time datetimes; the contract speaks UTC.
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


class CognitoAuth(Provider):
    """IAuth provider ``cognito``: users in a Cognito user pool, tokens verified against its JWKS.

    Construct as ``CognitoAuth(CognitoSettings(...), context)``; ``client`` may be injected (tests, stubs).
    """

    settings_class: ClassVar[type] = CognitoSettings
    settings: CognitoSettings

    def __init__(self, settings: CognitoSettings, context: ProviderContext, *, client: Any = None) -> None:
        super().__init__(settings, context)
        self.client = client if client is not None else make_client(settings.region, settings.endpoint_url)

    # --- plumbing ------------------------------------------------------------------------------------------

    def _call(self, operation: str, *, user_name: str | None = None,
              bad_request_codes: frozenset[str] = frozenset(), **kwargs: Any) -> dict[str, Any]:
        """Cognito ``operation`` (CamelCase, e.g. ``AdminGetUser``) on the configured pool."""
        method = getattr(self.client, _snake(operation))
        s = self.settings
        result: dict[str, Any] = call_cognito(
            method, operation, max_attempts=s.max_attempts, initial_wait=s.retry_initial_seconds,
            max_wait=s.retry_max_seconds, user_name=user_name, bad_request_codes=bad_request_codes,
            UserPoolId=s.user_pool_id, **kwargs)
        return result

    def _user(self, record: Mapping[str, Any]) -> User:
        """A Cognito user record (AdminGetUser's ``UserAttributes`` or ListUsers'/AdminCreateUser's
        ``Attributes``) -> :class:`User` ``{userName, userRole, email, status, enabled, created, modified}``."""
        attributes = {a["Name"]: a.get("Value") for a in record.get("UserAttributes") or record.get("Attributes") or []}
        return User(
            user_name=record["Username"],
            email=attributes.get("email"),
            user_role=attributes.get(self.settings.role_attribute),
            status=record.get("UserStatus") or "UNKNOWN",
            enabled=bool(record.get("Enabled", True)),
            created=_as_utc(record.get("UserCreateDate")),
            modified=_as_utc(record.get("UserLastModifiedDate")),
        )

    def _attributes(self, *, email: str | None, role: str | None) -> list[dict[str, str]]:
        attributes: list[dict[str, str]] = []
        if email is not None:
            # An admin sets the address, so it counts as verified (sbt-aws's admin custom resource does the
            # same); otherwise Cognito would mark it unverified and block password reset by email.
            attributes += [{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}]
        if role is not None:
            attributes.append({"Name": self.settings.role_attribute, "Value": role})
        return attributes

    def _admin_create(self, name: str, email: str, role: str) -> User:
        kwargs: dict[str, Any] = {"Username": name, "UserAttributes": self._attributes(email=email, role=role),
                                  "DesiredDeliveryMediums": ["EMAIL"]}
        if not self.settings.send_invitations:
            kwargs["MessageAction"] = "SUPPRESS"
        response = self._call("AdminCreateUser", user_name=name, **kwargs)
        return self._user(response["User"])

    # --- lifecycle ------------------------------------------------------------------------------------------

    @hookimpl
    def sbt_startup(self) -> None:
        """Check that the pool exists and declares the role (and tenant) attribute, so a typo in the config
        fails at start-up rather than at the first user created.

        :raises ProviderError: the pool is unreachable or misses an attribute.
        """
        pool = self._call("DescribeUserPool")["UserPool"]
        declared = attribute_names(pool.get("SchemaAttributes", []))
        wanted = [self.settings.role_attribute] + ([self.settings.tenant_attribute]
                                                   if self.settings.tenant_attribute else [])
        missing = [name for name in wanted if name not in declared]
        if missing:
            raise ProviderError(f"Cognito user pool {self.settings.user_pool_id} does not declare attribute(s) "
                                f"{', '.join(missing)}; add them (sbt cognito bootstrap creates custom:userRole) "
                                "or set role_attribute / tenant_attribute")

    @staticmethod
    @hookimpl
    def sbt_register_commands(cli: typer.Typer) -> None:
        """Add ``sbt cognito bootstrap`` (see :mod:`sbt_cognito_auth.cli`)."""
        from .cli import register

        register(cli)

    # --- IAuth -----------------------------------------------------------------------------------------------

    @hookimpl
    def auth_settings(self) -> AuthSettings:
        """IAuth's JWT/OAuth properties as CognitoAuth sets them.

        ``jwtIssuer = https://cognito-idp.<region>.amazonaws.com/<poolId>``, ``jwtAudience = [userClientId,
        machineClientId]``, ``tokenEndpoint`` from the domain, ``wellKnownEndpointUrl = <issuer>/.well-known/
        openid-configuration``; JWKS from the issuer (or from ``endpoint_url``, loopback-only by default).
        Only access tokens are accepted on routes (``token_use = access``). Scope names are SBT's defaults
        (``user/user_read``...), kept in :class:`AuthSettings`.
        """
        s = self.settings
        audience = [s.user_client_id] + ([s.machine_client_id] if s.machine_client_id else [])
        return AuthSettings(
            jwt_issuer=s.issuer,
            jwt_audience=audience,
            token_endpoint=s.resolved_token_endpoint,
            well_known_endpoint_url=f"{s.issuer}/.well-known/openid-configuration",
            user_client_id=s.user_client_id,
            machine_client_id=s.machine_client_id,
            machine_client_secret=s.machine_client_secret,
            machine_client_audience=s.machine_client_audience,
            jwks_url=s.jwks_url,
            enforce_scopes=s.enforce_scopes,
            token_use="access",
            # Cognito signs with RS256 only; narrowing the list shuts out algorithm confusion for good.
            algorithms=["RS256"],
        )

    @hookimpl
    def auth_create_admin_user(self, admin: AdminUser) -> User | None:
        """AdminCreateUser(name, email, email_verified, role); an existing user is left as it is.

        Mirrors sbt-aws's auth custom resource, which ignores UsernameExistsException.

        :raises ProviderError: Cognito failed.
        """
        try:
            return self._admin_create(admin.name, admin.email, admin.role)
        except UserExistsError:
            return self.auth_fetch_user(admin.name)

    @hookimpl
    def auth_create_user(self, user: CreateUserRequest) -> User:
        """AdminCreateUser with ``email`` (verified) and the role attribute; Cognito emails the invitation
        unless ``send_invitations = false``.

        :raises ConflictError: the user name exists (sbt-aws answered 500).
        :raises ProviderError: Cognito failed (e.g. the role attribute is not declared in the pool).
        """
        return self._admin_create(user.user_name, user.email, user.user_role)

    @hookimpl
    def auth_fetch_all_users(self, limit: int, next_token: str | None) -> Page[User]:
        """ListUsers(Limit, PaginationToken) -> one :class:`Page`; ``next_token`` is Cognito's PaginationToken.

        :raises BadRequestError: ``limit`` outside 1..60, or a malformed/expired ``next_token``.
        """
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise BadRequestError(f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}")
        kwargs: dict[str, Any] = {"Limit": limit}
        if next_token:
            kwargs["PaginationToken"] = next_token
        response = self._call("ListUsers", bad_request_codes=_BAD_TOKEN_CODES, **kwargs)
        return Page(items=[self._user(u) for u in response.get("Users", [])],
                    next_token=response.get("PaginationToken") or None)

    @hookimpl
    def auth_fetch_user(self, user_id: str) -> User:
        """AdminGetUser.

        :raises NotFoundError: ``User <id> not found.``
        """
        return self._user(self._call("AdminGetUser", user_name=user_id, Username=user_id))

    @hookimpl
    def auth_update_user(self, user_id: str, update: UpdateUserRequest) -> User:
        """AdminUpdateUserAttributes with only the attributes given (sbt-aws wrote both and failed on one),
        then AdminGetUser for the result.

        :raises NotFoundError: no such user.
        """
        self._call("AdminUpdateUserAttributes", user_name=user_id, Username=user_id,
                   UserAttributes=self._attributes(email=update.email, role=update.user_role))
        return self.auth_fetch_user(user_id)

    @hookimpl
    def auth_delete_user(self, user_id: str) -> None:
        """AdminDeleteUser.

        :raises NotFoundError: no such user (sbt-aws answered 200).
        """
        self._call("AdminDeleteUser", user_name=user_id, Username=user_id)

    @hookimpl
    def auth_disable_user(self, user_id: str) -> None:
        """AdminDisableUser: sign-in is refused (``NotAuthorizedException: User is disabled.``).

        :raises NotFoundError: no such user.
        """
        self._call("AdminDisableUser", user_name=user_id, Username=user_id)

    @hookimpl
    def auth_enable_user(self, user_id: str) -> None:
        """AdminEnableUser.

        :raises NotFoundError: no such user.
        """
        self._call("AdminEnableUser", user_name=user_id, Username=user_id)


def _snake(operation: str) -> str:
    """``AdminGetUser`` -> ``admin_get_user`` (boto3's method names)."""
    return "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")


def attribute_names(schema: Sequence[Mapping[str, Any]]) -> set[str]:
    """Names in a DescribeUserPool ``SchemaAttributes`` list (custom ones carry their ``custom:`` prefix)."""
    return {a["Name"] for a in schema}
