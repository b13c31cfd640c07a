"""What every command shares: finding plugins and config, printing, and the one-line error rule."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import attrs
import typer

from .. import input_policy
from ..config import Config, find_config_path, load_config, read_raw_config
from ..errors import BadRequestError, ConfigError, SbtError
from ..plugins import PluginCatalog, discover

P = ParamSpec("P")
R = TypeVar("R")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", show_default=False,
                 help="Config file (default: $SBT_CONFIG, else ./sbt.toml, else the embedded default)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Stable JSON for scripts instead of a table.")]


@attrs.define
class CliState:
    """How the CLI finds plugins. Tests pass ``extra`` plugins and ``entry_points=False`` so nothing
    installed on the machine leaks in."""

    extra: Mapping[str, Any] = attrs.field(factory=dict)
    entry_points: bool = True
    _catalogs: dict[Path | None, PluginCatalog] = attrs.field(factory=dict, alias="catalogs")

    def catalog(self, config_path: Path | None = None) -> PluginCatalog:
        """Plugins discovered with the ``[plugins]`` table of the config at ``config_path`` (cached)."""
        path = find_config_path(config_path)
        if path not in self._catalogs:
            plugins: dict[str, Any] = {}
            try:
                table = read_raw_config(path).get("plugins", {})
                plugins = table if isinstance(table, dict) else {}
            except ConfigError:
                pass  # load_config reports it properly
            disabled = plugins.get("disabled", [])
            strict = plugins.get("strict") if isinstance(plugins.get("strict"), bool) else None
            self._catalogs[path] = discover(entry_points=self.entry_points, extra=self.extra,
                                            disabled=disabled if isinstance(disabled, list) else [],
                                            strict=strict or None)
        return self._catalogs[path]

    def load(self, config_path: Path | None = None) -> tuple[PluginCatalog, Config]:
        """Catalog and validated config; raises ConfigError listing every problem."""
        path = find_config_path(config_path)
        catalog = self.catalog(path)
        return catalog, load_config(catalog, path)


def state(ctx: typer.Context) -> CliState:
    """The CliState of this invocation (set by the root callback)."""
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):
        obj = CliState()
        ctx.find_root().obj = obj
    return obj


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on one line to stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn an SbtError into one line on stderr and exit 1 (a ConfigError prints one line per problem)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            for problem in exc.problems:
                typer.echo(f"error: {problem}", err=True)
            raise typer.Exit(1) from None
        except SbtError as exc:
            raise fail(exc.message) from None

    return wrapper


def json_object(text: str | None, option: str) -> dict[str, Any]:
    """A JSON object given inline or as ``@file.json`` (None: empty); BadRequestError naming ``option``."""
    if text is None:
        return {}
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise BadRequestError(f"{option}: cannot read {text[1:]!r}: {exc.strerror or exc}") from None
    return parse_object(text, option)


def parse_object(text: str, where: str, expected: str = "a JSON object") -> dict[str, Any]:
    """``text`` parsed as a JSON object; BadRequestError prefixed with ``where`` (an option, ``file:line``)
    when it is not JSON or not ``expected``."""
    value = input_policy.loads(text, where)
    if not isinstance(value, dict):
        raise BadRequestError(f"{where}: expected {expected}")
    return value


def print_json(data: Any) -> None:
    """JSON on stdout, indented, keys in the order given (stable across runs)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
