"""Plugin loading (:func:`discover`), selection (:func:`build_providers`) and the typed facades."""

from ._loader import (
    BUILTIN_PLUGINS,
    ENTRY_POINT_GROUP,
    LOAD_ENV,
    STRICT_ENV,
    Kind,
    PluginCatalog,
    PluginRecord,
    Status,
    discover,
    new_plugin_manager,
)
from ._select import Providers, build_providers, check_required_hooks, missing_required_hooks
from .facade import AuthFacade, BillingFacade, MeteringFacade

__all__ = [
    "BUILTIN_PLUGINS", "ENTRY_POINT_GROUP", "LOAD_ENV", "STRICT_ENV", "AuthFacade", "BillingFacade", "Kind",
    "MeteringFacade", "PluginCatalog", "PluginRecord", "Providers", "Status", "build_providers",
    "check_required_hooks", "discover", "missing_required_hooks", "new_plugin_manager",
]
