"""``sbt config validate|show``."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.syntax import Syntax

from ..advice import config_warnings
from ..bindings import build_binding_table
from ..config import find_config_path, selected_provider, show
from ..errors import ConfigError, StartupError
from ..hookspecs import INTERFACES
from ..plugins import check_required_hooks
from ._common import ConfigOption, JsonOption, handle_errors, print_json, state


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Check and print the configuration.", no_args_is_help=True)
    app.add_typer(group, name="config")

    @group.command("validate")
    @handle_errors
    def validate(ctx: typer.Context, config: ConfigOption = None, as_json: JsonOption = False) -> None:
        """Report every problem of the config at once (dotted paths), including a selected provider missing a
        required hook (which `sbt serve` refuses); say which provider each interface selects; exit 1 on any
        problem. Warnings (what a valid config most likely did not mean, e.g. no auth, a secret in plain text,
        a local fake behind a public host, per-process state in a shared deployment) exit 0."""
        st = state(ctx)
        problems: list[str] = []
        try:
            catalog, cfg = st.load(config)
            problems.extend(check_required_hooks(catalog, cfg))
            try:
                build_binding_table(catalog, cfg)
            except StartupError as exc:
                problems.extend(exc.message.split("; "))
            try:
                # [tenants] is kept as a plain table by load_config; the registry validates it.
                from ..tenants import load_settings

                load_settings(cfg)
            except ConfigError as exc:
                problems.extend(exc.problems)
            # So are [[jobs]] and [app_plane]; the application plane validates them.
            from ..app_plane import load_app_plane_settings, load_jobs

            for check in (lambda: load_jobs(cfg, catalog), lambda: load_app_plane_settings(cfg)):
                try:
                    check()
                except ConfigError as exc:
                    problems.extend(exc.problems)
        except ConfigError as exc:
            problems.extend(exc.problems)
        advice = [] if problems else config_warnings(cfg)
        path = find_config_path(config)
        where = str(path) if path else "embedded default"
        if as_json:
            print_json({"config_file": str(path) if path else None, "valid": not problems, "problems": problems,
                        "warnings": advice})
            if problems:
                raise typer.Exit(1)
            return
        if problems:
            raise ConfigError(problems)
        for line in advice:
            typer.echo(f"warning: {line}", err=True)
        typer.echo(f"{where}: valid" + (f" ({len(advice)} warning(s))" if advice else ""))
        for interface in INTERFACES:
            typer.echo(f"  {interface}: {selected_provider(cfg, interface)}")

    @group.command("show")
    @handle_errors
    def show_config(ctx: typer.Context, config: ConfigOption = None, as_json: JsonOption = False) -> None:
        """Print the effective config with defaults filled in; secrets are never printed."""
        catalog, cfg = state(ctx).load(config)
        data = show(cfg, catalog)
        if as_json:
            print_json(data)
            return
        typer.echo(data["selection"])
        Console().print(Syntax(json.dumps(data, indent=2), "json", background_color="default"))
