"""The built-in ``local`` auth provider (the embedded default): IAuth kept on this machine.

Users live in SQLite and an RS256 key pair is generated on first start, both under the provider's data
directory (``<state_dir>/local/``, by default ``.sbt/local/``). Tokens are access tokens shaped like
Cognito's (``iss``, ``aud``, ``client_id``, ``token_use: "access"``, space-separated ``scope``), so the
same authorizer checks them. Ways to get one:

- ``sbt token --scope user/user_write [--user admin]`` (scripts), or :func:`mint_token` (tests);
- ``POST /oauth2/token`` with ``grant_type=client_credentials`` for a configured machine client
  (SBT's machine client, which sbt-aws uses for EventBridge -> API calls).

The JWKS is served at ``/.well-known/jwks.json`` (with the token endpoint, through ``sbt_register_routes``
like any plugin's routes); the authorizer reads it in-process through :meth:`LocalAuth.jwks`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt

from .._markers import hookimpl
from ..errors import ForbiddenError
from ..models import AdminUser, AuthSettings, CreateUserRequest, Page, UpdateUserRequest, User
from ..models.scopes import ALL
from ..provider import Provider, ProviderContext
from .keys import KeySet, key_from_pem, load_or_create_key
from .settings import DEFAULT_ISSUER, LocalAuthSettings, MachineClient
from .store import DB_FILE, UserStore

if TYPE_CHECKING:
    from ..config import Config
    from ..routes import Routes

__all__ = ["DEFAULT_ISSUER", "LOCAL_CLIENT_ID", "LocalAuth", "LocalAuthSettings", "MachineClient", "mint_token"]

#: ``client_id`` of tokens minted for people and scripts (``sbt token``): the "user client" of SBT.
LOCAL_CLIENT_ID = "sbt-local"


class LocalAuth(Provider):
    """IAuth kept on this machine: users in SQLite, an RS256 key pair under the state directory."""

    settings_class = LocalAuthSettings
    settings: LocalAuthSettings

    def __init__(self, settings: LocalAuthSettings | None, context: ProviderContext) -> None:
        super().__init__(settings or LocalAuthSettings(), context)
        directory = context.data_dir
        self.keys = _key_set(self.settings, directory)
        self.key = self.keys.current
        self.users = UserStore(directory / DB_FILE)

    # --- tokens --------------------------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        return self.settings.issuer.rstrip("/")

    def jwks(self) -> dict[str, Any]:
        """The public JWKS (``{"keys": [current, *previous]}``)."""
        return self.keys.jwks()

    def mint_token(self, scopes: Iterable[str] = ALL, *, user: str | None = None, client_id: str | None = None,
                   lifetime_seconds: int | None = None, now: float | None = None) -> str:
        """An RS256 access token: ``sub`` is ``user`` (also ``username``) or the client id, ``scope`` the
        space-separated ``scopes``, valid for ``lifetime_seconds`` (default from the settings).

        :raises NotFoundError: ``user`` does not exist.
        :raises ForbiddenError: ``user`` is disabled.
        """
        if user is not None:
            found = self.users.get(user)  # NotFoundError names the user
            if not found.enabled:
                raise ForbiddenError(f"User {user} is disabled.")
        issued = int(now if now is not None else time.time())
        client = client_id or LOCAL_CLIENT_ID
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.settings.audience,
            "sub": user or client,
            "client_id": client,
            "token_use": "access",
            "scope": " ".join(dict.fromkeys(scopes)),
            "iat": issued,
            "nbf": issued,
            "exp": issued + (lifetime_seconds or self.settings.token_lifetime_seconds),
            "jti": str(uuid.uuid4()),
        }
        if user is not None:
            claims["username"] = user
        assert self.key.private_key is not None  # _key_set refuses a public-only current key
        return jwt.encode(claims, self.key.private_key, algorithm="RS256", headers={"kid": self.key.kid})

    @hookimpl
    def sbt_register_routes(self) -> Routes:
        """``GET /.well-known/jwks.json``, ``GET /.well-known/openid-configuration``, ``POST /oauth2/token``."""
        from .routes import routes

        return routes(self)

    # --- IAuth ---------------------------------------------------------------------------------------

    @hookimpl
    def auth_settings(self) -> AuthSettings:
        first = self.settings.machine_clients[0] if self.settings.machine_clients else None
        return AuthSettings(
            jwt_issuer=self.issuer,
            jwt_audience=[self.settings.audience],
            token_endpoint=f"{self.issuer}/oauth2/token",
            well_known_endpoint_url=f"{self.issuer}/.well-known/openid-configuration",
            user_client_id=LOCAL_CLIENT_ID,
            machine_client_id=first.client_id if first else None,
            machine_client_secret=first.client_secret if first else None,
            jwks_url=f"{self.issuer}/.well-known/jwks.json",
            enforce_scopes=self.settings.enforce_scopes,
            token_use="access",
            algorithms=["RS256"],
        )

    @hookimpl
    def auth_create_admin_user(self, admin: AdminUser) -> User | None:
        if self.users.exists(admin.name):
            return self.users.get(admin.name)  # idempotent, as Cognito's custom resource ignores UsernameExists
        return self.users.create(admin.name, admin.email, admin.role)

    @hookimpl
    def auth_create_user(self, user: CreateUserRequest) -> User:
        return self.users.create(user.user_name, user.email, user.user_role)

    @hookimpl
    def auth_fetch_all_users(self, limit: int, next_token: str | None) -> Page[User]:
        return self.users.page(limit, next_token)

    @hookimpl
    def auth_fetch_user(self, user_id: str) -> User:
        return self.users.get(user_id)

    @hookimpl
    def auth_update_user(self, user_id: str, update: UpdateUserRequest) -> User:
        return self.users.update(user_id, email=update.email, user_role=update.user_role)

    @hookimpl
    def auth_delete_user(self, user_id: str) -> None:
        self.users.delete(user_id)

    @hookimpl
    def auth_disable_user(self, user_id: str) -> None:
        self.users.update(user_id, enabled=False)

    @hookimpl
    def auth_enable_user(self, user_id: str) -> None:
        self.users.update(user_id, enabled=True)

    @hookimpl
    def sbt_shutdown(self) -> None:
        self.users.close()


def _key_set(settings: LocalAuthSettings, directory: Path) -> KeySet:
    """The keys of ``settings`` (see :class:`LocalAuthSettings`), the current one from the state directory
    when none is configured. :raises StartupError: a configured PEM is not an RSA key."""
    from ..errors import StartupError

    try:
        if settings.signing_key is None:
            current = load_or_create_key(directory)
        else:
            current = key_from_pem(settings.signing_key.get_secret_value(), "providers.auth.signing_key")
            if current.private_key is None:
                raise ValueError("providers.auth.signing_key: expected a private key (it signs tokens)")
        previous = tuple(key_from_pem(pem.get_secret_value(), f"providers.auth.previous_signing_keys[{i}]")
                         for i, pem in enumerate(settings.previous_signing_keys))
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    return KeySet(current, previous)


def mint_token(scopes: Iterable[str] = ALL, *, user: str | None = None, config: Config | None = None,
               state_dir: Path | None = None, settings: LocalAuthSettings | None = None,
               lifetime_seconds: int | None = None) -> str:
    """Mint a local access token the way ``sbt token`` does, from another process than the server.

    The key, users and issuer come from ``config`` (its ``[providers.auth]`` must be ``local``; its
    ``state_dir``), or from ``state_dir`` + ``settings`` (default: ``.sbt`` and default settings).

    :raises ConfigError: ``config`` selects another auth provider.
    :raises NotFoundError: ``user`` does not exist.
    :raises ForbiddenError: ``user`` is disabled.
    """
    if config is not None:
        from ..errors import ConfigError

        selection = config.provider("auth")
        if selection is None or selection.type != "local":
            which = f"'{selection.type}'" if selection else "none"
            raise ConfigError([f"providers.auth.type: tokens are minted by the local auth provider; "
                               f"the configured auth provider is {which}"])
        settings = selection.settings
        state_dir = config.state_dir
    context = ProviderContext(type_name="local", interface="auth", state_dir=state_dir or Path(".sbt"))
    provider = LocalAuth(settings or LocalAuthSettings(), context)
    try:
        return provider.mint_token(scopes, user=user, lifetime_seconds=lifetime_seconds)
    finally:
        provider.users.close()

