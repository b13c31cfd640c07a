"""Test providers that record the lifecycle events they are bound to, and a control plane assembled from
real parts (plugins, config, binding table, bus, HTTP app, tenant registry) around them."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import attrs
from starlette.applications import Starlette

from sbt_core import Provider, hookimpl
from sbt_core.auth_local import LocalAuth
from sbt_core.bindings import BindingTable, build_binding_table
from sbt_core.config import Config, load_config
from sbt_core.models import AuthSettings, Event, Meter, Page, scopes
from sbt_core.plugins import Providers, build_providers, discover
from sbt_core.runtime.bus import Bus
from sbt_core.runtime.http import build_app
from sbt_core.tenants import TenantRegistry, open_registry

#: Delivery without backoff waits: a failed attempt is retried at once.
FAST_EVENTS = {"max_attempts": 3, "backoff_base_seconds": 0, "backoff_max_seconds": 0}


class _Recording(Provider):
    """Keeps every event delivered to it, per hook, thread-safely."""

    def __init__(self, settings: Any, context: Any) -> None:
        super().__init__(settings, context)
        self.lock = threading.Lock()
        self.received: dict[str, list[Event]] = {}

    def record(self, hook: str, event: Event) -> None:
        with self.lock:
            self.received.setdefault(hook, []).append(event)

    def events(self, hook: str) -> list[Event]:
        with self.lock:
            return list(self.received.get(hook, []))


class RecordingBilling(_Recording):
    """IBilling provider whose customer hooks record the onboarding/offboarding events."""

    @hookimpl
    def billing_create_customer(self, event: Event) -> None:
        self.record("billing_create_customer", event)

    @hookimpl
    def billing_delete_customer(self, event: Event) -> None:
        self.record("billing_delete_customer", event)


class RecordingMetering(_Recording):
    """IMetering provider (required hooks stubbed) whose optional customer hooks record events."""

    @hookimpl
    def metering_create_meter(self, meter: Any) -> Meter:
        raise NotImplementedError

    @hookimpl
    def metering_fetch_meter(self, meter_id: str) -> Meter:
        raise NotImplementedError

    @hookimpl
    def metering_fetch_all_meters(self, limit: int, next_token: str | None) -> Page[Meter]:
        return Page()

    @hookimpl
    def metering_ingest_usage_event(self, usage_event: Any) -> None:
        return None

    @hookimpl
    def metering_fetch_usage(self, meter_id: str, query: Any) -> Page[Any]:
        return Page()

    @hookimpl
    def metering_create_customer(self, event: Event) -> None:
        self.record("metering_create_customer", event)

    @hookimpl
    def metering_delete_customer(self, event: Event) -> None:
        self.record("metering_delete_customer", event)


PLUGINS = {"recording-billing": RecordingBilling, "recording-metering": RecordingMetering}


def config_table(state_dir: Path, database_url: str, *, recorders: bool = True) -> dict[str, Any]:
    """An ``sbt.toml`` as data: local auth, the recording providers, the registry on ``database_url``."""
    providers: dict[str, Any] = {"auth": {"type": "local"}}
    if recorders:
        providers |= {"billing": {"type": "recording-billing"}, "metering": {"type": "recording-metering"}}
    return {"state_dir": str(state_dir), "providers": providers, "events": FAST_EVENTS,
            "tenants": {"database_url": database_url}}


@attrs.define
class Plane:
    """What :func:`build_app` reads (``ControlPlaneLike``) plus the registry and the recorders."""

    config: Config
    providers: Providers
    bindings: BindingTable
    bus: Bus
    auth_settings: AuthSettings | None
    registry: TenantRegistry
    app: Starlette | None = None

    @property
    def auth(self) -> LocalAuth:
        return self.providers.instances["auth"]  # type: ignore[no-any-return]

    @property
    def billing(self) -> RecordingBilling:
        return self.providers.instances["billing"]  # type: ignore[no-any-return]

    @property
    def metering(self) -> RecordingMetering:
        return self.providers.instances["metering"]  # type: ignore[no-any-return]

    def token(self, *names: str) -> str:
        return self.auth.mint_token(names or (scopes.TENANT_READ, scopes.TENANT_WRITE))

    def settle(self) -> None:
        """Wait until the bus has finished every delivery accepted so far (a hang guard, not a timing check)."""
        assert self.bus.join(30.0)

    def stop(self) -> None:
        self.bus.stop(timeout=30.0)
        self.registry.close()
        self.providers.shutdown()


def assemble(state_dir: Path, database_url: str, *, recorders: bool = True) -> Plane:
    """Config -> plugins -> bindings -> bus -> registry -> app, as ``sbt serve`` does."""
    catalog = discover(entry_points=False, extra=PLUGINS)
    config = load_config(catalog, None, raw=config_table(state_dir, database_url, recorders=recorders))
    providers = build_providers(catalog, config)
    table = build_binding_table(catalog, config)
    bus = Bus(config.events)
    bus.bind(table, providers)
    providers.attach(bus.publish)
    registry = open_registry(config)
    registry.attach(bus)
    registry.start()
    bus.start()
    providers.startup()
    auth = providers.instances["auth"]
    plane = Plane(config, providers, table, bus, auth.auth_settings(), registry)
    plane.app = build_app(plane, [registry.routes])
    return plane
