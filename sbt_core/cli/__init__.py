"""The ``sbt`` command line (typer). Each command group lives in its own module with a ``register(app)``;
plugins add theirs through the ``sbt_register_commands`` hook."""

from __future__ import annotations

import logging
import sys
from types import ModuleType
from typing import Annotated, Any

import typer
from typer.core import TyperOption

from ..plugins import PluginCatalog
from . import bindings, config, job_commands, plugins, runtime_commands, tenant_commands, token
from ._common import CliState
from .version import print_versions

log = logging.getLogger("sbt.cli")

#: Command modules of the core, in help order.
COMMAND_MODULES: list[ModuleType] = [plugins, config, bindings, runtime_commands, token, tenant_commands,
                                     job_commands]


def _show_flags_as_flags() -> None:
    """typer 0.29's rich help prints a type after every boolean flag (``--json <bool>``), as if it took a
    value; its plain help and click print none. Render a flag (and a counter) without one, for every
    command, the core's and the plugins' alike."""
    original = TyperOption.display_type_rich
    if getattr(original, "sbt_flags_as_flags", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag or self.count else original(self, ctx)

    display_type_rich.sbt_flags_as_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


def build_app(cli_state: CliState | None = None) -> typer.Typer:
    """A fresh ``sbt`` app: core commands plus those of every loaded plugin. Shell completion is typer's
    (``sbt --install-completion``)."""
    st = cli_state or CliState()
    _show_flags_as_flags()
    app = typer.Typer(name="sbt", help="sbt: a SaaS Builder Toolkit control plane.", no_args_is_help=True,
                      pretty_exceptions_enable=False)

    @app.callback(invoke_without_command=True)
    def root(ctx: typer.Context,
             version: Annotated[bool, typer.Option("--version", help="Print sbt's version and every plugin's, "
                                                   "then exit.")] = False,
             as_json: Annotated[bool, typer.Option("--json", help="With --version: as JSON.")] = False) -> None:
        ctx.obj = st
        if version:
            try:
                catalog: PluginCatalog | None = st.catalog()
            except Exception as exc:  # strict mode or an unreadable config: the core's version still prints
                log.debug("plugins not listed: %s", exc)
                catalog = None
            print_versions(catalog, as_json)
            raise typer.Exit()
        if ctx.invoked_subcommand is None:
            typer.echo(ctx.get_help())
            raise typer.Exit()

    for module in COMMAND_MODULES:
        module.register(app)
    try:
        catalog = st.catalog()
    except Exception as exc:  # strict mode, or an unreadable config: commands still report it themselves
        log.debug("plugin commands not registered: %s", exc)
        return app
    for impl in catalog.pm.hook.sbt_register_commands.get_hookimpls():
        try:
            impl.function(cli=app)
        except Exception as exc:  # one broken plugin never stops the CLI
            typer.echo(f"warning: plugin {impl.plugin_name!r} failed to add its commands: {exc}", err=True)
    return app


def main() -> None:
    """Console-script entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app = build_app()
    sys.exit(app())


__all__ = ["COMMAND_MODULES", "CliState", "build_app", "main"]
