"""How the runtime assembles the registry: from the config to a started service, its routes and its
bus subscriptions.

The ControlPlane calls :func:`open_registry` before start, mounts :attr:`TenantRegistry.routes`, subscribes
each of :meth:`TenantRegistry.subscriptions` on its bus and attaches the bus's ``put_events``; then
:meth:`TenantRegistry.start` creates the tables and publishes events a previous run left in the outbox.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import attrs

from ..config import Config
from ..models import Event
from ..runtime.contracts import EventBus, RouteGroup, attach_subscriber
from ..triggers import EventTrigger
from ._events import job_result_triggers
from ._settings import load_settings
from ._store import TenantStore
from .routes import tenant_routes
from .service import Publisher, TenantService

__all__ = ["TenantRegistry", "open_registry"]


@attrs.define
class TenantRegistry:
    """The registry as the runtime sees it: the service, its route group, its subscribers."""

    service: TenantService

    @property
    def routes(self) -> RouteGroup:
        """The ``/tenant-registrations`` and ``/tenants`` endpoints with their core triggers."""
        return tenant_routes(self.service)

    def subscriptions(self) -> list[tuple[str, EventTrigger, Callable[[Event], Any]]]:
        """``(name, trigger, handler)`` for each provision/deprovision Success/Failure event."""
        return [(name, trigger, self.service.apply_job_result) for name, trigger in job_result_triggers()]

    def attach(self, bus: EventBus | Publisher) -> None:
        """Publish through ``bus`` (an EventBus, or a bare ``put_events`` callable) and subscribe to it."""
        self.service.attach(attach_subscriber(bus, self.subscriptions()))

    def start(self) -> None:
        """Create missing tables and publish what a crash left in the outbox."""
        self.service.start()

    def close(self) -> None:
        self.service.close()


def open_registry(config: Config, publish: Publisher | None = None) -> TenantRegistry:
    """The registry of ``config``: ``[tenants] database_url`` or ``<state_dir>/tenants.sqlite3``.

    :raises ConfigError: ``[tenants]`` is invalid (every problem, with dotted paths).
    """
    settings = load_settings(config)
    store = TenantStore(settings.url(config.state_dir))
    service = TenantService(store, publish, naming=config.events.naming,
                            idempotency_ttl=timedelta(hours=settings.idempotency_ttl_hours))
    return TenantRegistry(service)
