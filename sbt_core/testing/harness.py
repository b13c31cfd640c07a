"""An in-process control plane for tests, with the plugins you name and nothing else installed.

::

    harness = start_control_plane(tmp_path, plugins={"rec": RecordingMetering},
                                  config={"providers": {"metering": {"type": "rec"}}})
    client = harness.client("event/event_write")          # Starlette TestClient, bearer token set
    client.post("/events", json=[to_json(ingest_usage("t1", "api_calls"))])
    harness.settle()                                       # every event delivered, retried or dead-lettered
    assert harness.events.deliveries(...)                  # what the bus did
    harness.close()

The pytest fixture ``sbt_control_plane`` (:mod:`sbt_core.testing.pytest_plugin`) does the same and
closes every harness after the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ..config import load_config
from ..hookspecs import Interface
from ..models import Event, canonical_detail_type, utcnow
from ..models.scopes import ALL
from ..plugins import discover
from ..runtime.contracts import Delivery, EventRecord, PutEventsEntryResult
from ..runtime.control_plane import ControlPlane

if TYPE_CHECKING:
    import httpx
    from starlette.testclient import TestClient

    from ..runtime.bus import Bus

__all__ = ["TEST_EVENTS_CONFIG", "EventRecorder", "Harness", "deep_merge", "start_control_plane"]

#: Delivery rules for tests: no waiting between attempts, three attempts, the in-process transport (nothing
#: queued outlives the test; ``transport = "sqlite"`` tests the durable one). Override under ``[events]``.
TEST_EVENTS_CONFIG: dict[str, Any] = {"max_attempts": 3, "backoff_base_seconds": 0, "backoff_max_seconds": 0,
                                      "drain_timeout_seconds": 10, "transport": "inprocess"}
#: How long :meth:`Harness.settle` waits at most: a hang guard, never a timing assertion.
SETTLE_TIMEOUT = 10.0


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` merged in, tables recursively (a later table's keys win)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class EventRecorder:
    """Every event put on a bus, in order, with its delivery status read from the bus's event log."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.events: list[Event] = []
        bus.add_listener(self.events.append)

    def of_type(self, detail_type: str) -> list[Event]:
        """Events of ``detail_type`` (bare and ``sbt_aws_`` names match each other)."""
        bare = canonical_detail_type(detail_type)
        return [e for e in self.events if e.name == bare]

    def record(self, event: Event | str) -> EventRecord | None:
        """The event log entry of an event (or id)."""
        return self.bus.get(event if isinstance(event, str) else event.id)

    def deliveries(self, event: Event | str) -> dict[str, Delivery]:
        """``{target: Delivery}`` of an event (empty when it matched nothing)."""
        record = self.record(event)
        return {d.target: d for d in record.deliveries} if record else {}

    def states(self, event: Event | str) -> dict[str, str]:
        """``{target: state}`` of an event: ``delivered``, ``retrying``, ``dead_lettered``…"""
        return {t: d.state for t, d in self.deliveries(event).items()}

    def delivered_to(self, target: str) -> list[Event]:
        """Events delivered to ``target`` (a hook name or subscriber name)."""
        return [e for e in self.events if self.states(e).get(target) == "delivered"]

    def clear(self) -> None:
        self.events.clear()


@attrs.define
class Harness:
    """A running in-process control plane and what tests need around it."""

    control_plane: ControlPlane
    events: EventRecorder

    @property
    def bus(self) -> Bus:
        return self.control_plane.bus

    @property
    def providers(self) -> Any:
        return self.control_plane.providers

    def provider(self, interface: Interface) -> Any:
        """The selected provider instance of ``interface`` (``"auth"``, ``"billing"``, ``"metering"``)."""
        return self.control_plane.providers.instances[interface]

    def put(self, *events: Event) -> list[PutEventsEntryResult]:
        """Put events on the bus (as ``POST /events`` does) and return the per-entry results."""
        return self.bus.put_events(list(events))

    def settle(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Wait until every event so far is delivered, dead-lettered or skipped (retries included).

        :raises AssertionError: still busy after ``timeout`` seconds (a hang, not a slow test).
        """
        if not self.bus.join(timeout):
            busy = [t.name for t in self.bus.targets() if self.bus.busy(t.name)]
            raise AssertionError(f"the bus did not settle within {timeout}s; busy targets: {', '.join(busy)}")

    def tick(self, now: datetime | None = None) -> list[Event]:
        """Fire the schedules due at ``now`` (default: the clock) and return the runs put on the bus."""
        return self.control_plane.scheduler.tick(now or utcnow())

    def token(self, *scopes: str, user: str | None = None, lifetime_seconds: int | None = None) -> str:
        """A bearer token from the ``local`` auth provider for ``scopes`` (none given: every scope).

        :raises RuntimeError: the selected auth provider is not ``local``.
        """
        auth = self.control_plane.providers.instances.get("auth")
        mint = getattr(auth, "mint_token", None)
        if mint is None:
            raise RuntimeError("tokens need the local auth provider: select [providers.auth] type = \"local\"")
        return str(mint(scopes or ALL, user=user, lifetime_seconds=lifetime_seconds))

    def _headers(self, scopes: Iterable[str], token: str | None, user: str | None,
                 authenticated: bool) -> dict[str, str]:
        if not authenticated:
            return {}
        return {"Authorization": f"Bearer {token or self.token(*scopes, user=user)}"}

    def client(self, *scopes: str, token: str | None = None, user: str | None = None,
               authenticated: bool = True) -> TestClient:
        """A Starlette TestClient of the app with a bearer token for ``scopes`` (none given: every
        scope), or ``token`` as given, or none (``authenticated=False``)."""
        with warnings.catch_warnings():  # Starlette >= 0.49 nudges towards httpx2; httpx is what we have
            warnings.filterwarnings("ignore", message=".*httpx2")
            from starlette.testclient import TestClient

        return TestClient(self.control_plane.asgi_app, headers=self._headers(scopes, token, user, authenticated))

    def async_client(self, *scopes: str, token: str | None = None, user: str | None = None,
                     authenticated: bool = True) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` over the ASGI app (no network), with a bearer token as :meth:`client`."""
        import httpx

        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.control_plane.asgi_app),
                                 base_url="http://testserver",
                                 headers=self._headers(scopes, token, user, authenticated))

    @contextlib.contextmanager
    def serve_http(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Serve the app with a real uvicorn on ``host`` (loopback) and a free port, in a thread; yields
        the base URL (``http://127.0.0.1:PORT``) and stops the server after. The control plane itself
        keeps running (close it with :meth:`close`)."""
        urls: list[str] = []
        ready = threading.Event()
        failure: list[BaseException] = []
        cp = self.control_plane

        def run() -> None:
            def on_ready(url: str) -> None:
                urls.append(url)
                ready.set()

            try:
                asyncio.run(cp.serve(host, port, ready=on_ready, log_level="warning", lifecycle=False))
            except BaseException as exc:  # noqa: BLE001 - reported to the test below
                failure.append(exc)
            finally:
                ready.set()

        thread = threading.Thread(target=run, name="sbt-test-uvicorn", daemon=True)
        thread.start()
        ready.wait(SETTLE_TIMEOUT)
        if not urls:
            cp.request_exit()
            raise RuntimeError(f"uvicorn did not start: {failure[0] if failure else 'timed out'}")
        try:
            yield urls[0]
        finally:
            cp.request_exit()
            thread.join(SETTLE_TIMEOUT)

    def close(self) -> bool:
        """Stop: drain the bus, close the components, ``sbt_shutdown``. True when drained."""
        return self.control_plane.close()


def start_control_plane(state_dir: Path, *, plugins: Mapping[str, Any] | None = None,
                        config: Mapping[str, Any] | None = None, auth: bool = True, tenants: bool = True,
                        builtins: bool = True, start: bool = True, clock: Any = None) -> Harness:
    """Build (and by default start) a control plane from ``plugins`` and a ``config`` table, in-process.

    Only the built-ins (the ``local`` auth provider) and ``plugins`` are discovered — never what is
    installed — so a test sees exactly the providers it names.

    :param state_dir: where providers and the tenant registry keep files (a ``tmp_path``).
    :param plugins: ``{type name: provider class or extension}``, registered without installing.
    :param config: the ``sbt.toml`` content as a dict, merged over the test defaults — ``[providers.auth]``
        ``local`` (``none`` if ``auth`` is False) and :data:`TEST_EVENTS_CONFIG` under ``[events]``.
    :param tenants: open the tenant registry (SQLite under ``state_dir``), as ``sbt serve`` does.
    :param start: start it (False: build only, e.g. to add components or subscribers first).
    :param clock: the scheduler's clock (aware UTC); drive schedules with :meth:`Harness.tick`.
    :raises ConfigError, StartupError: as ``sbt serve`` would.
    """
    base: dict[str, Any] = {"state_dir": str(state_dir), "events": dict(TEST_EVENTS_CONFIG), "providers": {}}
    # Without auth, none on purpose: the config defaults would otherwise select local auth.
    base["providers"]["auth"] = {"type": "local" if auth else "none"}
    raw = deep_merge(base, config or {})
    catalog = discover(entry_points=False, builtins=builtins, extra=dict(plugins or {}), strict=True)
    loaded = load_config(catalog, None, raw=raw)
    kwargs = {"clock": clock} if clock is not None else {}
    cp = ControlPlane.from_config(catalog, loaded, tenants=tenants, **kwargs)
    harness = Harness(cp, EventRecorder(cp.bus))
    if start:
        cp.open()
    return harness
