"""sbt.toml -> validated records: secrets, every problem at once, provider settings, overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest

from sbt_core.config import load_config, show
from sbt_core.errors import ConfigError
from sbt_core.models import Secret
from sbt_core.plugins import discover
from sbt_core.triggers import ScheduleTrigger

from .conftest import FakeMetering


@pytest.fixture
def catalog(fakes: dict[str, Any]):  # type: ignore[no-untyped-def]
    return discover(entry_points=False, builtins=False, extra=fakes)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sbt.toml"
    path.write_text(text)
    return path


def test_no_config_file_is_the_embedded_default() -> None:
    catalog = discover(entry_points=False, builtins=False, extra={"local": object, "memory": object})
    with pytest.raises(ConfigError) as info:
        load_config(catalog, None)
    # Without real local/memory providers the default names them, proving what it selects.
    assert any("providers.auth.type" in p and "'local'" in p for p in info.value.problems)
    assert any("providers.metering.type" in p and "'memory'" in p for p in info.value.problems)
    assert not any("billing" in p for p in info.value.problems)


def test_secret_references_resolve_from_env_and_file(catalog: Any, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "sk_live_from_env")
    (tmp_path / "region.txt").write_text("ap-south-1\n")
    config = load_config(catalog, _write(tmp_path, """
[providers.metering]
type = "fakemeter"
api_key = { env = "FAKE_KEY" }
region = { file = "region.txt" }
"""))
    settings = config.providers["metering"].settings
    assert isinstance(settings.api_key, Secret)
    assert settings.api_key.get_secret_value() == "sk_live_from_env"
    assert "sk_live" not in repr(settings)
    assert settings.region == "ap-south-1"


def test_show_never_prints_a_secret(catalog: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "sk_live_from_env")
    config = load_config(catalog, _write(tmp_path, """
[providers.metering]
type = "fakemeter"
api_key = { env = "FAKE_KEY" }
[providers.billing]
type = "greedy"
[tenants]
database_url = "postgresql://user:hunter2@db/sbt"
"""))
    shown = repr(show(config, catalog))
    assert "sk_live" not in shown and "hunter2" not in shown
    assert "{'env': 'FAKE_KEY'}" in shown
    literal = load_config(catalog, _write(tmp_path,
                                          '[providers.metering]\ntype = "fakemeter"\napi_key = "sk_literal"\n'))
    assert "sk_literal" not in repr(show(literal, catalog))


def test_every_problem_is_reported_at_once_with_dotted_paths(catalog: Any, tmp_path: Path) -> None:
    path = _write(tmp_path, """
state_dir = 7
[server]
port = "eighty"
colour = "blue"
[providers.metering]
type = "fakemetre"
[providers.billing]
type = "greedy"
flavour = 1
[providers.auth]
[providers.payments]
type = "x"
[[bindings]]
hook = "billing_put_usage"
schedule = "rate(1 hours)"
[[bindings]]
hook = "billing_push_usage"
[[bindings]]
hook = "billing_create_customer"
event = "x"
route = "POST /x"
[[bindings]]
hook = "billing_webhook"
schedule = "rate(1 hour)"
[tenats]
""")
    with pytest.raises(ConfigError) as info:
        load_config(catalog, path)
    assert set(info.value.problems) == {
        "tenats: unknown section (did you mean tenants?)",
        "server.port: expected an integer, got 'eighty'",
        "server: unknown key(s) colour; valid keys: host, port, max_body_bytes, metrics, log_format",
        "state_dir: must be a path string",
        "providers.metering.type: unknown metering provider 'fakemetre'; installed: fakemeter, greedy",
        "providers.billing: unknown key(s) flavour; this table takes no keys",
        "providers.auth.type: required: name the auth provider (installed: fakeauth), or \"none\"",
        "providers.payments: unknown interface; valid: auth, billing, metering",
        "bindings[0].schedule: 'rate(1 hours)': write rate(1 hour)",
        "bindings[1].hook: unknown hook 'billing_push_usage' (did you mean billing_put_usage?)",
        "bindings[2]: two triggers (event and route); a binding takes exactly one",
        "bindings[3].schedule: this hook is triggered by routes; it cannot be bound to a schedule",
    }


def test_out_of_range_and_unknown_choice_values_name_their_key_and_the_valid_choices(catalog: Any) -> None:
    raw = {"server": {"port": 70000}, "providers": {"auth": {"type": "fakeauth"}},
           "events": {"naming": "sbt-aws", "max_attempts": 0, "dead_letters": "disk", "log_size": 10,
                      "transport": "memory"}}
    with pytest.raises(ConfigError) as info:
        load_config(catalog, None, raw=raw)
    assert set(info.value.problems) == {
        "server.port: must be <= 65535 (got 70000)",
        "events.naming: must be one of 'sbt', 'sbt_aws' (got 'sbt-aws')",
        "events.max_attempts: must be >= 1 (got 0)",
        "events.dead_letters: must be one of 'sqlite', 'memory' (got 'disk')",
        "events.transport: must be one of 'sqlite', 'inprocess', 'nats' (got 'memory')",
    }


def _no_spaces(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    # Worded as a third party writes it: the field's name in the message, a plain ValueError.
    if " " in value:
        raise ValueError(f"{attribute.name} {value!r} has a space")


@attrs.frozen
class _WindowSettings:
    horizon_past_days: float = attrs.field(default=35.0, validator=attrs.validators.gt(0))
    dedup_window_days: float = attrs.field(default=32.0, validator=attrs.validators.gt(0))
    label: str = attrs.field(default="calls", validator=_no_spaces)


class _WindowMetering(FakeMetering):
    settings_class = _WindowSettings


def test_every_validator_error_of_a_core_section_or_a_provider_is_reported_at_once_under_its_dotted_key(
        fakes: dict[str, Any], tmp_path: Path) -> None:
    catalog = discover(entry_points=False, builtins=False, extra={**fakes, "window": _WindowMetering})
    with pytest.raises(ConfigError) as info:
        load_config(catalog, _write(tmp_path, """
[events]
max_attempts = 0
log_size = 0
[providers.metering]
type = "window"
horizon_past_days = 0
dedup_window_days = 0
label = "api calls"
"""))
    assert info.value.problems == (
        "events.max_attempts: must be >= 1 (got 0)",
        "events.log_size: must be >= 1 (got 0)",
        "providers.metering.horizon_past_days: must be > 0 (got 0.0)",
        "providers.metering.dedup_window_days: must be > 0 (got 0.0)",
        "providers.metering.label: label 'api calls' has a space",
    )


def test_a_provider_that_does_not_implement_the_interface_is_refused(catalog: Any) -> None:
    with pytest.raises(ConfigError, match="'fakeauth' does not implement IBilling"):
        load_config(catalog, None, raw={"providers": {"billing": {"type": "fakeauth"}}})


def test_a_missing_env_secret_names_the_variable(catalog: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_KEY", raising=False)
    with pytest.raises(ConfigError, match="providers.metering.api_key: environment variable NOPE_KEY is not set"):
        load_config(catalog, None, raw={"providers": {"metering": {"type": "fakemeter",
                                                                   "api_key": {"env": "NOPE_KEY"}}}})


def test_an_override_of_a_hook_the_provider_lacks_is_refused(catalog: Any) -> None:
    with pytest.raises(ConfigError, match="billing_ingest is not implemented by the billing provider 'greedy'"):
        load_config(catalog, None, raw={"providers": {"billing": {"type": "greedy"}},
                                        "bindings": [{"hook": "billing_ingest", "event": "usage"}]})


def test_a_valid_override_parses_its_trigger(catalog: Any) -> None:
    config = load_config(catalog, None, raw={"providers": {"billing": {"type": "greedy"}},
                                             "bindings": [{"hook": "billing_put_usage", "schedule": "rate(1 hour)"}]})
    (override,) = config.bindings
    assert isinstance(override.trigger, ScheduleTrigger)
    assert override.trigger.expression == "rate(1 hour)"


def test_unreadable_toml_is_one_clear_problem(catalog: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(catalog, _write(tmp_path, "[server\nport=1"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(catalog, tmp_path / "missing.toml")
