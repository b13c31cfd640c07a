"""The contract table: for each hookspec, the SBT property it mirrors, whether a selected provider
must implement it, and its default trigger. Bindings are derived from this table, never retyped.

:func:`contract` (and :func:`batch_of`) both record the row and make the function a pluggy hookspec, so a
hook is declared once, with one decorator. Interface hooks are ``firstresult``: only the selected provider
answers, and its answer is the hook's (lifecycle hooks, in ``lifecycle.py``, are plain ``@hookspec``s)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

import attrs

from .._markers import hookspec
from ..models import Event, UsageEvent
from ..triggers import AnyTrigger, RouteTrigger
from .route_shape import RouteShape

Interface = Literal["auth", "billing", "metering"]
INTERFACES: tuple[Interface, ...] = ("auth", "billing", "metering")
#: The SBT interface each of ours mirrors.
SBT_INTERFACES: dict[Interface, str] = {"auth": "IAuth", "billing": "IBilling", "metering": "IMetering"}

F = TypeVar("F", bound=Callable[..., Any])


def event_kwargs(event: Event) -> dict[str, Any]:
    """Arguments of a hook that takes the raw envelope (``event``), as sbt-aws's handlers do."""
    return {"event": event}


def parse_each(parse: Callable[[Event], Any]) -> Callable[[Sequence[Event]], list[Any]]:
    """A batch parser applying ``parse`` to each event in order: ``[parse(e) for e in events]``, raising
    what the first failing ``parse`` raises."""
    return lambda events: [parse(event) for event in events]


@attrs.frozen
class EventArgument:
    """``event_kwargs`` of a hook whose one argument ``name`` is parsed from the event by ``parse``; the
    bus builds the items of the hook's batch form with ``parse_many`` (``[parse(e) for e in events]``,
    raising what the first failing ``parse`` raises), default ``parse`` of each event."""

    name: str
    parse: Callable[[Event], Any]
    parse_many: Callable[[Sequence[Event]], list[Any]] = attrs.field()

    @parse_many.default
    def _each(self) -> Callable[[Sequence[Event]], list[Any]]:
        return parse_each(self.parse)

    def __call__(self, event: Event) -> dict[str, Any]:
        return {self.name: self.parse(event)}


#: Arguments of the ingest hook: the envelope's detail parsed as a :class:`UsageEvent`.
usage_event_kwargs = EventArgument("usage_event", UsageEvent.from_event, UsageEvent.from_events)


@attrs.frozen
class HookDef:
    """One row of the contract (docs/design.md section 2)."""

    name: str
    interface: Interface
    sbt_property: str
    required: bool
    default_trigger: AnyTrigger
    #: For event-triggered hooks: how an event becomes the hook's keyword arguments.
    event_kwargs: Callable[[Event], dict[str, Any]] = event_kwargs
    #: The hook's optional batch form (see :data:`BATCH_FORMS`), which the bus calls for a burst of events.
    batch_hook: str | None = None
    #: For route-triggered hooks: how the request becomes the hook's arguments and its result the answer.
    route: RouteShape | None = None

    @property
    def overridable(self) -> bool:
        return self.default_trigger.kind != "startup"


CONTRACT: dict[str, HookDef] = {}


@attrs.frozen
class BatchForm:
    """The batch form of an event hook: one call for many events, which the bus prefers over one call
    per event when the selected provider implements it. ``argument`` is its list parameter; each item is
    what the single hook's only keyword argument would have been."""

    name: str
    single: str
    argument: str


#: Batch hooks by name. They are not bindable themselves: they serve the single hook's binding.
BATCH_FORMS: dict[str, BatchForm] = {}


def batch_of(single: str, argument: str) -> Callable[[F], F]:
    """Declare ``func`` a ``firstresult`` hookspec, the batch form of the (already declared) event hook
    ``single``."""

    def mark(func: F) -> F:
        BATCH_FORMS[func.__name__] = BatchForm(func.__name__, single, argument)
        CONTRACT[single] = attrs.evolve(CONTRACT[single], batch_hook=func.__name__)
        return _firstresult(func)

    return mark


def _firstresult(func: F) -> F:
    marked: F = hookspec(firstresult=True)(func)
    return marked


def interface_of_hook(hook: str) -> Interface | None:
    """The interface of a contract hook or of a batch form; None for lifecycle and unknown hooks."""
    if hook in BATCH_FORMS:
        hook = BATCH_FORMS[hook].single
    row = CONTRACT.get(hook)
    return row.interface if row else None


def contract(interface: Interface, sbt_property: str, *, required: bool, trigger: AnyTrigger,
             event_kwargs: Callable[[Event], dict[str, Any]] = event_kwargs,
             route: RouteShape | None = None) -> Callable[[F], F]:
    """Declare ``func`` a ``firstresult`` hookspec and record its contract row (the function's name is the
    hook name). A hook whose default trigger is a route declares its request and answer with ``route``.

    :raises TypeError: a route trigger without a ``route`` shape (or a shape without a route trigger), or a
        shape that does not fit the hook (:meth:`RouteShape.bind`).
    """

    def mark(func: F) -> F:
        if isinstance(trigger, RouteTrigger) != (route is not None):
            raise TypeError(f"{func.__name__}: a hook declares a RouteShape exactly when its trigger is a route")
        bound = route.bind(func, trigger) if route is not None and isinstance(trigger, RouteTrigger) else None
        CONTRACT[func.__name__] = HookDef(func.__name__, interface, sbt_property, required, trigger, event_kwargs,
                                          route=bound)
        return _firstresult(func)

    return mark
