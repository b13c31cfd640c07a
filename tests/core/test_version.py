"""``sbt --version``: the core's version and every plugin's, from the installed distributions."""

from __future__ import annotations

import json
from importlib import metadata

from typer.testing import CliRunner

from sbt_core.cli import CliState, build_app
from sbt_core.testing import RecordingBilling

runner = CliRunner(env={"COLUMNS": "200"})


def test_version_names_the_core_and_every_plugin_with_its_distribution_version() -> None:
    app = build_app(CliState(extra={"recorder": RecordingBilling}, entry_points=False))
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    first, *plugins = result.stdout.splitlines()
    assert first.startswith(f"sbt {metadata.version('sbt-core')} (Python ")
    names = [line.split()[0] for line in plugins]
    assert names == sorted(names) and {"local", "recorder"} <= set(names)
    local = next(line for line in plugins if line.split()[0] == "local")
    assert local.split()[1:] == [metadata.version("sbt-core"), "(sbt-core)"]  # a built-in is the core's


def test_version_json_is_for_scripts_and_bug_reports() -> None:
    app = build_app(CliState(extra={"recorder": RecordingBilling}, entry_points=False))
    result = runner.invoke(app, ["--version", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["sbt"] == metadata.version("sbt-core")
    assert {"name": "local", "distribution": "sbt-core", "version": data["sbt"], "status": "loaded",
            "builtin": True} in data["plugins"]


def test_installed_plugins_report_their_own_distribution() -> None:
    result = runner.invoke(build_app(CliState()), ["--version", "--json"])
    plugins = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert plugins["memory"]["distribution"] == "sbt-memory-metering"
    assert plugins["memory"]["version"] == metadata.version("sbt-memory-metering")
