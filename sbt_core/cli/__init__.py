"""The ``sbt`` command line (typer). Each command group lives in its own module with a ``register(app)``;
plugins add theirs through the ``sbt_register_commands`` hook."""

from __future__ import annotations

import logging
import sys
from types import ModuleType

import typer

from . import bindings, config, job_commands, plugins, runtime_commands, tenant_commands, token
from ._common import CliState

log = logging.getLogger("sbt.cli")

#: Command modules of the core, in help order.
COMMAND_MODULES: list[ModuleType] = [plugins, config, bindings, runtime_commands, token, tenant_commands,
                                     job_commands]


def build_app(cli_state: CliState | None = None) -> typer.Typer:
    """A fresh ``sbt`` app: core commands plus those of every loaded plugin."""
    st = cli_state or CliState()
    app = typer.Typer(name="sbt", help="sbt: a SaaS Builder Toolkit control plane.", no_args_is_help=True,
                      pretty_exceptions_enable=False, add_completion=False)

    @app.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = st

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
