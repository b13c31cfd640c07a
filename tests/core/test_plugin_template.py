"""A plugin author's path: ``sbt plugins new`` writes a provider package that loads as a plugin and runs the
conformance kit at once, whose failures name each hook still to write; ``sbt plugins install`` is pip in
sbt's own environment."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sbt_core.cli import CliState, build_app
from sbt_core.hookspecs import hooks_of

runner = CliRunner(env={"COLUMNS": "200"})


@pytest.fixture
def generated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    result = runner.invoke(build_app(CliState(entry_points=False)),
                           ["plugins", "new", "metering", "acme-meter", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    root = tmp_path / "sbt-acme-meter"
    assert f"wrote {root}" in result.stdout
    monkeypatch.syspath_prepend(str(root))
    return root


def test_the_skeleton_is_a_package_with_its_entry_point_settings_readme_and_tests(generated: Path) -> None:
    project = tomllib.loads((generated / "pyproject.toml").read_text())["project"]
    assert project["name"] == "sbt-acme-meter"
    assert project["entry-points"]["sbt"] == {"acme-meter": "sbt_acme_meter:AcmeMeterMetering"}
    assert {p.relative_to(generated).as_posix() for p in generated.rglob("*") if p.is_file()} == {
        "pyproject.toml", "README.md", "tests/test_conformance.py", "sbt_acme_meter/__init__.py",
        "sbt_acme_meter/settings.py", "sbt_acme_meter/py.typed"}


def test_the_generated_provider_loads_as_a_plugin_with_every_required_hook(generated: Path) -> None:
    provider = importlib.import_module("sbt_acme_meter").AcmeMeterMetering
    result = runner.invoke(build_app(CliState(extra={"acme-meter": provider}, entry_points=False)),
                           ["plugins", "list", "--json"])
    listed = {p["name"]: p for p in json.loads(result.stdout)}
    assert listed["acme-meter"]["status"] == "loaded"
    required = {row.name for row in hooks_of("metering") if row.required}
    assert set(listed["acme-meter"]["hooks"]) == required
    info = runner.invoke(build_app(CliState(extra={"acme-meter": provider}, entry_points=False)),
                         ["plugins", "info", "acme-meter"])
    assert "api_key" in info.stdout and "api_base" in info.stdout


def test_the_conformance_kit_runs_at_once_and_its_failures_name_each_hook_to_write(generated: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests",
                             "-k", "meter_crud or cancel or usage_event"],
                            cwd=generated, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(generated)})
    assert result.returncode == 1, result.stdout + result.stderr  # tests ran and failed; nothing errored
    assert "metering_create_meter: not written yet" in result.stdout
    summary = result.stdout.split("sbt conformance", 1)[1]
    for hook in ("metering_create_meter", "metering_fetch_meter", "metering_fetch_all_meters"):
        assert f"{hook}: " in summary and "failed" in summary


def test_a_name_that_cannot_be_a_package_and_an_existing_folder_are_one_line_errors(tmp_path: Path) -> None:
    app = build_app(CliState(entry_points=False))
    bad = runner.invoke(app, ["plugins", "new", "metering", "Acme Meter", "--dir", str(tmp_path)])
    assert bad.exit_code == 1 and "use lower-case letters" in bad.output
    assert runner.invoke(app, ["plugins", "new", "billing", "x", "--dir", str(tmp_path)]).exit_code == 0
    again = runner.invoke(app, ["plugins", "new", "billing", "x", "--dir", str(tmp_path)])
    assert again.exit_code == 1 and "already exists" in again.output


def test_install_is_pip_of_sbts_own_python(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def run(args: list[str], check: bool) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        return subprocess.CompletedProcess(args, 0)

    monkeypatch.setattr(subprocess, "run", run)
    app = build_app(CliState(entry_points=False))
    result = runner.invoke(app, ["plugins", "install", "-U", "sbt-acme-meter", "-e", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert calls == [[sys.executable, "-m", "pip", "install", "--upgrade", "--editable", str(tmp_path),
                      "sbt-acme-meter"]]
    assert runner.invoke(app, ["plugins", "install"]).exit_code == 1
