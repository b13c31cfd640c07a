"""``sbt token``: mint an access token of the local auth provider for scripts and ``curl``.

Reads the same config and state directory as ``sbt serve`` (the signing key and users live in
``<state_dir>/local/``), so a token minted here is accepted by a server running in another process.
Only the token is printed on stdout, so ``TOKEN=$(sbt token --scope user/user_write)`` works.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..bindings import build_binding_table
from ..config import Config
from ..errors import BadRequestError
from ..models.scopes import ALL
from ..plugins import PluginCatalog
from ..triggers import RouteTrigger
from ._common import ConfigOption, handle_errors, state


def _known_scopes(catalog: PluginCatalog, cfg: Config) -> list[str]:
    """sbt's scopes, then any other scope a route of this config requires (a plugin's, or an override's)."""
    routes = [b.trigger.scope for b in build_binding_table(catalog, cfg).routes()
              if isinstance(b.trigger, RouteTrigger) and b.trigger.scope]
    return list(dict.fromkeys([*ALL, *sorted(set(routes) - set(ALL))]))


def register(app: typer.Typer) -> None:
    @app.command("token")
    @handle_errors
    def token(
        ctx: typer.Context,
        scope: Annotated[list[str] | None, typer.Option(
            "--scope", "-s", help="A scope to grant (repeatable, or space-separated). Default: every sbt scope.",
            show_default=False)] = None,
        user: Annotated[str | None, typer.Option(
            "--user", "-u", help="Mint the token for this existing, enabled user (sub/username claims).")] = None,
        lifetime: Annotated[int | None, typer.Option(
            "--lifetime", help="Validity in seconds (default: the provider's token_lifetime_seconds).",
            min=60, max=7 * 86400)] = None,
        config: ConfigOption = None,
    ) -> None:
        """Print an access token of the local auth provider (RS256, verified by `sbt serve`)."""
        from ..auth_local import mint_token

        catalog, cfg = state(ctx).load(config)
        scopes = [s for item in (scope or []) for s in item.split()] or list(ALL)
        known = _known_scopes(catalog, cfg)
        unknown = [s for s in scopes if s not in known]
        if unknown:
            raise BadRequestError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(known)}")
        typer.echo(mint_token(scopes, user=user, config=cfg, lifetime_seconds=lifetime))
