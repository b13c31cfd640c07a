"""The CLI of issue 2: plugins list, config validate|show, bindings — tables for people, JSON for scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sbt_core.cli import CliState, build_app

from .conftest import BadSignature

runner = CliRunner(env={"COLUMNS": "200"})  # wide enough that rich tables do not wrap


def _run(fakes: dict[str, Any], *args: str, extra: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    app = build_app(CliState(extra={**fakes, **(extra or {})}, entry_points=False))
    return runner.invoke(app, list(args))


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "sbt.toml"
    path.write_text(text)
    return str(path)


GOOD = """
[providers.metering]
type = "fakemeter"
api_key = { env = "FAKE_KEY" }
[providers.billing]
type = "greedy"
"""


def test_plugins_list_json_shows_a_broken_plugin_with_its_error_and_keeps_working(fakes: dict[str, Any]) -> None:
    result = _run(fakes, "plugins", "list", "--json", extra={"badsig": BadSignature})
    assert result.exit_code == 0, result.output
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["badsig"]["status"] == "failed"
    assert "bogus" in plugins["badsig"]["error"]
    assert plugins["fakemeter"]["status"] == "loaded"
    assert plugins["fakemeter"]["interfaces"] == ["metering"]
    assert set(plugins["fakemeter"]) == {"name", "value", "distribution", "version", "status", "kind", "interfaces",
                                         "hooks", "error", "builtin"}
    table = _run(fakes, "plugins", "list", extra={"badsig": BadSignature})
    assert table.exit_code == 0 and "badsig" in table.stdout and "failed" in table.stdout


def test_config_validate_prints_every_mistake_and_exits_1(fakes: dict[str, Any], tmp_path: Path) -> None:
    path = _config(tmp_path, """
[server]
port = "eighty"
[providers.metering]
type = "fakemetre"
[[bindings]]
hook = "billing_put_usage"
schedule = "cron(0 12 * * * *)"
""")
    result = _run(fakes, "config", "validate", "--config", path)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "error: server.port: expected an integer, got 'eighty'",
        "error: providers.metering.type: unknown metering provider 'fakemetre'; installed: fakemeter, greedy",
        "error: bindings[0].schedule: 'cron(0 12 * * * *)': exactly one of day-of-month and day-of-week must be '?'",
    ]


def test_config_validate_reports_a_route_clash(fakes: dict[str, Any], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k")
    path = _config(tmp_path, GOOD + '[[bindings]]\nhook = "metering_fetch_usage"\nroute = "GET /meters"\n')
    result = _run(fakes, "config", "validate", "--config", path, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert report["problems"] == ["route GET /meters of metering_fetch_usage clashes with metering_fetch_all_meters"]


def test_config_validate_ok(fakes: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k")
    result = _run(fakes, "config", "validate", "--config", _config(tmp_path, GOOD))
    assert result.exit_code == 0
    first, *selected = result.stdout.strip().splitlines()
    assert first.endswith("sbt.toml: valid")
    assert [line.strip() for line in selected] == ["auth: local (embedded default)", "billing: greedy",
                                                   "metering: fakemeter"]


MISSING_HOOK = """
[providers.billing]
type = "half"
"""


def test_config_validate_refuses_a_provider_without_a_required_hook(fakes: dict[str, Any], tmp_path: Path) -> None:
    """The check `sbt serve` refuses to start on, made before anything runs."""
    result = _run(fakes, "config", "validate", "--config", _config(tmp_path, MISSING_HOOK))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["error: billing provider 'half' does not implement required IBilling "
                                          "hook(s): billing_delete_customer"]
    as_json = json.loads(_run(fakes, "config", "validate", "--json", "--config", str(tmp_path / "sbt.toml")).stdout)
    assert as_json["valid"] is False and "billing_delete_customer" in as_json["problems"][0]


def test_plugins_list_says_what_the_config_selects_and_refuses_a_missing_hook(fakes: dict[str, Any],
                                                                               tmp_path: Path) -> None:
    ok = _run(fakes, "plugins", "list", "--config", _config(tmp_path, '[providers.billing]\ntype = "greedy"\n'))
    assert ok.exit_code == 0, ok.output
    [greedy] = [line for line in ok.stdout.splitlines() if line.startswith("greedy ")]
    assert greedy.split()[:3] == ["greedy", "loaded", "billing"]
    assert f"selected by {tmp_path / 'sbt.toml'}: billing: greedy" in ok.stdout
    bad = _run(fakes, "plugins", "list", "--config", _config(tmp_path, MISSING_HOOK))
    assert bad.exit_code == 1
    assert "error: billing provider 'half' does not implement required IBilling hook(s)" in bad.stderr


def test_plugins_info_shows_a_providers_settings_from_its_settings_class() -> None:
    """Field, type, default and meaning, read from the attrs class and its docstring (the real plugins)."""
    result = CliRunner(env={"COLUMNS": "80"}).invoke(build_app(CliState(entry_points=True)),
                                                     ["plugins", "info", "stripe", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    fields = {f["name"]: f for f in info["settings"]}
    assert fields["api_key"] == {"name": "api_key", "type": "Secret", "default": "required",
                                 "meaning": "Stripe secret key (sk_…/rk_…); a secret reference, never printed."}
    assert fields["timeout_seconds"]["default"] == "30.0"
    assert all(f["meaning"] for f in info["settings"]), [f["name"] for f in info["settings"] if not f["meaning"]]
    table = CliRunner(env={"COLUMNS": "80"}).invoke(build_app(CliState()), ["plugins", "info", "memory"])
    assert table.exit_code == 0 and "horizon_past_days" in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 80
    unknown = _run({}, "plugins", "info", "nope")
    assert unknown.exit_code == 1 and unknown.stderr.startswith("error: no plugin 'nope' (installed: ")


def test_config_show_never_prints_a_secret(fakes: dict[str, Any], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "sk_live_very_secret")
    path = _config(tmp_path, GOOD)
    for args in (["config", "show", "--config", path], ["config", "show", "--config", path, "--json"]):
        result = _run(fakes, *args)
        assert result.exit_code == 0, result.output
        assert "sk_live_very_secret" not in result.output
    shown = json.loads(_run(fakes, "config", "show", "--config", path, "--json").stdout)
    assert shown["providers"]["metering"]["api_key"] == {"env": "FAKE_KEY"}


def test_bindings_json_and_an_override_changes_exactly_that_row(fakes: dict[str, Any], tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "k")
    before = json.loads(_run(fakes, "bindings", "--json", "--config", _config(tmp_path, GOOD)).stdout)
    overridden = GOOD + '[[bindings]]\nhook = "billing_put_usage"\nschedule = "cron(0 3 * * ? *)"\n'
    after = json.loads(_run(fakes, "bindings", "--json", "--config", _config(tmp_path, overridden)).stdout)
    assert [b["hook"] for b in before] == [b["hook"] for b in after]
    diff = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert len(diff) == 1 and diff[0][1] == {
        "hook": "billing_put_usage", "interface": "billing", "provider": "greedy",
        "trigger": {"kind": "schedule", "expression": "cron(0 3 * * ? *)"}, "origin": "config", "enabled": True}
    table = _run(fakes, "bindings", "--config", _config(tmp_path, overridden))
    assert table.exit_code == 0 and "cron(0 3 * * ? *)" in table.stdout


def test_a_missing_config_file_is_one_line_and_exit_1(fakes: dict[str, Any], tmp_path: Path) -> None:
    result = _run(fakes, "bindings", "--config", str(tmp_path / "nope.toml"))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"error: config file '{tmp_path / 'nope.toml'}' not found"]


def test_installed_first_party_providers_are_listed_by_the_real_cli() -> None:
    """The packaging itself: `sbt plugins list --json` of the installed console script."""
    env = {k: v for k, v in os.environ.items() if k not in {"SBT_LOAD_PLUGINS", "SBT_CONFIG"}}
    out = subprocess.run([sys.executable, "-m", "sbt_core.cli", "plugins", "list", "--json"], capture_output=True,
                         text=True, check=True, env=env, cwd=Path(__file__).parent).stdout
    plugins = {p["name"]: p for p in json.loads(out)}
    expected = {"memory": ["metering"], "stripe": ["billing"], "cognito": ["auth"], "local": ["auth"]}
    for name, interfaces in expected.items():
        assert plugins[name]["status"] == "loaded", plugins[name]
        assert plugins[name]["interfaces"] == interfaces
        assert plugins[name]["version"]
    assert plugins["local"]["builtin"] is True
    assert plugins["memory"]["distribution"] == "sbt-memory-metering"


def test_shell_completion_is_offered_and_flags_show_as_flags() -> None:
    app = build_app(CliState(entry_points=False))
    assert "--install-completion" in runner.invoke(app, ["--help"]).stdout
    help_lines = runner.invoke(app, ["events", "list", "--help"]).stdout.splitlines()
    [json_line] = [line for line in help_lines if "--json" in line]
    [limit_line] = [line for line in help_lines if "--limit" in line]
    assert "<bool>" not in json_line and "<int" in limit_line  # a flag takes no value; an option shows its type


def test_token_refuses_an_unknown_scope_listing_the_known_ones(tmp_path: Path) -> None:
    config = _config(tmp_path, f'state_dir = "{tmp_path / "state"}"\n[providers.auth]\ntype = "local"\n')
    result = _run({}, "token", "--scope", "user/user_read nonsense/scope", "--config", config)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == ("error: unknown scope(s) nonsense/scope; known: user/user_read, user/user_write, "
                             "tenant/tenant_read, tenant/tenant_write, meter/meter_read, meter/meter_write, "
                             "usage/usage_read, usage/usage_write, event/event_read, event/event_write\n")
    assert not (tmp_path / "state").exists()  # refused before a key is made
