"""IAuth hookspecs: JWT/OAuth settings, the admin user, and user management.

Mirrors sbt-aws ``src/control-plane/auth/auth-interface.ts``. Route
scopes are SBT CognitoAuth's (``user/user_read``, ``user/user_write``).
"""

from __future__ import annotations

from ..models import AdminUser, AuthSettings, CreateUserRequest, Page, UpdateUserRequest, User
from ..models.scopes import USER_READ, USER_WRITE
from ..triggers import RouteTrigger, StartupTrigger
from ._contract import contract
from .route_shape import RouteShape

#: Cognito's ListUsers takes at most 60 per page; the contract promises providers no more.
MAX_USERS_PAGE = 60


@contract("auth", "IAuth jwtIssuer, jwtAudience, tokenEndpoint, wellKnownEndpointUrl, userClientId, "
          "machineClientId, machineClientSecret, machineClientAudience, *Scope", required=True,
          trigger=StartupTrigger())
def auth_settings() -> AuthSettings:
    """The selected auth provider's JWT/OAuth settings and scope names.

    Mirrors IAuth's properties jwtIssuer, jwtAudience, tokenEndpoint, wellKnownEndpointUrl,
    userClientId, machineClientId, machineClientSecret, machineClientAudience and every ``*Scope``.
    Default trigger: read once at start-up; the authorizer verifies tokens against it.

    :return: :class:`~sbt_core.models.AuthSettings`.
    :raises ProviderError: the provider cannot describe itself (e.g. its pool is unreachable).
    """


@contract("auth", "IAuth.createAdminUser", required=True, trigger=StartupTrigger())
def auth_create_admin_user(admin: AdminUser) -> User | None:
    """Create the system admin if it does not exist; idempotent.

    Mirrors IAuth.createAdminUser (sbt-aws calls it once per control plane with ``{name, email, role}``;
    an existing user is left alone, as the Cognito custom resource ignores UsernameExists).
    Default trigger: once at start-up.

    :param admin: name, email and role of the admin (config ``[admin]``).
    :return: the admin :class:`User`, or None when the provider does not report it.
    :raises ProviderError: the backend failed.
    """


@contract("auth", "IAuth.createUserFunction", required=True,
          trigger=RouteTrigger(method="POST", path="/users", scope=USER_WRITE),
          route=RouteShape(body="user", status=201, fields=("user_name",)))
def auth_create_user(user: CreateUserRequest) -> User:
    """Create a user ``{userName, userRole, email}``.

    Mirrors IAuth.createUserFunction. Default trigger: ``POST /users`` (scope ``user/user_write``),
    answering 201 ``{"data": {"userName": ...}}`` as sbt-aws does.

    :param user: the request body.
    :return: the created :class:`User`.
    :raises ConflictError: a user of that name exists (409; sbt-aws answered 500).
    :raises ProviderError: the backend failed.
    """


@contract("auth", "IAuth.fetchAllUsersFunction", required=True,
          trigger=RouteTrigger(method="GET", path="/users", scope=USER_READ),
          route=RouteShape(page=MAX_USERS_PAGE, answer="page"))
def auth_fetch_all_users(limit: int, next_token: str | None) -> Page[User]:
    """One page of users.

    Mirrors IAuth.fetchAllUsersFunction. Default trigger: ``GET /users?limit=&next_token=``
    (scope ``user/user_read``), answering ``{"data": [...], "next_token": ...}``.

    :param limit: page size, 1 to 60 (Cognito's ListUsers maximum); the route defaults it to 10.
    :param next_token: the token of the previous page, or None for the first.
    :return: :class:`Page` of :class:`User`.
    :raises BadRequestError: a malformed or expired ``next_token``.
    """


@contract("auth", "IAuth.fetchUserFunction", required=True,
          trigger=RouteTrigger(method="GET", path="/users/{userId}", scope=USER_READ), route=RouteShape())
def auth_fetch_user(user_id: str) -> User:
    """One user by user name.

    Mirrors IAuth.fetchUserFunction. Default trigger: ``GET /users/{userId}`` (scope ``user/user_read``).

    :param user_id: the user name.
    :return: the :class:`User`.
    :raises NotFoundError: no such user (404 ``User <id> not found.``).
    """


@contract("auth", "IAuth.updateUserFunction", required=True,
          trigger=RouteTrigger(method="PUT", path="/users/{userId}", scope=USER_WRITE),
          route=RouteShape(body="update", answer="message", message="User updated"))
def auth_update_user(user_id: str, update: UpdateUserRequest) -> User:
    """Change a user's role, email, or both (one alone works; sbt-aws needed both).

    Mirrors IAuth.updateUserFunction. Default trigger: ``PUT /users/{userId}`` (scope ``user/user_write``),
    answering ``{"message": "User updated"}``.

    :param user_id: the user name.
    :param update: ``{userRole?, email?}``.
    :return: the updated :class:`User`.
    :raises NotFoundError: no such user.
    """


@contract("auth", "IAuth.deleteUserFunction", required=True,
          trigger=RouteTrigger(method="DELETE", path="/users/{userId}", scope=USER_WRITE),
          route=RouteShape(answer="message", message="User deleted"))
def auth_delete_user(user_id: str) -> None:
    """Delete a user.

    Mirrors IAuth.deleteUserFunction. Default trigger: ``DELETE /users/{userId}`` (scope
    ``user/user_write``), answering ``{"message": "User deleted"}``.

    :param user_id: the user name.
    :raises NotFoundError: no such user (sbt-aws answered 200; we answer 404).
    """


@contract("auth", "IAuth.disableUserFunction", required=True,
          trigger=RouteTrigger(method="PUT", path="/users/{userId}/disable", scope=USER_WRITE),
          route=RouteShape(answer="message", message="User disabled"))
def auth_disable_user(user_id: str) -> None:
    """Disable a user: they can no longer sign in.

    Mirrors IAuth.disableUserFunction, which sbt-aws never routed (bug #115). Default trigger:
    ``PUT /users/{userId}/disable`` (scope ``user/user_write``), answering ``{"message": "User disabled"}``.

    :raises NotFoundError: no such user.
    """


@contract("auth", "IAuth.enableUserFunction", required=True,
          trigger=RouteTrigger(method="PUT", path="/users/{userId}/enable", scope=USER_WRITE),
          route=RouteShape(answer="message", message="User enabled"))
def auth_enable_user(user_id: str) -> None:
    """Enable a disabled user.

    Mirrors IAuth.enableUserFunction (unrouted upstream, bug #115). Default trigger:
    ``PUT /users/{userId}/enable`` (scope ``user/user_write``), answering ``{"message": "User enabled"}``.

    :raises NotFoundError: no such user.
    """
