"""The binding table: which hook of which provider runs on which trigger. Pure data, derived from the
contract (default triggers) and the config (overrides); the bus, the HTTP app and the scheduler only
read it. ``sbt bindings`` prints it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import attrs

from .config import Config
from .errors import StartupError
from .hookspecs import CONTRACT, Interface
from .models import scopes, to_json
from .plugins import PluginCatalog
from .triggers import AnyTrigger, Authorizer, EventTrigger, RouteTrigger, ScheduleTrigger

if TYPE_CHECKING:
    from .routes import Routes

__all__ = ["CORE_ROUTES", "Binding", "BindingTable", "build_binding_table", "find_route_clashes",
           "plugin_route_bindings"]

#: Routes the core itself serves beside the hook routes and the plugins' routes (docs/design.md section 4);
#: neither may clash with them.
CORE_ROUTES: tuple[RouteTrigger, ...] = (
    RouteTrigger("GET", "/health", authorizer=Authorizer.NONE),
    RouteTrigger("GET", "/openapi.json", authorizer=Authorizer.NONE),
    # Its access ([server] metrics: loopback clients, a scope, or anyone) is checked by the endpoint.
    RouteTrigger("GET", "/metrics", authorizer=Authorizer.NONE),
    RouteTrigger("POST", "/events", scope=scopes.EVENT_WRITE),
    RouteTrigger("GET", "/events", scope=scopes.EVENT_READ),
    RouteTrigger("GET", "/events/{eventId}", scope=scopes.EVENT_READ),
    RouteTrigger("GET", "/dead-letters", scope=scopes.EVENT_READ),
    RouteTrigger("POST", "/dead-letters/replay", scope=scopes.EVENT_WRITE),
    RouteTrigger("GET", "/schedules", scope=scopes.EVENT_READ),
    RouteTrigger("POST", "/schedules/{hook}/run", scope=scopes.EVENT_WRITE),
    RouteTrigger("POST", "/tenant-registrations", scope=scopes.TENANT_WRITE),
    RouteTrigger("GET", "/tenant-registrations", scope=scopes.TENANT_READ),
    RouteTrigger("GET", "/tenant-registrations/{tenantRegistrationId}", scope=scopes.TENANT_READ),
    RouteTrigger("PATCH", "/tenant-registrations/{tenantRegistrationId}", scope=scopes.TENANT_WRITE),
    RouteTrigger("DELETE", "/tenant-registrations/{tenantRegistrationId}", scope=scopes.TENANT_WRITE),
    RouteTrigger("POST", "/tenants", scope=scopes.TENANT_WRITE),
    RouteTrigger("GET", "/tenants", scope=scopes.TENANT_READ),
    RouteTrigger("GET", "/tenants/{tenantId}", scope=scopes.TENANT_READ),
    RouteTrigger("PUT", "/tenants/{tenantId}", scope=scopes.TENANT_WRITE),
    RouteTrigger("DELETE", "/tenants/{tenantId}", scope=scopes.TENANT_WRITE),
    # sbt-aws's tenant-config route: public, what a tenant's front end needs to sign in.
    RouteTrigger("GET", "/tenant-config", authorizer=Authorizer.NONE),
    RouteTrigger("GET", "/tenant-config/{tenantName}", authorizer=Authorizer.NONE),
)


@attrs.frozen
class Binding:
    """One row: ``hook`` of ``provider`` (type name) runs on ``trigger``; ``origin`` says whether the
    trigger is the contract's default, a ``[[bindings]]`` override, or a route the plugin added through
    ``sbt_register_routes`` (then ``interface`` is None for an extension and ``provider`` the plugin's name;
    a static files directory shows as ``GET <prefix>/{file}``)."""

    hook: str
    interface: Interface | None
    provider: str
    trigger: AnyTrigger
    origin: Literal["default", "config", "plugin"] = "default"
    enabled: bool = True

    def to_json(self) -> dict[str, Any]:
        """Stable JSON for ``sbt bindings --json``: the fields in order, camelCase, as the models' converter
        writes them, the trigger led by its ``kind`` (which the converter leaves out, as it is not an
        argument) and a schedule's without its parsed ``spec`` (the expression says it)."""
        data: dict[str, Any] = to_json(self)
        trigger = data["trigger"]
        trigger.pop("spec", None)
        data["trigger"] = {"kind": self.trigger.kind, **trigger}
        return data


@attrs.frozen
class BindingTable:
    """All bindings, in contract order. Adapters read the slice they serve."""

    bindings: tuple[Binding, ...]

    def __iter__(self) -> Any:
        return iter(self.bindings)

    def enabled(self) -> list[Binding]:
        return [b for b in self.bindings if b.enabled]

    def events(self) -> list[Binding]:
        return [b for b in self.enabled() if isinstance(b.trigger, EventTrigger)]

    def routes(self) -> list[Binding]:
        """Route bindings of contract hooks (the routes plugins add are :meth:`plugin_routes`)."""
        return [b for b in self.enabled() if isinstance(b.trigger, RouteTrigger) and b.origin != "plugin"]

    def plugin_routes(self) -> list[Binding]:
        """Routes and static files plugins add through ``sbt_register_routes``."""
        return [b for b in self.bindings if b.origin == "plugin"]

    def schedules(self) -> list[Binding]:
        return [b for b in self.enabled() if isinstance(b.trigger, ScheduleTrigger)]

    def get(self, hook: str) -> Binding | None:
        return next((b for b in self.bindings if b.hook == hook), None)

    def to_json(self) -> list[dict[str, Any]]:
        return [b.to_json() for b in self.bindings]


def find_route_clashes(routes: Iterable[tuple[str, RouteTrigger]]) -> list[str]:
    """Pairs of routes with the same method and path shape (``/a/{x}`` and ``/a/{y}`` clash), named."""
    seen: dict[tuple[str, str], str] = {}
    problems = []
    for owner, route in routes:
        shape = route.shape
        if shape in seen:
            problems.append(f"route {route.method} {route.path} of {owner} clashes with {seen[shape]}")
        else:
            seen[shape] = owner
    return problems


def plugin_route_bindings(plugin_routes: Mapping[str, Routes], catalog: PluginCatalog) -> list[Binding]:
    """One row per route and static directory of ``plugin_routes`` (by plugin name), hook ``sbt_register_routes``."""
    rows = []
    for owner, routes in plugin_routes.items():
        record = catalog.get(owner)
        interfaces = record.interfaces if record is not None else ()
        interface = interfaces[0] if len(interfaces) == 1 else None
        triggers = [trigger for trigger, _ in routes.routes] + [static.trigger() for static in routes.static]
        rows += [Binding("sbt_register_routes", interface, owner, t, "plugin") for t in triggers]
    return rows


def build_binding_table(catalog: PluginCatalog, config: Config,
                        plugin_routes: Mapping[str, Routes] | None = None) -> BindingTable:
    """Bindings of every contract hook that the selected provider of its interface implements, then the
    routes plugins add (``plugin_routes``, as :attr:`sbt_core.plugins.Providers.routes` holds them).

    :raises StartupError: two routes clash (with each other or with a core route).
    """
    overrides = {o.hook: o for o in config.bindings}
    rows: list[Binding] = []
    for hook, row in CONTRACT.items():
        selection = config.provider(row.interface)
        if selection is None:
            continue
        record = catalog.get(selection.type)
        if record is None or hook not in record.hooks:
            continue
        override = overrides.get(hook)
        trigger = override.trigger if override and override.trigger else row.default_trigger
        origin: Literal["default", "config"] = "config" if override else "default"
        enabled = override.enabled if override else True
        rows.append(Binding(hook, row.interface, selection.type, trigger, origin, enabled))
    rows += plugin_route_bindings(plugin_routes or {}, catalog)
    routes = [(f"core route {r.method} {r.path}", r) for r in CORE_ROUTES]
    routes += [(b.hook if b.origin != "plugin" else f"plugin '{b.provider}'", b.trigger) for b in rows
               if b.enabled and isinstance(b.trigger, RouteTrigger)]
    clashes = find_route_clashes(routes)
    if clashes:
        raise StartupError("; ".join(clashes))
    return BindingTable(tuple(rows))
