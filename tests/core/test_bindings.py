"""The binding table: derived from the contract and the selected providers, overrides change one row."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sbt_core.bindings import build_binding_table
from sbt_core.config import load_config
from sbt_core.errors import StartupError
from sbt_core.plugins import discover

SELECT = {"metering": {"type": "fakemeter"}, "billing": {"type": "greedy"}, "auth": {"type": "fakeauth"}}


@pytest.fixture
def catalog(fakes: dict[str, Any]):  # type: ignore[no-untyped-def]
    return discover(entry_points=False, builtins=False, extra=fakes)


def _table(catalog: Any, bindings: list[dict[str, Any]] | None = None):  # type: ignore[no-untyped-def]
    return build_binding_table(catalog, load_config(catalog, None, raw={"providers": SELECT,
                                                                        "bindings": bindings or []}))


def test_bindings_list_every_implemented_hook_of_the_selected_providers(catalog: Any) -> None:
    rows = {b.hook: b for b in _table(catalog)}
    # GreedyBilling implements metering hooks too, but it is not the metering provider.
    assert rows["metering_fetch_meter"].provider == "fakemeter"
    assert "metering_delete_meter" not in rows  # nobody selected implements it
    assert rows["billing_put_usage"].trigger.describe() == "schedule rate(24 hours)"
    assert rows["billing_webhook"].trigger.describe() == "POST /billing/{path} (no JWT)"
    assert {b.origin for b in rows.values()} == {"default"}
    assert len(rows) == 9 + 4 + 5  # auth, billing (greedy), metering (fakemeter)


def test_an_override_changes_exactly_that_row(catalog: Any) -> None:
    before = _table(catalog).to_json()
    after = _table(catalog, [{"hook": "billing_put_usage", "schedule": "rate(1 hour)"}]).to_json()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert len(changed) == 1
    old, new = changed[0]
    assert old["trigger"] == {"kind": "schedule", "expression": "rate(24 hours)"} and old["origin"] == "default"
    assert new["trigger"] == {"kind": "schedule", "expression": "rate(1 hour)"} and new["origin"] == "config"


def test_scope_only_override_keeps_the_route(catalog: Any) -> None:
    row = _table(catalog, [{"hook": "metering_fetch_usage", "scope": "usage/read"}]).get("metering_fetch_usage")
    assert row.trigger.describe() == "GET /usage/{meterId} [usage/read]"  # type: ignore[union-attr]


def test_a_disabled_binding_stays_listed_but_is_not_served(catalog: Any) -> None:
    table = _table(catalog, [{"hook": "billing_webhook", "enabled": False}])
    assert table.get("billing_webhook").enabled is False  # type: ignore[union-attr]
    assert "billing_webhook" not in {b.hook for b in table.routes()}


@pytest.mark.parametrize(("route", "clash"), [
    ("GET /meters", "clashes with metering_fetch_all_meters"),
    ("GET /meters/{id}", "clashes with metering_fetch_meter"),
    ("POST /events", "clashes with core route POST /events"),
    ("GET /tenants/{x}", "clashes with core route GET /tenants/{tenantId}"),
])
def test_route_clashes_are_startup_errors_naming_both(catalog: Any, route: str, clash: str) -> None:
    with pytest.raises(StartupError, match=f"route {route} of metering_fetch_usage {clash}".replace("{", r"\{")
                       .replace("}", r"\}")):
        _table(catalog, [{"hook": "metering_fetch_usage", "route": route}])


def test_the_json_of_each_trigger_kind_is_sbt_bindings_json_shape(catalog: Any) -> None:
    # The bytes of ``sbt bindings --json`` (keys in this order): the converter's camelCase fields, the
    # trigger led by its kind, a schedule without its parsed spec.
    rows = {b["hook"]: b for b in _table(catalog).to_json()}
    expected = {
        "auth_settings": {"kind": "startup"},
        "billing_create_customer": {"kind": "event", "detailType": "onboardingRequest",
                                    "source": "sbt.control.plane"},
        "billing_put_usage": {"kind": "schedule", "expression": "rate(24 hours)"},
        "billing_webhook": {"kind": "route", "method": "POST", "path": "/billing/{path}", "scope": None,
                            "authorizer": "none"},
    }
    for hook, trigger in expected.items():
        row = rows[hook]
        assert list(row) == ["hook", "interface", "provider", "trigger", "origin", "enabled"]
        assert list(row["trigger"].items()) == list(trigger.items()), hook
    assert json.dumps(rows["metering_fetch_meter"]) == (
        '{"hook": "metering_fetch_meter", "interface": "metering", "provider": "fakemeter", "trigger": '
        '{"kind": "route", "method": "GET", "path": "/meters/{meterId}", "scope": "meter/meter_read", '
        '"authorizer": "jwt"}, "origin": "default", "enabled": true}')
