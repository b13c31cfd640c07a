"""``sbt bindings``: the binding table — which hook of which provider runs on which trigger."""

from __future__ import annotations

import typer

from ..bindings import build_binding_table
from ..plugins import build_providers
from ._common import ConfigOption, JsonOption, handle_errors, print_json, state
from ._table import Column, WideOption, print_table


def register(app: typer.Typer) -> None:
    @app.command("bindings")
    @handle_errors
    def bindings(ctx: typer.Context, config: ConfigOption = None, as_json: JsonOption = False,
                 wide: WideOption = False) -> None:
        """Print every binding: hook, provider, trigger, and whether the trigger is default, from config, or a
        route a plugin adds."""
        catalog, cfg = state(ctx).load(config)
        # The routes a plugin adds are known once it is constructed (they may close over its state).
        providers = build_providers(catalog, cfg)
        try:
            table_data = build_binding_table(catalog, cfg, providers.routes)
        finally:
            providers.shutdown()
        if as_json:
            print_json(table_data.to_json())
            return
        columns = (Column("hook", ident=True), Column("provider"), Column("trigger", flex=True), Column("origin"))
        rows = [(b.hook, f"{b.interface}:{b.provider}" if b.interface else b.provider,
                 b.trigger.describe() + ("" if b.enabled else " [disabled]"), b.origin) for b in table_data]
        print_table("sbt bindings", columns, rows, wide=wide)
