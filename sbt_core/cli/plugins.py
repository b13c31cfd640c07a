"""``sbt plugins list``: every plugin found, with its status, interfaces and hooks."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..plugins import Status
from ._common import ConfigOption, JsonOption, handle_errors, print_json, state


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Installed plugins.", no_args_is_help=True)
    app.add_typer(group, name="plugins")

    @group.command("list")
    @handle_errors
    def list_plugins(ctx: typer.Context, config: ConfigOption = None, as_json: JsonOption = False,
                     hook: Annotated[str | None, typer.Option(
                         "--hook", help="Only plugins implementing this hook.")] = None) -> None:
        """List plugins: loaded, failed (with the error) and disabled."""
        catalog = state(ctx).catalog(config)
        records = sorted(catalog.records.values(), key=lambda r: (not r.builtin, r.name))
        if hook:
            records = [r for r in records if hook in r.hooks]
        if as_json:
            print_json([r.to_json() for r in records])
            return
        table = Table(title="sbt plugins")
        for column in ("name", "status", "kind", "interfaces", "version", "distribution", "hooks / error"):
            table.add_column(column)
        for r in records:
            colour = {Status.LOADED: "green", Status.FAILED: "red", Status.DISABLED: "yellow"}[r.status]
            detail = r.error if r.status is Status.FAILED else ", ".join(r.hooks)
            table.add_row(r.name, f"[{colour}]{r.status.value}[/]", r.kind.value if r.kind else "",
                          ", ".join(r.interfaces), r.version or "", r.distribution or "", detail or "")
        Console().print(table)
