"""``sbt config validate`` warns about configurations that cannot be right on several processes: a config
that shares the tenant registry or a provider's store through a database server, yet keeps other state
in each process's own state directory."""

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
