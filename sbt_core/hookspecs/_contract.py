"""The contract table: for each hookspec, the SBT property it mirrors, whether a selected provider
must implement it, and its default trigger. Bindings are derived from this table, never retyped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

import attrs

from ..models import Event, UsageEvent
from ..triggers import AnyTrigger

Interface = Literal["auth", "billing", "metering"]
INTERFACES: tuple[Interface, ...] = ("auth", "billing", "metering")
#: The SBT interface each of ours mirrors.
SBT_INTERFACES: dict[Interface, str] = {"auth": "IAuth", "billing": "IBilling", "metering": "IMetering"}

F = TypeVar("F", bound=Callable[..., Any])


def event_kwargs(event: Event) -> dict[str, Any]:
    """Arguments of a hook that takes the raw envelope (``event``), as sbt-aws's handlers do."""
    return {"event": event}


def usage_event_kwargs(event: Event) -> dict[str, Any]:
    """Arguments of the ingest hook: the envelope's detail parsed as a :class:`UsageEvent`."""
    return {"usage_event": UsageEvent.from_event(event)}


@attrs.frozen
class HookDef:
    """One row of the contract (DESIGN.md section 2)."""

    name: str
    interface: Interface
    sbt_property: str
    required: bool
    default_trigger: AnyTrigger
    #: For event-triggered hooks: how an event becomes the hook's keyword arguments.
    event_kwargs: Callable[[Event], dict[str, Any]] = event_kwargs

    @property
    def overridable(self) -> bool:
        return self.default_trigger.kind != "startup"


CONTRACT: dict[str, HookDef] = {}


def contract(interface: Interface, sbt_property: str, *, required: bool, trigger: AnyTrigger,
             event_kwargs: Callable[[Event], dict[str, Any]] = event_kwargs) -> Callable[[F], F]:
    """Record a hookspec's contract row beside the spec (the function's name is the hook name)."""

    def mark(func: F) -> F:
        CONTRACT[func.__name__] = HookDef(func.__name__, interface, sbt_property, required, trigger, event_kwargs)
        return func

    return mark
