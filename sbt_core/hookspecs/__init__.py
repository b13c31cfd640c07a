"""The contract at the centre: one hookspec module per SBT interface, plus lifecycle hooks.

:data:`CONTRACT` maps each interface hook to its :class:`HookDef` (SBT property, required, default trigger,
and for a route hook the :class:`RouteShape` of its request and answer).
"""

from types import ModuleType

from . import auth, billing, lifecycle, metering
from ._contract import (
    BATCH_FORMS,
    CONTRACT,
    INTERFACES,
    SBT_INTERFACES,
    BatchForm,
    EventArgument,
    HookDef,
    Interface,
    interface_of_hook,
    parse_each,
)
from .route_shape import Answer, QueryParam, RouteShape, page_query

#: Modules to hand to ``PluginManager.add_hookspecs``.
SPEC_MODULES: tuple[ModuleType, ...] = (auth, billing, metering, lifecycle)


def interface_of(hook_name: str) -> Interface | None:
    """The interface an interface hook (or batch form) belongs to, or None for lifecycle and unknown hooks."""
    return interface_of_hook(hook_name)


def hooks_of(interface: Interface) -> list[HookDef]:
    """The contract rows of one interface, in declaration order."""
    return [row for row in CONTRACT.values() if row.interface == interface]


__all__ = ["BATCH_FORMS", "CONTRACT", "INTERFACES", "SBT_INTERFACES", "SPEC_MODULES", "Answer", "BatchForm",
           "EventArgument", "HookDef", "Interface", "QueryParam", "RouteShape", "hooks_of", "interface_of",
           "page_query", "parse_each"]
