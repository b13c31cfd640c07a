"""Plugin loading, selection and the typed facade."""

from __future__ import annotations

from importlib import metadata
from typing import Any

import pytest

from sbt_core import hookimpl
from sbt_core.config import load_config
from sbt_core.errors import NotImplementedHookError, PluginError, ProviderError, StartupError
from sbt_core.models import Event, MeterCreate
from sbt_core.plugins import Kind, Status, _loader, build_providers, discover

from .conftest import AuditWrapper, BadSignature, FakeMetering, Misspelt


class _Dist:
    def __init__(self, name: str, version: str) -> None:
        self.name, self.version = name, version


def _entry_points(monkeypatch: pytest.MonkeyPatch, *points: tuple[str, str, str]) -> None:
    """Pretend these (name, value, distribution) entry points of group sbt are installed."""
    eps = []
    for name, value, dist in points:
        ep = metadata.EntryPoint(name=name, value=value, group="sbt")
        eps.append(ep._for(_Dist(dist, "9.9.9")))  # type: ignore[attr-defined]
    monkeypatch.setattr(_loader.metadata, "entry_points",
                        lambda group: [e for e in eps if group == "sbt"])


def test_entry_points_are_loaded_with_distribution_version_and_interfaces(monkeypatch: pytest.MonkeyPatch) -> None:
    _entry_points(monkeypatch, ("fakemeter", "tests.core.conftest:FakeMetering", "sbt-fake"))
    catalog = discover(builtins=False)
    record = catalog.get("fakemeter")
    assert record is not None
    assert (record.status, record.kind, record.interfaces) == (Status.LOADED, Kind.PROVIDER, ("metering",))
    assert (record.distribution, record.version) == ("sbt-fake", "9.9.9")
    assert "metering_fetch_usage" in record.hooks


def test_a_broken_plugin_is_listed_failed_and_the_others_still_load(monkeypatch: pytest.MonkeyPatch) -> None:
    _entry_points(monkeypatch,
                  ("missing", "no_such_module_anywhere:Thing", "sbt-missing"),
                  ("boom", "tests.core.conftest:DoesNotExist", "sbt-boom"),
                  ("fakemeter", "tests.core.conftest:FakeMetering", "sbt-fake"))
    catalog = discover(builtins=False, extra={"badsig": BadSignature, "misspelt": Misspelt})
    assert catalog.get("fakemeter").status is Status.LOADED  # type: ignore[union-attr]
    failed = {r.name: r.error for r in catalog.records.values() if r.status is Status.FAILED}
    assert set(failed) == {"missing", "boom", "badsig", "misspelt"}
    assert "ModuleNotFoundError" in failed["missing"]
    assert "AttributeError" in failed["boom"]
    assert "bogus" in failed["badsig"]
    assert "metering_fetch_metre (did you mean metering_fetch_meter?)" in failed["misspelt"]
    catalog.check_pending()  # nothing half-registered is left behind


def test_strict_mode_makes_the_first_failure_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SBT_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="plugin 'badsig'"):
        discover(entry_points=False, builtins=False, extra={"badsig": BadSignature})


def test_allow_list_and_disabled_list(monkeypatch: pytest.MonkeyPatch) -> None:
    _entry_points(monkeypatch, ("fakemeter", "tests.core.conftest:FakeMetering", "sbt-fake"),
                  ("greedy", "tests.core.conftest:GreedyBilling", "sbt-greedy"))
    monkeypatch.setenv("SBT_LOAD_PLUGINS", "greedy")
    catalog = discover(builtins=False)
    assert set(catalog.records) == {"greedy"}
    monkeypatch.setenv("SBT_LOAD_PLUGINS", "")
    assert discover(builtins=False).records == {}
    monkeypatch.delenv("SBT_LOAD_PLUGINS")
    catalog = discover(builtins=False, disabled=["greedy"])
    assert catalog.get("greedy").status is Status.DISABLED  # type: ignore[union-attr]
    assert catalog.providers_of("billing") == []


def test_an_extension_with_only_wrappers_is_not_a_provider() -> None:
    catalog = discover(entry_points=False, builtins=False, extra={"audit": AuditWrapper})
    assert catalog.get("audit").kind is Kind.EXTENSION  # type: ignore[union-attr]


def _providers(fakes: dict[str, Any], raw: dict[str, Any], **extra: Any):  # type: ignore[no-untyped-def]
    catalog = discover(entry_points=False, builtins=False, extra={**fakes, **extra})
    return build_providers(catalog, load_config(catalog, None, raw=raw))


def test_only_the_selected_provider_answers_its_interface(fakes: dict[str, Any], tmp_path: Any) -> None:
    providers = _providers(fakes, {"state_dir": str(tmp_path), "providers": {"metering": {"type": "fakemeter"},
                                                                              "billing": {"type": "greedy"}}})
    # GreedyBilling implements metering_fetch_meter too, but it is selected for billing only.
    assert providers.metering.fetch_meter("m-1") == "fake-metering"  # type: ignore[union-attr]
    providers.billing.create_customer(Event.create("onboardingRequest", {"tenantId": "t"}))  # type: ignore[union-attr]
    assert [name for name, _ in FakeMetering.calls] == ["fetch_meter", "create_customer"]


def test_an_unselected_interface_is_none_and_its_hooks_refuse(fakes: dict[str, Any]) -> None:
    providers = _providers(fakes, {"providers": {"metering": {"type": "fakemeter"}}})
    assert providers.billing is None
    with pytest.raises(NotImplementedHookError, match="no billing provider"):
        providers.call("billing_put_usage", run=None)
    with pytest.raises(NotImplementedHookError, match="'fakemeter' does not implement metering_delete_meter"):
        providers.metering.delete_meter("m-1")  # type: ignore[union-attr]


@pytest.mark.parametrize("hook", ["sbt_startup", "metering_fetch_meterz"])
def test_calling_a_lifecycle_or_unknown_hook_names_the_hook(fakes: dict[str, Any], hook: str) -> None:
    providers = _providers(fakes, {"providers": {"metering": {"type": "fakemeter"}}})
    assert providers.provider_of(hook) is None
    with pytest.raises(NotImplementedHookError, match=f"^{hook} is not an interface hook$"):
        providers.call(hook)


def test_a_missing_required_hook_is_a_startup_error_naming_provider_and_hook(fakes: dict[str, Any]) -> None:
    with pytest.raises(StartupError, match=r"billing provider 'half' .* billing_delete_customer"):
        _providers(fakes, {"providers": {"billing": {"type": "half"}}})


def test_extension_wrappers_run_around_the_selected_provider(fakes: dict[str, Any]) -> None:
    providers = _providers(fakes, {"providers": {"metering": {"type": "fakemeter"}}}, audit=AuditWrapper)
    assert providers.metering.fetch_meter("m-9") == "fake-metering"  # type: ignore[union-attr]
    assert AuditWrapper.seen == ["before m-9", "after fake-metering"]


class Exploding(FakeMetering):
    @hookimpl
    def metering_create_meter(self, meter):  # type: ignore[no-untyped-def]
        raise RuntimeError("backend on fire")


def test_an_unexpected_provider_exception_becomes_a_502(fakes: dict[str, Any]) -> None:
    providers = _providers(fakes, {"providers": {"metering": {"type": "exploding"}}}, exploding=Exploding)
    with pytest.raises(ProviderError, match="failed in metering_create_meter: RuntimeError") as info:
        providers.metering.create_meter(MeterCreate(name="n", event_name="e"))  # type: ignore[union-attr]
    assert info.value.status == 502
    assert "on fire" not in info.value.message  # provider internals stay in the log


class _CommandsOnSelf(FakeMetering):
    """An author's trap: pluggy calls sbt_register_commands on the class, so ``self`` is never passed."""

    @hookimpl
    def sbt_register_commands(self, cli: Any) -> None:
        raise AssertionError("never reached: the loader refuses the plugin")


class _CommandsAsStatic(FakeMetering):
    @staticmethod
    @hookimpl
    def sbt_register_commands(cli: Any) -> None:
        return None


def test_a_class_hook_that_cannot_be_called_as_declared_fails_the_plugin_at_load_with_the_fix() -> None:
    catalog = discover(entry_points=False, builtins=False,
                       extra={"onself": _CommandsOnSelf, "static": _CommandsAsStatic})
    record = catalog.records["onself"]
    assert record.status is Status.FAILED
    assert record.error is not None
    assert "sbt_register_commands" in record.error and "@staticmethod taking (cli), without self" in record.error
    assert catalog.records["static"].status is Status.LOADED
    assert [i.plugin_name for i in catalog.pm.hook.sbt_register_commands.get_hookimpls()] == ["static"]
