"""The kit's pytest side, loaded by sbt's ``pytest11`` plugin: the ``--sbt-conformance`` option, the default
``sbt_conformance_<interface>`` fixtures, the broken promise quoted in a failure, and the summary.

``pytest --sbt-conformance metering=memory`` (repeatable, or comma-separated: ``metering=memory,auth=local``)
collects the suite from this package instead of the project's tests (or beside the paths given) and
deselects the interfaces not named; ``--sbt-conformance-config sbt.toml`` gives the providers' settings.
"""

from __future__ import annotations

import tomllib
from collections import defaultdict
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from ...hookspecs import INTERFACES, Interface, hooks_of
from ._kit import ConformanceTarget, Planes, declared_differences

__all__ = ["FIXTURES", "conformance_fixture"]

#: The fixture of each interface that names the provider under test.
FIXTURES: dict[Interface, str] = {i: f"sbt_conformance_{i}" for i in INTERFACES}
SUITE = Path(__file__).with_name("suite.py")
MARKER = "sbt_conformance"


#: A provider under test in the summary: its interface and type name ("" when its fixture never ran).
_Key = tuple[Interface, str]


@attrs.define
class _Results:
    """What the summary reports: per provider under test, the outcome of each hook's checks."""

    targets: dict[_Key, ConformanceTarget] = attrs.field(factory=dict)
    #: provider -> hook -> outcome -> [(test id, reason or promise)]
    outcomes: dict[_Key, dict[str, dict[str, list[tuple[str, str]]]]] = attrs.field(
        factory=lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list))))


_SELECTED = pytest.StashKey[dict[Interface, ConformanceTarget]]()
_RESULTS = pytest.StashKey[_Results]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sbt", "sbt provider conformance")
    group.addoption("--sbt-conformance", action="append", default=[], metavar="INTERFACE=TYPE",
                    help="run sbt's conformance suite against the installed provider TYPE of INTERFACE "
                         "(metering, billing, auth), e.g. metering=memory; repeat or comma-separate for several")
    group.addoption("--sbt-conformance-config", metavar="PATH", default=None,
                    help="an sbt.toml whose [providers.<interface>] tables give the settings of the providers "
                         "under test (secrets as { env = ... } references); default: no settings")


def _settings_from(path: str | None, selected: dict[Interface, str]) -> dict[Interface, dict[str, Any]]:
    """The ``[providers.<interface>]`` tables of ``path`` (without ``type``) for the selected providers."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as fh:
            providers = tomllib.load(fh).get("providers", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise pytest.UsageError(f"--sbt-conformance-config {path}: {exc}") from None
    settings: dict[Interface, dict[str, Any]] = {}
    for interface, type_name in selected.items():
        table = dict(providers.get(interface) or {})
        if table.pop("type", type_name) != type_name:
            raise pytest.UsageError(f"--sbt-conformance-config {path}: [providers.{interface}] is not type "
                                    f"{type_name!r}")
        settings[interface] = table
    return settings


def _parse(values: list[str]) -> dict[Interface, str]:
    selected: dict[Interface, str] = {}
    for item in (part.strip() for value in values for part in value.split(",")):
        interface, _, type_name = item.partition("=")
        if interface not in INTERFACES or not type_name:
            raise pytest.UsageError(f"--sbt-conformance {item!r}: expected INTERFACE=TYPE with INTERFACE one of "
                                    f"{', '.join(INTERFACES)} (e.g. metering=memory)")
        selected[interface] = type_name
    return selected


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(hooks, unless): a conformance check of these hooks, skipped "
                                       "when the provider lacks one that is optional or declares difference `unless`")
    config.stash[_RESULTS] = _Results()
    selected = _parse(config.getoption("sbt_conformance") or [])
    settings = _settings_from(config.getoption("sbt_conformance_config"), selected)
    config.stash[_SELECTED] = {i: ConformanceTarget.installed(i, t, **settings.get(i, {}))
                               for i, t in selected.items()}
    if selected:
        suite = str(SUITE)
        if config.args_source is pytest.Config.ArgsSource.ARGS:
            config.args.append(suite)
        else:  # no paths given: the suite alone, not the project's tests
            config.args[:] = [suite]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    selected = config.stash[_SELECTED]
    if not selected:
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        interface = getattr(getattr(item, "cls", None), "sbt_interface", None)
        is_suite = Path(str(item.path)) == SUITE
        (drop if is_suite and interface not in selected else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def conformance_fixture(interface: Interface, request: pytest.FixtureRequest) -> ConformanceTarget:
    """The default ``sbt_conformance_<interface>``: the installed provider named by ``--sbt-conformance``."""
    target = request.config.stash[_SELECTED].get(interface)
    if target is None:
        pytest.skip(f"no {interface} provider under test: run with --sbt-conformance {interface}=<type>, or "
                    f"define the fixture {FIXTURES[interface]} returning a ConformanceTarget")
    return target


@pytest.fixture
def sbt_conformance_metering(request: pytest.FixtureRequest) -> ConformanceTarget:
    """The metering provider under test (``--sbt-conformance metering=<type>``); override it to pass settings."""
    return conformance_fixture("metering", request)


@pytest.fixture
def sbt_conformance_billing(request: pytest.FixtureRequest) -> ConformanceTarget:
    """The billing provider under test (``--sbt-conformance billing=<type>``); override it to pass settings."""
    return conformance_fixture("billing", request)


@pytest.fixture
def sbt_conformance_auth(request: pytest.FixtureRequest) -> ConformanceTarget:
    """The auth provider under test (``--sbt-conformance auth=<type>``); override it to pass settings."""
    return conformance_fixture("auth", request)


@pytest.fixture(scope="session")
def sbt_conformance_planes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Planes]:
    """The control planes the suite's tests share, one per provider under test; stopped at the end."""
    planes = Planes(tmp_path_factory.mktemp("sbt-conformance"))
    yield planes
    planes.close()


def _promise_of(item: pytest.Item) -> str:
    doc = getattr(getattr(item, "function", None), "__doc__", None) or item.name
    return " ".join(doc.strip().split("\n\n")[0].split())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report: pytest.TestReport = yield
    marker = item.get_closest_marker(MARKER)
    interface = getattr(getattr(item, "cls", None), "sbt_interface", None)
    if marker is None or interface is None:
        return report
    if report.failed:
        report.sections.append(("sbt conformance", f"broken promise: {_promise_of(item)}"))
    if not (report.when == "call" or (report.when == "setup" and not report.passed)):
        return report
    results = item.config.stash[_RESULTS]
    target = getattr(item, "funcargs", {}).get(FIXTURES[interface])
    key: _Key = (interface, target.type_name if isinstance(target, ConformanceTarget) else "")
    if isinstance(target, ConformanceTarget):
        results.targets.setdefault(key, target)
    if hasattr(report, "wasxfail"):
        outcome, note = "xfailed", str(report.wasxfail)
    elif report.skipped and isinstance(report.longrepr, tuple):
        outcome, note = "skipped", str(report.longrepr[2]).removeprefix("Skipped: ")
    else:
        outcome, note = report.outcome, _promise_of(item)
    for hook in marker.kwargs["hooks"]:
        results.outcomes[key][hook][outcome].append((item.nodeid, note))
    return report


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    results = config.stash.get(_RESULTS, None)
    if results is None or not results.outcomes:
        return
    write = terminalreporter.write_line
    terminalreporter.section("sbt conformance")
    for key in sorted(results.outcomes, key=lambda k: (INTERFACES.index(k[0]), k[1])):
        interface, rows = key[0], results.outcomes[key]
        target = results.targets.get(key)
        if target is None:
            write(f"{interface} provider (none under test)")
        else:
            cls = target.provider_class
            write(f"{interface} provider {target.type_name!r} ({cls.__module__}.{cls.__qualname__})")
            differences = declared_differences(cls)
            write("  declared differences: " + ("none" if not differences else ""))
            for name, reason in sorted(differences.items()):
                write(f"    {name}: {reason}")
        order = [row.name for row in hooks_of(interface)]
        for hook in sorted(rows, key=lambda h: order.index(h) if h in order else len(order)):
            counts = rows[hook]
            summary = ", ".join(f"{len(counts[k])} {k}" for k in ("passed", "failed", "skipped", "xfailed")
                                if counts.get(k))
            write(f"  {hook}: {summary}")
            for reason in sorted({note for _, note in counts.get("skipped", [])}):
                write(f"    skipped: {reason}")
            for reason in sorted({note for _, note in counts.get("xfailed", [])}):
                write(f"    known failure: {reason}")
            for nodeid, note in counts.get("failed", []):
                write(f"    FAILED {nodeid.rsplit('::', 1)[-1]}: {note}")
