"""What the suite's test classes share: the provider under test, its declared differences, the promise
marker, and the control plane each test drives it through."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar, cast

import attrs
import pytest

from ...hookspecs import BATCH_FORMS, CONTRACT, Interface
from ...plugins import Status, discover
from ..harness import Harness, start_control_plane

__all__ = ["DIFFERENCES", "KNOWN_FAILURES", "ConformanceTarget", "Planes", "at_once", "declared_differences", "gate",
           "promise"]

F = TypeVar("F", bound=Callable[..., Any])

#: The documented differences a provider may declare in its ``conformance_differences`` class attribute
#: (``{name: reason}``); each skips the checks named here, with the provider's reason.
DIFFERENCES: dict[str, str] = {
    "metering.no_horizon": "accepts events of any time: the horizon checks are skipped",
    "metering.external_clock": "reads the time outside this Python process, so the suite cannot move its clock "
                               "to a DST change: the DST window checks are skipped",
    "billing.customer_not_returned": "billing_create_customer returns None, so the suite cannot see which "
                                     "customer a redelivery reached: the idempotency checks by result are skipped",
    "billing.unsigned_webhooks": "billing_webhook takes unsigned calls (e.g. on a private network): the "
                                 "bad-signature check is skipped",
    "billing.no_usage_push": "billing_put_usage pushes nothing the suite can feed (no billing_ingest or "
                             "ingestUsage input): the push-once checks are skipped",
    "billing.single_process": "keeps its state in one process (no store several processes share): the check "
                              "of two processes pushing at once is skipped",
}

#: The name of the class attribute a provider declares its differences in.
DIFFERENCES_ATTRIBUTE = "conformance_differences"


@attrs.frozen
class ConformanceTarget:
    """The provider the suite checks: its interface, type name, class, and the settings it is built with.

    ``settings`` is the provider's ``[providers.<interface>]`` table without ``type`` (e.g. an API key and a
    local server's URL); ``config`` is merged into the rest of the control plane's ``sbt.toml``. The suite
    builds the provider the way ``sbt serve`` does, in an in-process control plane (one per target, shared
    by the tests of a session, which keep apart by fresh names, tenants and identifiers).

    Optional probes of the backend, for promises no hook can observe (the checks that need one skip
    without it): ``pushed()`` counts the usage records the billing backend has accepted so far;
    ``outage()`` is a context manager within which the backend accepts one more record and then fails
    every call (an interrupted ``billing_put_usage``); ``token(harness)`` gives a bearer token the started
    control plane accepts on every route, when the auth provider under test is not ``local`` (whose tokens
    the harness mints itself).
    """

    interface: Interface
    type_name: str
    provider_class: type
    settings: Mapping[str, Any] = attrs.field(factory=dict)
    config: Mapping[str, Any] = attrs.field(factory=dict)
    pushed: Callable[[], int] | None = None
    outage: Callable[[], AbstractContextManager[object]] | None = None
    token: Callable[[Harness], str] | None = None

    @classmethod
    def installed(cls, interface: Interface, type_name: str, **settings: Any) -> ConformanceTarget:
        """The installed provider ``type_name`` (entry-point group ``sbt``, or a built-in such as ``local``).

        :raises pytest.UsageError: nothing of that name is installed, or it failed to load.
        """
        catalog = discover()
        record = catalog.get(type_name)
        if record is None or record.status is not Status.LOADED or interface not in record.interfaces:
            installed = ", ".join(catalog.providers_of(interface)) or "none"
            why = f" ({record.error})" if record is not None and record.error else ""
            raise pytest.UsageError(f"--sbt-conformance {interface}={type_name}: no loaded {interface} provider "
                                    f"{type_name!r}{why}; installed: {installed}")
        provider_class = cast(type, catalog.pm.get_plugin(type_name))
        return cls(interface, type_name, provider_class, settings)

    @property
    def differences(self) -> dict[str, str]:
        """The provider's declared differences, ``{name: reason}``."""
        return declared_differences(self.provider_class)

    def implements(self, hook: str) -> bool:
        """Whether the provider class has an implementation of ``hook`` (by name, as pluggy registers it)."""
        return callable(getattr(self.provider_class, hook, None))

    def start(self, state_dir: Path, **kwargs: Any) -> Harness:
        """A started in-process control plane with this provider selected (and ``local`` auth unless the
        target is the auth provider)."""
        table = {"type": self.type_name, **self.settings}
        config: dict[str, Any] = {**self.config}
        config["providers"] = {**config.get("providers", {}), self.interface: table}
        return start_control_plane(state_dir, plugins={self.type_name: self.provider_class}, config=config,
                                   auth=self.interface != "auth", **kwargs)


def declared_differences(provider_class: type) -> dict[str, str]:
    """``provider_class.conformance_differences`` checked against :data:`DIFFERENCES`.

    :raises ValueError: a name the kit does not know (a typo would silently skip nothing), or no reason.
    """
    declared = dict(getattr(provider_class, DIFFERENCES_ATTRIBUTE, None) or {})
    unknown = sorted(set(declared) - set(DIFFERENCES))
    if unknown:
        raise ValueError(f"{provider_class.__name__}.{DIFFERENCES_ATTRIBUTE} declares unknown difference(s) "
                         f"{', '.join(unknown)}; known: {', '.join(sorted(DIFFERENCES))}")
    blank = sorted(name for name, reason in declared.items() if not str(reason).strip())
    if blank:
        raise ValueError(f"{provider_class.__name__}.{DIFFERENCES_ATTRIBUTE}: give a reason for {', '.join(blank)}")
    return declared


def promise(*hooks: str, unless: str | None = None) -> Callable[[F], F]:
    """Mark a conformance test: the hooks whose promise it checks (optional hooks the provider lacks make
    it skip, naming the hook) and the declared difference that skips it. The promise itself is the test's
    docstring, which a failure report quotes."""
    unknown = [h for h in hooks if h not in CONTRACT and h not in BATCH_FORMS]
    if unknown or (unless is not None and unless not in DIFFERENCES):
        raise ValueError(f"promise(): unknown hook(s) {unknown} or difference {unless!r}")
    return pytest.mark.sbt_conformance(hooks=hooks, unless=unless)


def _required(hook: str) -> bool:
    """Whether a selected provider must implement ``hook`` (batch forms never are required)."""
    return hook in CONTRACT and CONTRACT[hook].required


def skip_unkept(target: ConformanceTarget, marker: pytest.Mark | None) -> None:
    """Skip a test whose optional hook the provider lacks, or whose difference it declared."""
    if marker is None:
        return
    missing = [h for h in marker.kwargs["hooks"] if not _required(h) and not target.implements(h)]
    if missing:
        pytest.skip(f"optional hook{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                    f"{'are' if len(missing) > 1 else 'is'} not implemented by {target.type_name!r}")
    unless = marker.kwargs["unless"]
    if unless is not None and unless in target.differences:
        pytest.skip(f"declared difference {unless}: {target.differences[unless]}")


def at_once(calls: int, call: Callable[[], Any]) -> list[Any]:
    """``call()`` from ``calls`` threads released together; the results (or the exceptions raised)."""
    barrier = threading.Barrier(calls)
    results: list[Any] = [None] * calls

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


#: Checks a provider is known to fail today, each with its issue: marked ``xfail(strict=True)`` for that
#: provider only, so the fix (which makes it pass) must also delete the entry.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}


class Planes:
    """Started control planes shared by the tests of one session, one per provider under test (its type,
    class and settings): starting one per test would cost more than most checks. Tests keep apart by
    fresh meter names, tenants and identifiers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._started: dict[str, Harness] = {}

    def get(self, target: ConformanceTarget, *, process: int = 1) -> Harness:
        """The started plane of ``target``; ``process=2`` a second one built with the same settings in its
        own state directory, as a second ``sbt serve`` of one deployment would be."""
        key = repr((target.interface, target.type_name, target.provider_class, target.settings, target.config,
                    target.pushed, target.outage, target.token, process))
        if key not in self._started:
            self._started[key] = target.start(self.root / f"plane-{len(self._started)}")
        return self._started[key]

    def close(self) -> None:
        for harness in reversed(self._started.values()):
            harness.close()
        self._started.clear()


def gate(target: ConformanceTarget, request: pytest.FixtureRequest) -> None:
    """Before each check (each suite's autouse fixture): skip it when the provider lacks an optional hook it
    checks or declared the difference that covers it; mark it ``xfail(strict=True)`` when it is a
    :data:`KNOWN_FAILURES` of the provider."""
    skip_unkept(target, request.node.get_closest_marker("sbt_conformance"))
    name = getattr(request.node, "originalname", request.node.name)
    known = KNOWN_FAILURES.get((target.type_name, name))
    if known is not None:
        request.node.add_marker(pytest.mark.xfail(strict=True, reason=known))
