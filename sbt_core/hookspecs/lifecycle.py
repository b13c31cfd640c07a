"""Hooks every plugin may implement, provider or extension: start-up, shutdown, CLI commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._markers import hookspec

if TYPE_CHECKING:
    import typer


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
