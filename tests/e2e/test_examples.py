"""examples/*.toml stay true: local.toml is the embedded default spelled out; production.toml validates
with its secrets from the environment and never prints them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sbt_core.config import load_config, show
from sbt_core.plugins import discover

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION_ENV = {
    "SBT_ADMIN_EMAIL": "ops@acme.test", "AWS_REGION": "eu-west-1", "SBT_COGNITO_USER_POOL_ID": "eu-west-1_AbCdEf123",
    "SBT_COGNITO_USER_CLIENT_ID": "4user5client6id7", "SBT_COGNITO_MACHINE_CLIENT_ID": "8machine9client0id",
    "SBT_COGNITO_MACHINE_CLIENT_SECRET": "cognito-secret-value", "SBT_COGNITO_DOMAIN": "acme-sbt",
    "STRIPE_API_KEY": "sk_live_secret_value", "STRIPE_WEBHOOK_SECRET": "whsec_secret_value",
    "SBT_TENANTS_DATABASE_URL": "postgresql+psycopg://sbt:db-password@db.internal/sbt",
    "SBT_METERING_DATABASE_URL": "postgresql://sbt:metering-password@db.internal/sbt",
}


def test_local_toml_is_the_embedded_default_spelled_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    catalog = discover()
    spelled = show(load_config(catalog, ROOT / "examples" / "local.toml"), catalog)
    default = show(load_config(catalog, None), catalog)
    for table in ("server", "admin", "providers", "events"):
        assert spelled[table] == default[table], table
    # The default's ".sbt" is relative to where sbt runs; a config file's paths are relative to the file.
    assert (default["state_dir"], spelled["state_dir"]) == (".sbt", str(ROOT / "examples" / ".sbt"))


def test_production_toml_validates_and_never_prints_its_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PRODUCTION_ENV.items():
        monkeypatch.setenv(name, value)
    catalog = discover()
    config = load_config(catalog, ROOT / "examples" / "production.toml")
    assert {i: s.type for i, s in config.providers.items()} == {"auth": "cognito", "billing": "stripe",
                                                                 "metering": "sql"}
    printed = json.dumps(show(config, catalog))
    for secret in ("cognito-secret-value", "sk_live_secret_value", "whsec_secret_value", "db-password",
                   "metering-password"):
        assert secret not in printed
