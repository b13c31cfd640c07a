"""Selection: construct the configured providers and make sure only they answer their interface's hooks.

pluggy calls every registered implementation of a hook. Two providers of one interface (or a provider
selected for metering that also implements billing hooks) would both answer, so each interface hook is
called through ``pm.subset_hook_caller`` with every other provider removed: the selected provider's
implementation plus extension wrappers, nothing else.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import attrs
import pluggy

from ..errors import NotImplementedHookError, PluginError, ProviderError, SbtError, StartupError
from ..hookspecs import BATCH_FORMS, CONTRACT, SBT_INTERFACES, Interface, hooks_of, interface_of
from ..models import Event
from ..provider import ProviderContext
from ._loader import PluginCatalog, new_plugin_manager

if TYPE_CHECKING:
    from ..config import Config
    from ..routes import Routes
    from .facade import AuthFacade, BillingFacade, MeteringFacade

log = logging.getLogger("sbt.plugins")


def _timed(caller: Callable[..., Any], hook: str, provider: str,
           record: Callable[[str, str, float], None]) -> Callable[..., Any]:
    def timed(**kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return caller(**kwargs)
        finally:
            record(hook, provider, time.perf_counter() - start)

    return timed


@attrs.define
class Providers:
    """The selected providers of a running control plane.

    Call hooks through the typed facades (``providers.metering.fetch_usage(meter_id, query)``) or, from
    adapters that work on hook names, :meth:`call`. Unselected interfaces are None.
    """

    pm: pluggy.PluginManager
    types: dict[Interface, str]
    instances: dict[Interface, Any]
    contexts: dict[Interface, ProviderContext]
    #: Only the hooks the selected providers implement: the set is fixed once providers are built, so
    #: :meth:`call` (on every event delivery) looks it up instead of walking pluggy's impls.
    _callers: dict[str, Any] = attrs.field(factory=dict, alias="callers")
    #: What each plugin (type name of a provider, name of an extension) adds to ``sbt serve`` through
    #: ``sbt_register_routes``, in registration order.
    routes: dict[str, Routes] = attrs.field(factory=dict)

    @property
    def auth(self) -> AuthFacade | None:
        from .facade import AuthFacade

        return AuthFacade(self) if "auth" in self.instances else None

    @property
    def billing(self) -> BillingFacade | None:
        from .facade import BillingFacade

        return BillingFacade(self) if "billing" in self.instances else None

    @property
    def metering(self) -> MeteringFacade | None:
        from .facade import MeteringFacade

        return MeteringFacade(self) if "metering" in self.instances else None

    def provider_of(self, hook: str) -> str | None:
        """Type name of the provider answering ``hook``, or None when its interface is not selected."""
        interface = interface_of(hook)
        return None if interface is None else self.types.get(interface)

    def implements(self, hook: str) -> bool:
        """Whether the selected provider of the hook's interface implements it."""
        return hook in self._callers

    def call(self, hook: str, **kwargs: Any) -> Any:
        """Call ``hook`` on its interface's selected provider only (plus extension wrappers).

        :raises NotImplementedHookError: ``hook`` is not an interface hook, its interface is not selected, or
            the selected provider lacks it.
        :raises SbtError: whatever the provider raised; any other exception becomes a ProviderError (502).
        """
        caller = self._callers.get(hook)
        if caller is None:
            raise self._refusal(hook)
        try:
            return caller(**kwargs)
        except SbtError:
            raise
        except Exception as exc:
            # Callers exist only for interface hooks whose provider is selected (see build_providers).
            interface = cast("Interface", interface_of(hook))
            who = self.types[interface]
            log.exception("%s provider %r failed in %s", interface, who, hook)
            raise ProviderError(f"{interface} provider '{who}' failed in {hook}: {type(exc).__name__}") from exc

    def _refusal(self, hook: str) -> NotImplementedHookError:
        """Why :meth:`call` has no caller for ``hook`` (kept off the path of every delivered event)."""
        interface = interface_of(hook)
        if interface is None:  # a lifecycle hook or a typo: no one provider answers it
            return NotImplementedHookError(f"{hook} is not an interface hook")
        who = self.types.get(interface)
        if who is None:
            return NotImplementedHookError(f"no {interface} provider is configured ({hook})")
        return NotImplementedHookError(f"the {interface} provider '{who}' does not implement {hook}")

    def time_calls(self, record: Callable[[str, str, float], None]) -> None:
        """From now on, tell ``record(hook, provider type, seconds)`` after every hook call through
        :meth:`call` and the facades, failed ones included (the control plane's metrics)."""
        for hook, caller in list(self._callers.items()):
            self._callers[hook] = _timed(caller, hook, self.provider_of(hook) or "", record)

    def attach(self, sink: Callable[[Event], object]) -> None:
        """Route every provider's ``context.publish`` to ``sink`` (the event bus)."""
        for ctx in self.contexts.values():
            ctx.attach(sink)

    def startup(self) -> None:
        """Call ``sbt_startup`` on every registered plugin."""
        self.pm.hook.sbt_startup()

    def shutdown(self) -> None:
        """Call ``sbt_shutdown`` on every registered plugin; one failure does not stop the others."""
        for impl in reversed(self.pm.hook.sbt_shutdown.get_hookimpls()):
            try:
                impl.function()
            except Exception:
                log.exception("plugin %r failed in sbt_shutdown", impl.plugin_name)


def _implements(pm: pluggy.PluginManager, plugin: object, hook: str) -> bool:
    caller = getattr(pm.hook, hook, None)
    return caller is not None and any(i.plugin is plugin and not (i.wrapper or i.hookwrapper)
                                      for i in caller.get_hookimpls())


def missing_required_hooks(pm: pluggy.PluginManager, plugin: object, interface: Interface) -> list[str]:
    """The required hooks of ``interface`` that ``plugin`` (a provider class or instance registered in ``pm``)
    does not implement, in contract order."""
    return [row.name for row in hooks_of(interface) if row.required and not _implements(pm, plugin, row.name)]


def _missing_message(interface: Interface, type_name: str, missing: list[str]) -> str:
    return (f"{interface} provider '{type_name}' does not implement required "
            f"{SBT_INTERFACES[interface]} hook(s): {', '.join(missing)}")


def check_required_hooks(catalog: PluginCatalog, config: Config) -> list[str]:
    """One problem per selected provider that misses required hooks of its interface, checked on the
    provider classes of ``catalog`` without constructing them (``sbt config validate``, ``sbt plugins
    list``); :func:`build_providers` refuses the same providers with the same words."""
    problems = []
    for interface, selection in config.providers.items():
        record = catalog.get(selection.type)
        if record is None or record.obj is None:
            continue  # load_config reported it
        missing = missing_required_hooks(catalog.pm, record.obj, interface)
        if missing:
            problems.append(_missing_message(interface, selection.type, missing))
    return problems


def build_providers(catalog: PluginCatalog, config: Config, *, state_dir: Path | None = None) -> Providers:
    """Construct each selected provider with its settings and a context, register them and the enabled
    extensions in a fresh PluginManager, and check every required hook is implemented.

    :raises StartupError: a selected provider misses required hooks (all named at once) or fails to construct.
    """
    pm = new_plugin_manager()
    instances: dict[Interface, Any] = {}
    contexts: dict[Interface, ProviderContext] = {}
    types: dict[Interface, str] = {}
    problems: list[str] = []
    root = state_dir or config.state_dir
    for interface, selection in config.providers.items():
        record = catalog.get(selection.type)
        assert record is not None and record.obj is not None  # load_config checked it
        ctx = ProviderContext(type_name=selection.type, interface=interface, state_dir=root)
        try:
            instance = record.obj(selection.settings, ctx)
        except SbtError as exc:
            problems.append(f"{interface} provider '{selection.type}' could not start: {exc.message}")
            continue
        except Exception as exc:
            problems.append(f"{interface} provider '{selection.type}' could not start: {type(exc).__name__}: {exc}")
            continue
        try:
            pm.register(instance, name=f"{interface}:{selection.type}")
        except pluggy.PluginValidationError as exc:
            raise PluginError(selection.type, str(exc)) from None
        instances[interface], contexts[interface], types[interface] = instance, ctx, selection.type
        missing = missing_required_hooks(pm, instance, interface)
        if missing:
            problems.append(_missing_message(interface, selection.type, missing))
    owners = {f"{interface}:{name}": name for interface, name in types.items()}
    for record in catalog.extensions():
        if record.name in config.plugins.disabled:
            continue
        obj = record.obj() if inspect.isclass(record.obj) else record.obj
        pm.register(obj, name=record.name)
        owners[record.name] = record.name
    if problems:
        raise StartupError("; ".join(problems))
    pm.check_pending()
    callers = {}
    for hook in (*CONTRACT, *BATCH_FORMS):
        hook_interface = interface_of(hook)
        selected = instances.get(hook_interface) if hook_interface is not None else None
        if selected is None or not _implements(pm, selected, hook):
            continue
        others = [inst for iface, inst in instances.items() if iface != hook_interface]
        callers[hook] = pm.subset_hook_caller(hook, remove_plugins=others)
    providers = Providers(pm=pm, types=types, instances=instances, contexts=contexts, callers=callers)
    try:
        providers.routes = _collect_routes(pm, owners)
    except StartupError:
        providers.shutdown()  # constructed providers may hold files or connections
        raise
    return providers


def _collect_routes(pm: pluggy.PluginManager, owners: dict[str, str]) -> dict[str, Routes]:
    """``sbt_register_routes`` of every registered plugin, by owner name, in registration order.

    :raises StartupError: a plugin's hook raised or returned something other than Routes or None.
    """
    from ..routes import Routes

    found: dict[str, Routes] = {}
    for impl in reversed(pm.hook.sbt_register_routes.get_hookimpls()):  # pluggy lists the last registered first
        owner = owners.get(impl.plugin_name, impl.plugin_name)
        try:
            result = impl.function()
        except Exception as exc:
            raise StartupError(f"plugin '{owner}' failed in sbt_register_routes: "
                               f"{getattr(exc, 'message', None) or f'{type(exc).__name__}: {exc}'}") from exc
        if result is None:
            continue
        if not isinstance(result, Routes):
            raise StartupError(f"plugin '{owner}': sbt_register_routes must return sbt_core.routes.Routes or None, "
                               f"not {type(result).__name__}")
        found[owner] = result
    return found
