"""How a client command reaches the running control plane: its URL and a bearer token, nothing more.

Every command that talks to ``sbt serve`` over HTTP (``sbt events``, ``sbt schedule``, ``sbt tenants``, and
those plugins add) resolves the server the same way:

- the URL is ``--url`` / ``$SBT_URL``, else ``http://<[server] host>:<[server] port>`` of the config;
- the token is ``--token`` / ``$SBT_TOKEN``, else — with the ``local`` auth provider — one minted from the
  signing key in the config's state directory (as ``sbt token`` does) with just the scope the command needs.

Only ``[server]``, ``state_dir`` and ``[providers.auth]`` of the config are read (and the auth table only when
a token must be minted), so a secret of another provider that is unset on this machine never stops a read
aimed at a server. A token is minted only from a key that exists: a client command never creates ``.sbt/``
or a new key in a folder that holds no control plane's state (the server would not know that key).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

import attrs
import typer

from ..config import Config, find_config_path, load_config, read_raw_config
from ..errors import BadRequestError
from ..runtime.http.client import ControlPlaneClient
from ._common import state

__all__ = ["ServerAccess", "TokenOption", "UrlOption", "connect", "resolve_server", "server_access"]

UrlOption = Annotated[str | None, typer.Option(
    "--url", envvar="SBT_URL", show_default=False,
    help="Control plane URL (default: \\[server] host and port of the config).")]
TokenOption = Annotated[str | None, typer.Option("--token", envvar="SBT_TOKEN", show_default=False,
                                                help="Bearer token (default: minted with the local auth provider).")]

C = TypeVar("C", bound=ControlPlaneClient)


@attrs.frozen
class ServerAccess:
    """Where the server is and the token to send; ``key_file`` is the local signing key the token was minted
    with (None when the token was given)."""

    url: str
    token: str
    key_file: Path | None = None

    def unauthorized_hint(self) -> str | None:
        """What to add to a 401: where the token's key came from, and how to use another."""
        if self.key_file is None:
            return None
        return (f"the token was minted from {self.key_file}; run the command in the folder of the server at "
                f"{self.url}, pass its --config, or pass --token / SBT_TOKEN")


def _client_config(ctx: typer.Context, config: Path | None, *, auth: bool) -> Config:
    """The config reduced to ``[server]``, ``state_dir``, ``[plugins]`` and (``auth``) ``[providers.auth]``."""
    path = find_config_path(config)
    raw = read_raw_config(path)
    kept: dict[str, Any] = {key: raw[key] for key in ("server", "state_dir", "plugins") if key in raw}
    providers = raw.get("providers")
    if auth and isinstance(providers, dict) and "auth" in providers:
        kept["providers"] = {"auth": providers["auth"]}
    elif not auth:
        kept["providers"] = {}
    return load_config(state(ctx).catalog(path), path, raw=kept)


def server_access(ctx: typer.Context, config: Path | None, url: str | None, token: str | None,
                  scope: str) -> ServerAccess:
    """The server's URL and a bearer token for ``scope`` (see the module docstring for the rules).

    :raises ConfigError: the config is needed (no ``--url`` or no ``--token``) and its ``[server]``,
        ``state_dir`` or ``[providers.auth]`` is invalid.
    :raises BadRequestError: no token given, and the configured auth provider is not ``local`` or its signing
        key does not exist in the state directory.
    """
    if url is not None and token is not None:
        return ServerAccess(url, token)
    cfg = _client_config(ctx, config, auth=token is None)
    if url is None:
        host = cfg.server.host
        host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # bound to every interface: use loopback
        url = f"http://{host}:{cfg.server.port}"
    if token is not None:
        return ServerAccess(url, token)
    selection = cfg.provider("auth")
    if selection is None or selection.type != "local":
        which = f"the '{selection.type}' auth provider" if selection else "no auth provider"
        raise BadRequestError(f"no token: pass --token or set SBT_TOKEN (with {which} configured, sbt cannot "
                              f"mint one; it needs the {scope} scope)")
    from ..auth_local import mint_token
    from ..auth_local.keys import KEY_FILE

    key_file = cfg.state_dir / "local" / KEY_FILE
    if not key_file.is_file():
        raise BadRequestError(f"no token: no signing key at {key_file} (this folder holds no control plane's "
                              "state); run the command where `sbt serve` runs, pass its --config, or pass --token "
                              "/ SBT_TOKEN")
    return ServerAccess(url, mint_token([scope], config=cfg), key_file)


def resolve_server(ctx: typer.Context, config: Path | None, url: str | None, token: str | None,
                   scope: str) -> tuple[str, str]:
    """``(url, token)`` of :func:`server_access`."""
    access = server_access(ctx, config, url, token, scope)
    return access.url, access.token


def connect(client_class: type[C], ctx: typer.Context, config: Path | None, url: str | None, token: str | None,
            scope: str) -> C:
    """A ``client_class`` of the server :func:`server_access` resolves; a 401 answer names where a minted
    token's key came from."""
    access = server_access(ctx, config, url, token, scope)
    return client_class(access.url, access.token, unauthorized_hint=access.unauthorized_hint())
