"""The conformance kit catches real bugs: run against providers that each break one promise
(``broken_providers.py``), the suite fails, and the failure names the promise broken."""

from __future__ import annotations

from pathlib import Path

import pytest
import sbt_memory_metering  # noqa: F401 - imported here once: pytester's in-process runs cannot re-import numpy

pytest_plugins = ["pytester"]

HERE = Path(__file__).parent

#: (broken provider, interface, the checks to run (-k), the promise the failure must quote)
CASES = [
    ("CountsRedeliveriesTwice", "metering", "redelivered_identifier_counts_once",
     "A usage event delivered again with the same identifier is counted once"),
    ("MaxIgnoresCancels", "metering", "cancel_by_identifiers_is_exact and MAX",
     "Cancelling events by identifier removes exactly them from usage (MIN/MAX too)"),
    ("DayWindowsInUtc", "metering", "dst_change",
     "DAY and HOUR windows in a zone follow its DST change"),
    ("PagesRepeatARow", "metering", "pages_lose_and_repeat_no_row",
     "Paging usage with limit and next_token returns every row exactly once"),
    ("NewCustomerEachDelivery", "billing", "redelivered_onboarding",
     "An onboardingRequest delivered again (hook or bus) reaches the same customer, never a second one."),
    ("PushesAgainAfterAnOutage", "billing", "interrupted_push",
     "A billing_put_usage run interrupted by a backend outage, then run again, pushes every record once."),
]

TEST_FILE = """
import pytest
from broken_providers import Backend, {name}
from sbt_core.testing.conformance import ConformanceTarget, Test{Interface}Conformance


@pytest.fixture
def sbt_conformance_{interface}():
    return ConformanceTarget("{interface}", "broken", {name}, pushed=lambda: len(Backend.accepted),
                             outage=Backend.outage)
"""


@pytest.mark.parametrize(("name", "interface", "select", "promise"), CASES, ids=[c[0] for c in CASES])
def test_the_suite_fails_a_broken_provider_naming_the_promise(pytester: pytest.Pytester, name: str,
                                                             interface: str, select: str, promise: str) -> None:
    pytester.syspathinsert(HERE)
    pytester.makepyfile(test_broken=TEST_FILE.format(name=name, interface=interface,
                                                     Interface=interface.capitalize()))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-k", select)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    output = result.stdout.str()
    assert f"broken promise: {promise}" in output, output
    assert "sbt conformance" in output and "FAILED" in output


def test_an_unknown_declared_difference_is_refused() -> None:
    from sbt_core.testing.conformance import declared_differences

    class Typo:
        conformance_differences = {"metering.no_horizn": "typo"}

    with pytest.raises(ValueError, match="unknown difference"):
        declared_differences(Typo)


def test_a_declared_difference_skips_with_its_reason_and_is_listed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_declared="""
import pytest
from sbt_memory_metering import MemoryMetering
from sbt_core.testing.conformance import ConformanceTarget, TestMeteringConformance


class NoHorizon(MemoryMetering):
    conformance_differences = {"metering.no_horizon": "keeps every event, as an archive does"}


@pytest.fixture
def sbt_conformance_metering():
    return ConformanceTarget("metering", "archive", NoHorizon)
""")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-k", "horizon or meter_crud", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*declared differences:*",
                                 "*metering.no_horizon: keeps every event, as an archive does*",
                                 "*declared difference metering.no_horizon: keeps every event*"])


def test_type_name_mode_runs_the_installed_provider(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sbt-conformance", "auth=local",
                                          "-k", "disable_and_enable")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*auth provider 'local'*", "*auth_disable_user: 1 passed*"])


def test_type_name_mode_refuses_what_it_cannot_run(tmp_path: Path) -> None:
    from sbt_core.testing.conformance import ConformanceTarget
    from sbt_core.testing.conformance._pytest import _parse, _settings_from

    with pytest.raises(pytest.UsageError, match="no loaded metering provider 'nope'; installed: .*memory"):
        ConformanceTarget.installed("metering", "nope")
    with pytest.raises(pytest.UsageError, match="expected INTERFACE=TYPE"):
        _parse(["metering"])
    with pytest.raises(pytest.UsageError, match="missing.toml"):
        _settings_from(str(tmp_path / "missing.toml"), {"auth": "local"})
    (tmp_path / "sbt.toml").write_text('[providers.auth]\ntype = "cognito"\n')
    with pytest.raises(pytest.UsageError, match="not type 'local'"):
        _settings_from(str(tmp_path / "sbt.toml"), {"auth": "local"})


def test_type_name_mode_takes_the_providers_settings_from_a_config_file(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", sbt='[providers.metering]\ntype = "memory"\nhorizon_past_days = -1\n')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sbt-conformance", "metering=memory",
                                           "--sbt-conformance-config", "sbt.toml", "-k", "meter_crud")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*providers.metering.horizon_past_days: must be > 0 (got -1.0)*"])


def test_optional_hooks_missing_are_skipped_with_the_hook_name(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_recording="""
import pytest
from sbt_core.testing import RecordingBilling
from sbt_core.testing.conformance import ConformanceTarget, TestBillingConformance


class Minimal(RecordingBilling):
    billing_webhook = None


@pytest.fixture
def sbt_conformance_billing():
    return ConformanceTarget("billing", "minimal", Minimal)
""")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-k", "webhook", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*optional hook billing_webhook is not implemented by 'minimal'*"])
