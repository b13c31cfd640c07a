"""``sbt plugins list|info``: every plugin found, which provider the config selects, and a provider's settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from ..config import Config
from ..errors import ConfigError, NotFoundError
from ..plugins import PluginCatalog, Status, check_required_hooks
from ..provider import NoSettings, settings_fields
from ._common import CliState, ConfigOption, JsonOption, handle_errors, print_json, state
from ._table import Column, WideOption, count_line, print_table

_COLOURS = {Status.LOADED: "green", Status.FAILED: "red", Status.DISABLED: "yellow"}


def _selection(st: CliState, config: Path | None) -> tuple[PluginCatalog, Config | None, list[str]]:
    """The catalog, the config (None when it does not load: ``sbt config validate`` says why) and the
    selected providers missing required hooks (the check ``sbt serve`` refuses to start on)."""
    catalog = st.catalog(config)
    try:
        _, cfg = st.load(config)
    except ConfigError:
        return catalog, None, []
    return catalog, cfg, check_required_hooks(catalog, cfg)


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Installed plugins.", no_args_is_help=True)
    app.add_typer(group, name="plugins")

    @group.command("list")
    @handle_errors
    def list_plugins(ctx: typer.Context, config: ConfigOption = None, as_json: JsonOption = False,
                     hook: Annotated[str | None, typer.Option(
                         "--hook", help="Only plugins implementing this hook.")] = None,
                     wide: WideOption = False) -> None:
        """List plugins (loaded, failed with the error, disabled) and the provider the config selects for each
        interface; exit 1 when a selected provider misses a required hook."""
        catalog, cfg, problems = _selection(state(ctx), config)
        records = sorted(catalog.records.values(), key=lambda r: (not r.builtin, r.name))
        if hook:
            records = [r for r in records if hook in r.hooks]
        if as_json:
            print_json([r.to_json() for r in records])
        else:
            selected = {} if cfg is None else {sel.type: iface for iface, sel in cfg.providers.items()}
            columns = (Column("name", ident=True), Column("status"), Column("selected"), Column("interfaces"),
                       Column("version", wide=True), Column("distribution", wide=True),
                       Column("hooks / error", flex=True))
            rows = []
            for r in records:
                failed = r.status is Status.FAILED
                detail = r.error if failed else (", ".join(r.hooks) if wide else f"{len(r.hooks)} hooks")
                rows.append((r.name, Text(r.status.value, style=_COLOURS[r.status]), selected.get(r.name, ""),
                             ", ".join(r.interfaces), r.version or "", r.distribution or "", detail or ""))
            print_table("sbt plugins", columns, rows, wide=wide,
                        footer=count_line(len(records), len(catalog.records), "plugins"))
            if cfg is None:
                typer.echo("the config does not load, so no provider is shown as selected "
                           "(sbt config validate says why)", err=True)
            else:
                chosen = ", ".join(f"{iface}: {sel.type}" for iface, sel in cfg.providers.items())
                Console().print(Text(f"selected by {cfg.path or 'the embedded default'}: {chosen or 'no provider'}"))
        if problems:
            for problem in problems:
                typer.echo(f"error: {problem}", err=True)
            raise typer.Exit(1)

    @group.command("info")
    @handle_errors
    def info(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The plugin (provider type) name.")],
             config: ConfigOption = None, as_json: JsonOption = False, wide: WideOption = False) -> None:
        """A plugin's status, interfaces and hooks, and a provider's settings: each field of its
        [providers.<interface>] table with its type, default and meaning."""
        catalog = state(ctx).catalog(config)
        record = catalog.get(name)
        if record is None:
            known = ", ".join(sorted(catalog.records)) or "none"
            raise NotFoundError(f"no plugin {name!r} (installed: {known})")
        settings_class = getattr(record.obj, "settings_class", NoSettings) if record.obj is not None else NoSettings
        fields = settings_fields(settings_class) if settings_class is not NoSettings else []
        if as_json:
            print_json(record.to_json() | {"settings": [f.to_json() for f in fields]})
            return
        console = Console()  # wraps the long lines (hooks) at the terminal's width
        console.print(Text(f"{record.name} {record.version or ''} ({record.status.value}) {record.value}"
                           .replace("  ", " ")))
        for label, value in (("error", record.error), ("interfaces", ", ".join(record.interfaces)),
                             ("hooks", ", ".join(record.hooks))):
            if value:
                console.print(Text(f"{label}: {value}"))
        if not record.interfaces:
            return
        if not fields:
            console.print(Text("settings: none (any key besides type is an error)"))
            return
        columns = (Column("field", ident=True), Column("type"), Column("default"), Column("meaning", flex=True))
        table_name = f"[providers.{record.interfaces[0]}] settings (type = \"{record.name}\")"
        print_table(table_name, columns, [(f.name, f.type, f.default, f.meaning) for f in fields], wide=wide,
                    console=console)

    @group.command("new")
    @handle_errors
    def new(interface: Annotated[str, typer.Argument(help="auth, billing or metering.")],
            name: Annotated[str, typer.Argument(help="The provider's type name, e.g. acme-ledger.")],
            directory: Annotated[Path, typer.Option("--dir", help="Where to write sbt-<name>/.")] = Path(".")) -> None:
        """Write a provider package skeleton: settings class, entry point, README and tests wired to the
        conformance kit, each required hook a stub the kit's failures name until written."""
        from ._template import write_template

        root = write_template(interface, name, directory)
        typer.echo(f"wrote {root}")
        typer.echo(f"  next: sbt plugins install -e {root}   # then: sbt plugins list; cd {root} && python -m pytest")

    @group.command("install", context_settings={"allow_extra_args": False})
    @handle_errors
    def install(packages: Annotated[list[str] | None, typer.Argument(
                    help="Distributions to install (pip requirement specifiers).", show_default=False)] = None,
                editable: Annotated[list[Path] | None, typer.Option(
                    "--editable", "-e", help="Install a local project folder in editable mode.")] = None,
                upgrade: Annotated[bool, typer.Option("--upgrade", "-U", help="Upgrade to the newest version.")]
                = False) -> None:
        """Install plugins into the same Python environment as sbt (pip install, as `llm install`); `sbt plugins
        list` shows them at once."""
        from ..errors import BadRequestError

        args = [sys.executable, "-m", "pip", "install", *(["--upgrade"] if upgrade else [])]
        for folder in editable or []:
            args += ["--editable", str(folder)]
        args += packages or []
        if len(args) == 4 + upgrade:
            raise BadRequestError("name a package to install, or -e FOLDER")
        raise typer.Exit(subprocess.run(args, check=False).returncode)
