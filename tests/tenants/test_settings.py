"""``[tenants]`` validation and where the registry opens its database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sbt_core.cli import CliState, build_app
from sbt_core.config import load_config
from sbt_core.errors import ConfigError
from sbt_core.plugins import discover
from sbt_core.tenants import TenantsSettings, load_settings, open_registry


def config(tenants: object, tmp_path: Path):  # type: ignore[no-untyped-def]
    catalog = discover(entry_points=False)
    return load_config(catalog, None, raw={"state_dir": str(tmp_path), "providers": {"auth": {"type": "local"}},
                                           "tenants": tenants})


def test_default_is_sqlite_under_the_state_directory(tmp_path: Path) -> None:
    cfg = config({}, tmp_path)
    settings = load_settings(cfg)
    assert settings == TenantsSettings()
    assert settings.url(cfg.state_dir).database == str(tmp_path / "tenants.sqlite3")
    registry = open_registry(cfg)
    registry.start()
    assert (tmp_path / "tenants.sqlite3").is_file()
    registry.close()


def test_database_url_from_an_env_reference_gets_the_psycopg_driver(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SBT_TEST_TENANTS_DB", "postgresql://sbt:s3cret@127.0.0.1:5432/sbt")
    cfg = config({"database_url": {"env": "SBT_TEST_TENANTS_DB"}, "idempotency_ttl_hours": 2}, tmp_path)
    settings = load_settings(cfg)
    url = settings.url(cfg.state_dir)
    assert url.drivername == "postgresql+psycopg" and url.password == "s3cret"
    assert settings.idempotency_ttl_hours == 2.0
    assert "s3cret" not in repr(settings)


def test_every_problem_is_reported_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(config({"database_url": "mysql://x@y/z", "idempotency_ttl_hours": "soon", "pool": 3}, tmp_path))
    problems = info.value.problems
    assert any(p.startswith("tenants.pool: unknown key") for p in problems)
    assert any(p.startswith("tenants.database_url: unsupported database 'mysql'") for p in problems)
    assert any(p.startswith("tenants.idempotency_ttl_hours:") for p in problems)
    for url, message in [("not a url", "not a database URL"), ("postgresql+asyncpg://h/db", "psycopg 3"),
                         (42, "expected a URL string")]:
        with pytest.raises(ConfigError, match=message):
            load_settings(config({"database_url": url}, tmp_path))


def test_config_show_never_prints_the_database_password(tmp_path: Path) -> None:
    path = tmp_path / "sbt.toml"
    path.write_text('[providers.auth]\ntype = "local"\n[tenants]\n'
                    'database_url = "postgresql+psycopg://sbt:hunter2@127.0.0.1:5432/sbt"\n')
    result = CliRunner().invoke(build_app(CliState(entry_points=False)), ["config", "show", "--json", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.stdout
    assert "tenants" in json.loads(result.stdout)


def test_config_validate_reports_tenants_problems(tmp_path: Path) -> None:
    path = tmp_path / "sbt.toml"
    path.write_text('[providers.auth]\ntype = "local"\n[tenants]\ndatabase_url = "mysql://x@y/z"\nsize = 1\n')
    result = CliRunner().invoke(build_app(CliState(entry_points=False)),
                                ["config", "validate", "--json", "-c", str(path)])
    assert result.exit_code == 1
    problems = json.loads(result.stdout)["problems"]
    assert any(p.startswith("tenants.database_url: unsupported database 'mysql'") for p in problems)
    assert any(p.startswith("tenants.size: unknown key") for p in problems)


def test_unreachable_database_is_a_startup_error_without_the_password(tmp_path: Path) -> None:
    import socket

    from sbt_core.errors import StartupError
    from sbt_core.tenants import TenantService, TenantStore

    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    service = TenantService(TenantStore(f"postgresql+psycopg://sbt:hunter2@127.0.0.1:{port}/sbt"))
    with pytest.raises(StartupError) as info:
        service.start()
    assert "cannot open postgresql+psycopg://sbt:***@127.0.0.1" in info.value.message
    assert "hunter2" not in info.value.message
