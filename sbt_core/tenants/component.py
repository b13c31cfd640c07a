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

from .._sql import unreachable
from ..config import Config
from ..models import AuthSettings, Event
from ..runtime.contracts import EventBus, RouteGroup, attach_subscriber
from ..triggers import EventTrigger
from ._events import job_result_triggers
from ._settings import load_settings
from ._store import TenantStore
from .routes import tenant_routes
from .service import Publisher, TenantService
from .tenant_config import tenant_config_routes

__all__ = ["TenantRegistry", "open_registry"]


@attrs.define
class TenantRegistry:
    """The registry as the runtime sees it: the service, its route group, its subscribers."""

    service: TenantService
    #: The selected auth provider's settings, for the public tenant-config route (None: no auth provider).
    auth_settings: Callable[[], AuthSettings | None] = lambda: None

    @property
    def routes(self) -> RouteGroup:
        """The ``/tenant-registrations``, ``/tenants`` and ``/tenant-config`` endpoints with their core
        triggers."""
        return [*tenant_routes(self.service), *tenant_config_routes(self.service, self.auth_settings)]

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

    def check(self) -> str | None:
        """None when the registry's database answers, else what is wrong (``/health``)."""
        problem = unreachable(self.service.store.engine)
        return None if problem is None else f"tenant registry: {problem}"


def open_registry(config: Config, publish: Publisher | None = None,
                  auth_settings: Callable[[], AuthSettings | None] = lambda: None) -> TenantRegistry:
    """The registry of ``config``: ``[tenants] database_url`` or ``<state_dir>/tenants.sqlite3``;
    ``auth_settings`` gives the auth provider's settings the tenant-config route answers.

    :raises ConfigError: ``[tenants]`` is invalid (every problem, with dotted paths).
    """
    settings = load_settings(config)
    store = TenantStore(settings.url(config.state_dir))
    service = TenantService(store, publish, naming=config.events.naming,
                            idempotency_ttl=timedelta(hours=settings.idempotency_ttl_hours))
    return TenantRegistry(service, auth_settings)
