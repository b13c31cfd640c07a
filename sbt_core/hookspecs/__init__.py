"""The contract at the centre: one hookspec module per SBT interface, plus lifecycle hooks.

:data:`CONTRACT` maps each interface hook to its :class:`HookDef` (SBT property, required, default trigger).
"""

from types import ModuleType

from . import auth, billing, lifecycle, metering
from ._contract import CONTRACT, INTERFACES, SBT_INTERFACES, HookDef, Interface

#: Modules to hand to ``PluginManager.add_hookspecs``.
SPEC_MODULES: tuple[ModuleType, ...] = (auth, billing, metering, lifecycle)


def interface_of(hook_name: str) -> Interface | None:
    """The interface an interface hook belongs to, or None for lifecycle and unknown hooks."""
    row = CONTRACT.get(hook_name)
    return row.interface if row else None


def hooks_of(interface: Interface) -> list[HookDef]:
    """The contract rows of one interface, in declaration order."""
    return [row for row in CONTRACT.values() if row.interface == interface]


__all__ = ["CONTRACT", "INTERFACES", "SBT_INTERFACES", "SPEC_MODULES", "HookDef", "Interface", "hooks_of",
           "interface_of"]
