"""``sbt config validate`` warns about what a valid config most likely did not mean: no auth, a secret in
plain text, a local fake behind a public host (intent); and configurations that cannot be right on several
processes: a config that shares the tenant registry or a provider's store through a database server, yet
keeps other state in each process's own state directory (deployment)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
from typer.testing import CliRunner

from sbt_core import Provider
from sbt_core.cli import CliState, build_app
from sbt_core.models import Secret
from sbt_core.testing import RecordingBilling, RecordingMetering

runner = CliRunner(env={"COLUMNS": "200"})
PG = "postgresql://sbt@db.internal/sbt"


@attrs.frozen
class StoreSettings:
    database_url: Secret | None = None


class StoredBilling(RecordingBilling):
    """A billing provider with a ``database_url`` setting, as ``stripe`` has."""

    settings_class = StoreSettings


class SharedMetering(RecordingMetering):
    """Stands for ``sql`` metering (one class may be registered under one name only)."""


PLUGINS: dict[str, type[Provider]] = {"memory": RecordingMetering, "sql": SharedMetering, "store": StoredBilling}


def validate(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "sbt.toml"
    path.write_text(text)
    app = build_app(CliState(extra=PLUGINS, entry_points=False))
    return runner.invoke(app, ["config", "validate", "--config", str(path), "--json"])


def test_one_process_configs_get_no_warning(tmp_path: Path) -> None:
    result = validate(tmp_path, '[providers.metering]\ntype = "memory"\n[providers.billing]\ntype = "store"\n')
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["warnings"] == []


def test_a_shared_tenant_database_flags_every_per_process_piece(tmp_path: Path) -> None:
    result = validate(tmp_path, f'[tenants]\ndatabase_url = "{PG}"\n[providers.metering]\ntype = "memory"\n'
                                '[providers.billing]\ntype = "store"\n[providers.auth]\ntype = "local"\n')
    assert result.exit_code == 0, result.output  # advice, not an error
    warnings = json.loads(result.stdout)["warnings"]
    assert [w.split(":")[0] for w in warnings] == ["providers.metering", "providers.auth",
                                                   "providers.billing.database_url"]
    assert "use type = \"sql\"" in warnings[0] and "signing_key" in warnings[1]


def test_a_fully_shared_config_is_quiet(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("not read by validate")
    result = validate(tmp_path, f'[tenants]\ndatabase_url = "{PG}"\n[providers.metering]\ntype = "sql"\n'
                                f'[providers.billing]\ntype = "store"\ndatabase_url = "{PG}"\n'
                                f'[providers.auth]\ntype = "local"\nsigning_key = {{ file = "{key}" }}\n')
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["warnings"] == []


def test_a_shared_provider_store_flags_a_per_directory_registry(tmp_path: Path) -> None:
    app = build_app(CliState(extra=PLUGINS, entry_points=False))
    path = tmp_path / "sbt.toml"
    path.write_text(f'[providers.metering]\ntype = "sql"\n[providers.billing]\ntype = "store"\ndatabase_url = "{PG}"\n'
                    '[providers.auth]\ntype = "local"\n')
    result = runner.invoke(app, ["config", "validate", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert "warning: tenants.database_url:" in result.stderr
    assert "valid (2 warning(s))" in result.stdout  # the registry and the local auth key


def test_the_bus_on_nats_is_a_deployment_of_several_processes(tmp_path: Path) -> None:
    result = validate(tmp_path, '[events]\ntransport = "nats"\nurl = "nats://127.0.0.1:4222"\n'
                                '[providers.metering]\ntype = "memory"\n[providers.auth]\ntype = "local"\n')
    assert result.exit_code == 0, result.output
    assert [w.split(":")[0] for w in json.loads(result.stdout)["warnings"]] == [
        "providers.metering", "providers.auth", "tenants.database_url", "events.database_url"]


@attrs.frozen
class FakeApiSettings:
    api_key: Secret | None = None
    api_base: str = "https://api.example.test"


class FakeApiBilling(RecordingBilling):
    """A billing provider with an API key and a base URL, as ``stripe`` has."""

    settings_class = FakeApiSettings


def advice(tmp_path: Path, text: str, **env: str) -> list[str]:
    path = tmp_path / "sbt.toml"
    path.write_text(text)
    app = build_app(CliState(extra={**PLUGINS, "api": FakeApiBilling}, entry_points=False))
    result = runner.invoke(app, ["config", "validate", "--config", str(path), "--json"], env=env)
    assert result.exit_code == 0, result.output
    return list(json.loads(result.stdout)["warnings"])


def test_a_config_without_an_auth_table_runs_local_auth_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "sbt.toml"
    path.write_text('[providers.billing]\ntype = "store"\n')
    app = build_app(CliState(extra=PLUGINS, entry_points=False))
    validated = runner.invoke(app, ["config", "validate", "--config", str(path)])
    assert validated.exit_code == 0, validated.output
    assert "auth: local (embedded default)" in validated.stdout
    assert "metering: memory (embedded default)" in validated.stdout
    shown = runner.invoke(app, ["config", "show", "--config", str(path), "--json"])
    data = json.loads(shown.stdout)
    assert data["selection"] == ("providers: auth local (embedded default), billing store, "
                                 "metering memory (embedded default)")
    assert data["providers"]["auth"]["type"] == "local"


def test_closing_the_api_on_purpose_is_said_not_warned_as_a_mistake(tmp_path: Path) -> None:
    warnings = advice(tmp_path, '[providers.auth]\ntype = "none"\n')
    assert warnings == ['providers.auth: type = "none": the API is closed on purpose; every route except the '
                        "public ones (/health, /tenant-config, webhooks) answers 401"]
    path = tmp_path / "sbt.toml"
    app = build_app(CliState(extra=PLUGINS, entry_points=False))
    shown = json.loads(runner.invoke(app, ["config", "show", "--config", str(path), "--json"]).stdout)
    assert shown["selection"].startswith('providers: auth none (type = "none"), billing none')


def test_no_auth_because_the_default_is_disabled_is_a_warning(tmp_path: Path) -> None:
    (warning,) = advice(tmp_path, '[plugins]\ndisabled = ["local"]\n')
    assert warning.startswith("providers.auth: no auth provider") and 'type = "none"' in warning


def test_none_takes_no_settings(tmp_path: Path) -> None:
    path = tmp_path / "sbt.toml"
    path.write_text('[providers.auth]\ntype = "none"\nissuer = "x"\n')
    app = build_app(CliState(extra=PLUGINS, entry_points=False))
    result = runner.invoke(app, ["config", "validate", "--config", str(path)])
    assert result.exit_code == 1
    assert 'providers.auth: type = "none" selects no auth provider; it takes no settings' in result.output


def test_a_secret_in_plain_text_is_flagged_and_a_reference_is_not(tmp_path: Path) -> None:
    assert advice(tmp_path, '[providers.billing]\ntype = "api"\napi_key = "sk_live_123"\n') == [
        'providers.billing.api_key: a secret written as plain text in the config file; use '
        'api_key = { env = "NAME" } or { file = "path" }']
    assert advice(tmp_path, '[providers.billing]\ntype = "api"\napi_key = { env = "API_KEY" }\n',
                  API_KEY="sk_live_123") == []
    # A database URL without a password names a place, not a credential.
    assert advice(tmp_path, f'[providers.billing]\ntype = "store"\ndatabase_url = "{PG}"\n') != []  # deployment
    assert not any("plain text" in w for w in advice(
        tmp_path, f'[providers.billing]\ntype = "store"\ndatabase_url = "{PG}"\n'))
    assert any("plain text" in w for w in advice(
        tmp_path, '[providers.billing]\ntype = "store"\ndatabase_url = "postgresql://sbt:pw@db/sbt"\n'))


def test_a_loopback_fake_behind_a_public_host_is_flagged(tmp_path: Path) -> None:
    fake = '[providers.billing]\ntype = "api"\napi_base = "http://127.0.0.1:8420"\n'
    assert advice(tmp_path, fake) == []  # both on this machine: a laptop with localstripe
    assert advice(tmp_path, fake + '[server]\nhost = "0.0.0.0"\n') == [
        "providers.billing.api_base: http://127.0.0.1:8420 reaches 127.0.0.1, this machine only (a local fake?), "
        "while [server] host = '0.0.0.0' serves other machines"]
    assert advice(tmp_path, '[providers.billing]\ntype = "api"\napi_base = "http://localhost:8420"\n'
                            '[server]\nhost = "10.0.0.5"\n') != []
