"""``sbt --version [--json]``: the core's version and every plugin's, as ``llm --version`` and ``pip
--version`` users expect — what a bug report needs. Versions are the installed distributions' (from
``importlib.metadata``), so an editable install reports its ``pyproject.toml`` version."""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import Any

import typer

from ..plugins import PluginCatalog
from ._common import print_json

#: The core's distribution name (``pip install sbt-core``).
CORE_DISTRIBUTION = "sbt-core"


def core_version() -> str:
    """The installed ``sbt-core`` version, or ``unknown`` when run from a source tree not installed."""
    try:
        return metadata.version(CORE_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def versions(catalog: PluginCatalog | None) -> dict[str, Any]:
    """``{"sbt": "0.1.0", "python": "3.11.9", "plugins": [{"name", "distribution", "version", "status",
    "builtin"}]}``, plugins sorted by name; a built-in plugin carries the core's version."""
    plugins = []
    for record in sorted(catalog.records.values(), key=lambda r: r.name) if catalog else ():
        plugins.append({"name": record.name, "distribution": record.distribution or CORE_DISTRIBUTION,
                        "version": record.version or core_version(), "status": record.status.value,
                        "builtin": record.builtin})
    return {"sbt": core_version(), "python": platform.python_version(), "executable": sys.executable,
            "plugins": plugins}


def print_versions(catalog: PluginCatalog | None, as_json: bool) -> None:
    """Print :func:`versions`: JSON, or ``sbt 0.1.0 (Python 3.11.9, /venv/bin/python)`` then one line per
    plugin (``  stripe 0.1.0 (sbt-stripe-billing)``, with its status when not loaded)."""
    data = versions(catalog)
    if as_json:
        print_json(data)
        return
    typer.echo(f"sbt {data['sbt']} (Python {data['python']}, {data['executable']})")
    width = max((len(p["name"]) for p in data["plugins"]), default=0)
    for p in data["plugins"]:
        status = "" if p["status"] == "loaded" else f" [{p['status']}]"
        typer.echo(f"  {p['name']:<{width}}  {p['version']} ({p['distribution']}){status}")
