"""``sbt token``: mint an access token of the local auth provider for scripts and ``curl``.

Reads the same config and state directory as ``sbt serve`` (the signing key and users live in
``<state_dir>/local/``), so a token minted here is accepted by a server running in another process.
Only the token is printed on stdout, so ``TOKEN=$(sbt token --scope user/user_write)`` works.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..models.scopes import ALL
from ._common import ConfigOption, handle_errors, state


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

        _, cfg = state(ctx).load(config)
        scopes = [s for item in (scope or []) for s in item.split()] or list(ALL)
        typer.echo(mint_token(scopes, user=user, config=cfg, lifetime_seconds=lifetime))
