"""Hooks every plugin may implement, provider or extension: start-up, shutdown, CLI commands, HTTP routes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._markers import hookspec

if TYPE_CHECKING:
    import typer

    from ..routes import Routes


@hookspec
def sbt_startup() -> None:
    """Called once after all providers are constructed and bound, before traffic (open connections, load
    a snapshot). An exception stops start-up with the plugin's name."""


@hookspec
def sbt_shutdown() -> None:
    """Called once on shutdown after in-flight events are drained (flush, snapshot, close). Errors are
    logged, never raised, so every plugin gets its turn."""


@hookspec
def sbt_register_commands(cli: typer.Typer) -> None:
    """Add commands to the ``sbt`` CLI (e.g. ``sbt cognito bootstrap``). Called on every loaded plugin,
    selected or not; implement it as a ``@staticmethod`` on a provider class."""


@hookspec
def sbt_register_routes() -> Routes | None:
    """HTTP routes and static files this plugin adds to ``sbt serve`` (datasette's ``register_routes``), as
    :class:`sbt_core.routes.Routes`. Called once on each selected provider and enabled extension, after it
    is constructed. Each route's trigger declares its scope or that it is public (``authorizer="none"``);
    the core applies the authorizer, the body limit and error mapping, lists the routes in ``sbt bindings``
    and documents them in ``GET /openapi.json``. A route that clashes with another is a start-up error."""
