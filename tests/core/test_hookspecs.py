"""The contract: every hookspec documented, mirroring an SBT property, with a default trigger in code."""

from __future__ import annotations

import inspect
import re
import typing

import pytest

from sbt_core.hookspecs import BATCH_FORMS, CONTRACT, SBT_INTERFACES, SPEC_MODULES, hooks_of
from sbt_core.plugins import AuthFacade, BillingFacade, MeteringFacade, new_plugin_manager
from sbt_core.triggers import EventTrigger, RouteTrigger, ScheduleTrigger, StartupTrigger

# docs/design.md section 2's contract, retyped here on purpose: the test pins the table, the code derives from CONTRACT.
DESIGN_TABLE = {
    "auth_settings": (True, "startup"),
    "auth_create_admin_user": (True, "startup"),
    "auth_create_user": (True, "POST /users user/user_write"),
    "auth_fetch_all_users": (True, "GET /users user/user_read"),
    "auth_fetch_user": (True, "GET /users/{userId} user/user_read"),
    "auth_update_user": (True, "PUT /users/{userId} user/user_write"),
    "auth_delete_user": (True, "DELETE /users/{userId} user/user_write"),
    "auth_disable_user": (True, "PUT /users/{userId}/disable user/user_write"),
    "auth_enable_user": (True, "PUT /users/{userId}/enable user/user_write"),
    "billing_create_customer": (True, "event onboardingRequest"),
    "billing_delete_customer": (True, "event offboardingRequest"),
    "billing_create_user": (False, "event tenantUserCreated"),
    "billing_delete_user": (False, "event tenantUserDeleted"),
    "billing_ingest": (False, "event ingestUsage"),
    "billing_put_usage": (False, "schedule rate(24 hours)"),
    "billing_webhook": (False, "POST /billing/{path} none"),
    "metering_create_meter": (True, "POST /meters meter/meter_write"),
    "metering_fetch_meter": (True, "GET /meters/{meterId} meter/meter_read"),
    "metering_fetch_all_meters": (True, "GET /meters meter/meter_read"),
    "metering_update_meter": (False, "PUT /meters/{meterId} meter/meter_write"),
    "metering_delete_meter": (False, "DELETE /meters/{meterId} meter/meter_write"),
    "metering_ingest_usage_event": (True, "event ingestUsage"),
    "metering_fetch_usage": (True, "GET /usage/{meterId} usage/usage_read"),
    "metering_cancel_usage_events": (False, "DELETE /usage usage/usage_write"),
    "metering_create_customer": (False, "event onboardingRequest"),
    "metering_delete_customer": (False, "event offboardingRequest"),
}


def _describe(trigger: object) -> str:
    if isinstance(trigger, StartupTrigger):
        return "startup"
    if isinstance(trigger, EventTrigger):
        return f"event {trigger.detail_type}"
    if isinstance(trigger, ScheduleTrigger):
        return f"schedule {trigger.expression}"
    assert isinstance(trigger, RouteTrigger)
    return f"{trigger.method} {trigger.path} {trigger.scope or trigger.authorizer.value}"


def test_contract_is_exactly_the_design_table() -> None:
    assert {name: (row.required, _describe(row.default_trigger)) for name, row in CONTRACT.items()} == DESIGN_TABLE


@pytest.mark.parametrize("hook", sorted(CONTRACT))
def test_every_hookspec_is_documented_and_names_its_sbt_property(hook: str) -> None:
    pm = new_plugin_manager()
    caller = getattr(pm.hook, hook)
    assert caller.spec is not None, f"{hook} has a contract row but no hookspec"
    doc = inspect.getdoc(caller.spec.function) or ""
    row = CONTRACT[hook]
    interface = SBT_INTERFACES[row.interface]
    assert row.sbt_property.startswith(interface), row.sbt_property
    assert "Mirrors " + interface in doc, f"{hook}: docstring must say which {interface} property it mirrors"
    assert "Default trigger" in doc, f"{hook}: docstring must state its default trigger"
    # Every SBT name in the row (e.g. IMetering.fetchUsageFunction) appears in the docstring.
    for name in re.findall(r"\b[a-z][A-Za-z]+(?:Function)?\b", row.sbt_property.split(".", 1)[-1]):
        if name not in {"read", "at", "start", "up"}:
            assert name in doc, f"{hook}: docstring does not name {name}"


@pytest.mark.parametrize("hook", sorted(CONTRACT))
def test_hook_name_is_interface_and_sbt_property_in_snake_case(hook: str) -> None:
    row = CONTRACT[hook]
    assert hook.startswith(row.interface + "_")
    prop = row.sbt_property.split(".", 1)[-1].split(",")[0].removesuffix("Function")
    if "." in row.sbt_property and prop not in {"ingestor"}:
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", prop).lower()
        assert hook == f"{row.interface}_{snake}"


@pytest.mark.parametrize("hook", sorted(CONTRACT.keys() | BATCH_FORMS.keys()))
def test_the_contract_decorator_makes_each_interface_hook_a_firstresult_hookspec(hook: str) -> None:
    # One declaration per hook: @contract / @batch_of apply the hookspec; only the selected provider answers.
    spec = getattr(new_plugin_manager().hook, hook).spec
    assert spec is not None and spec.opts["firstresult"] is True


def test_every_hookspec_module_spec_has_a_contract_row_or_is_lifecycle() -> None:
    specs = {name for module in SPEC_MODULES for name, _ in inspect.getmembers(module, inspect.isfunction)
             if hasattr(getattr(module, name), "sbt_spec")}
    assert specs - set(CONTRACT) - set(BATCH_FORMS) == {"sbt_startup", "sbt_shutdown", "sbt_register_commands",
                                                           "sbt_register_routes"}


@pytest.mark.parametrize("batch", sorted(BATCH_FORMS))
def test_a_batch_form_mirrors_its_single_hook(batch: str) -> None:
    form = BATCH_FORMS[batch]
    single = CONTRACT[form.single]
    assert single.batch_hook == batch and batch not in CONTRACT  # served through the single hook's binding
    pm = new_plugin_manager()
    spec = getattr(pm.hook, batch).spec.function
    single_spec = getattr(pm.hook, form.single).spec.function
    assert list(inspect.signature(spec).parameters) == [form.argument]
    assert form.argument == next(iter(inspect.signature(single_spec).parameters)) + "s"
    assert f"Mirrors {single.sbt_property}" in (inspect.getdoc(spec) or "")


@pytest.mark.parametrize(("facade", "interface"), [(AuthFacade, "auth"), (BillingFacade, "billing"),
                                                   (MeteringFacade, "metering")])
def test_typed_facade_covers_every_hook_of_its_interface(facade: type, interface: str) -> None:
    methods = {name for name, _ in inspect.getmembers(facade, inspect.isfunction)
               if not name.startswith("_") and name != "implements"}
    hooks = {row.name for row in hooks_of(interface)} | {  # type: ignore[arg-type]
        b for b, form in BATCH_FORMS.items() if CONTRACT[form.single].interface == interface}
    assert {f"{interface}_{m}" for m in methods} == hooks
    for hook in hooks:
        spec = getattr(new_plugin_manager().hook, hook).spec.function
        method = getattr(facade, hook.removeprefix(interface + "_"))
        spec_args = set(inspect.signature(spec).parameters)
        method_args = set(inspect.signature(method).parameters)
        assert method_args - {"self"} == spec_args, hook
        # The facades are written out for the type checker (a generated class would type as Any), so the
        # test holds them to the contract: same arguments in the same order, same annotations and result.
        assert [a for a in inspect.signature(method).parameters if a != "self"] == list(
            inspect.signature(spec).parameters), hook
        assert typing.get_type_hints(method) == typing.get_type_hints(spec), hook
