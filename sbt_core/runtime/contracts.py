"""The runtime's contracts: the records and protocols the bus, the HTTP app, the scheduler and the
components agree on (delivery states and records, the :class:`EventBus` protocol and its publishers,
route groups with their OpenAPI documentation). Implementations live in ``bus/``, ``http/``,
``scheduler.py``; the ``ControlPlane`` (``control_plane.py``) assembles them.

Flow (docs/design.md section 6): config -> plugins -> binding table -> adapters (bus, HTTP, scheduler) that only
read the table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

import attrs

# Route groups document their query as route hooks do; the contract owns the record.
from ..hookspecs.route_shape import QueryParam as QueryParam
from ..models import Event
from ..triggers import EventTrigger, RouteTrigger

DeliveryState = Literal["pending", "delivered", "retrying", "dead_lettered", "skipped_duplicate"]


@attrs.frozen
class PutEventsEntryResult:
    """One entry of a PutEvents-like answer: ``eventId`` when accepted, else ``errorCode`` + ``errorMessage``."""

    event_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None


@attrs.frozen
class Delivery:
    """The delivery state of one event to one binding (``target`` is the hook name or core subscriber name).

    ``result`` is what the handler returned once delivered, as JSON (e.g. the ``Customer`` of
    ``billing_create_customer``); informational, as upstream ignores it, and left out of the JSON when None.
    """

    target: str
    state: DeliveryState
    attempts: int = 0
    last_error: str | None = None
    updated: datetime | None = None
    result: Any = attrs.field(default=None, metadata={"omit_if_default": True})


@attrs.frozen
class EventRecord:
    """An event in the event log with every binding's delivery status (``GET /events/{id}``)."""

    event: Event
    received: datetime
    deliveries: tuple[Delivery, ...] = ()


class EventBus(Protocol):
    """What the HTTP app, the CLI, the scheduler, providers and the tenant registry need of the bus."""

    def put_events(self, events: Sequence[Event]) -> list[PutEventsEntryResult]:
        """Accept a batch (PutEvents-like); each accepted event is delivered at least once to every
        binding and core subscriber whose trigger matches. Never blocks on handlers."""

    def subscribe(self, name: str, trigger: EventTrigger, handler: Callable[[Event], Any]) -> None:
        """A core subscriber (e.g. the tenant registry on ``provisionSuccess``), delivered with the same
        retry, dedup and dead-letter rules as a hook binding; ``name`` is its target name in the log."""

    def get(self, event_id: str) -> EventRecord | None:
        """The event log entry of ``event_id``."""

    def recent(self, limit: int = 50) -> list[EventRecord]:
        """The most recent events, newest first."""

    def logged(self) -> int:
        """How many events the event log holds (``GET /events``'s ``total``: "50 of N")."""


#: ``EventBus.put_events`` alone (or the same over HTTP): accept a batch, answer one result per event; what a
#: core component publishes through.
Publisher = Callable[[Sequence[Event]], Sequence[PutEventsEntryResult]]


def attach_subscriber(bus: EventBus | Publisher,
                      subscriptions: Sequence[tuple[str, EventTrigger, Callable[[Event], Any]]]) -> Publisher:
    """Subscribe each ``(name, trigger, handler)`` to ``bus`` and return what to publish through: an
    EventBus's ``put_events``; a bare ``put_events`` callable (no subscriptions then) is itself the publisher."""
    subscribe = getattr(bus, "subscribe", None)
    if subscribe is not None:
        for name, trigger, handler in subscriptions:
            subscribe(name, trigger, handler)
    put: Publisher = bus.put_events if hasattr(bus, "put_events") else bus
    return put


#: A group of core routes the HTTP app mounts beside the hook routes: each (RouteTrigger, endpoint), the
#: endpoint a Starlette ``async def endpoint(request) -> Response``. The app applies the body limit, the
#: authorizer and the trigger's scope before calling it (verified claims in ``request.state.claims``) and
#: maps an SbtError raised by it to ``{"message": ...}`` with its status, exactly as for hook routes.
RouteGroup = Sequence[tuple[RouteTrigger, Callable[..., Any]]]

#: A JSON schema built with the OpenAPI document's schema registry (which collects ``components``).
Schema = Callable[[Any], dict[str, Any]]


@attrs.frozen
class RouteDoc:
    """How a route-group endpoint appears in ``GET /openapi.json``, beside the summary taken from the first
    line of its docstring: the success ``status``, the ``request_schema`` and ``response_schema`` of its
    bodies and its ``query`` parameters. ``operation_id`` defaults to ``<tag>_<endpoint name>`` and ``tag``
    to the group's first path segment. Attached with :func:`document_route`."""

    operation_id: str | None = None
    tag: str | None = None
    status: int = 200
    request_schema: Schema | None = None
    response_schema: Schema | None = None
    query: tuple[QueryParam, ...] = ()
    #: The success answer's media type (``text/html`` for a page, ``text/plain`` for Prometheus' text).
    media_type: str = "application/json"
    #: False when the endpoint also takes no body at all (``POST /dead-letters/replay``: none = every filter off).
    body_required: bool = True
    #: The request body's media type (``application/x-www-form-urlencoded`` for an OAuth token endpoint).
    request_media_type: str = "application/json"
    #: Bounds of path parameters by name (``minLength``, ``maxLength``...), beyond every path parameter's
    #: non-empty name rule; ``type`` and ``description`` are used, ``array`` and ``required`` are not.
    path: tuple[QueryParam, ...] = ()
    #: Error statuses it answers beyond the usual ones, e.g. 401 from a public route that authenticates its
    #: caller itself (an OAuth token endpoint's client authentication).
    errors: tuple[int, ...] = ()


_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])
_ROUTE_DOC = "sbt_route_doc"


def document_route(endpoint: _Endpoint, doc: RouteDoc) -> _Endpoint:
    """Attach ``doc`` to ``endpoint`` for the HTTP app's OpenAPI document; returns ``endpoint``."""
    setattr(endpoint, _ROUTE_DOC, doc)  # on the function itself: a route group is a plain list of pairs
    return endpoint


def route_doc(endpoint: Callable[..., Any]) -> RouteDoc:
    """What :func:`document_route` attached to ``endpoint`` (an empty :class:`RouteDoc` when nothing)."""
    doc = getattr(endpoint, _ROUTE_DOC, None)
    return doc if isinstance(doc, RouteDoc) else RouteDoc()
