"""HTTP routes of the dead-letter store, mounted by the HTTP app as a core route group.

- ``GET /dead-letters`` (scope ``event/event_read``; query ``eventId``, ``target`` filters):
  ``{"data": [{event, target, attempts, lastError, deadLettered}]}``, oldest first.
- ``POST /dead-letters/replay`` (scope ``event/event_write``; body ``{"eventId"?, "target"?}``, empty or
  ``{}`` = everything): re-delivers each to the target that failed it; ``{"data": [<replayed>]}``, 404
  when a filter matches nothing.

``sbt events dlq list|replay`` call these on the running server, whose bus replays (the store itself may be
in memory or in ``<state_dir>/events.sqlite3``, see ``dead_letters.py``).
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ... import input_policy
from ...errors import BadRequestError
from ...models import to_json
from ...triggers import RouteTrigger
from ..contracts import QueryParam, RouteDoc, RouteGroup, document_route
from ..http._json import JSONAnswer
from .core import Bus
from .dead_letters import DeadLetter

__all__ = ["dead_letter_routes", "read_filters"]


def read_filters(data: Any) -> dict[str, str | None]:
    """``{"eventId", "target"}`` of a replay body (or query) as keyword filters; unknown keys refused.

    :raises BadRequestError: not an object, an unknown key, or a non-string value.
    """
    if data is None:
        return {"event_id": None, "target": None}
    if not isinstance(data, dict):
        raise BadRequestError("expected a JSON object {\"eventId\"?, \"target\"?}")
    unknown = sorted(set(data) - {"eventId", "target"})
    if unknown:
        raise BadRequestError(f"unknown field(s) {', '.join(unknown)}; valid: eventId, target")
    for key in ("eventId", "target"):
        if data.get(key) is not None and (not isinstance(data[key], str) or not data[key]):
            raise BadRequestError(f"{key}: expected a non-empty string")
    return {"event_id": data.get("eventId"), "target": data.get("target")}


def dead_letter_routes(bus: Bus) -> RouteGroup:
    """The dead-letter routes of ``bus`` as ``(RouteTrigger, endpoint)`` pairs (triggers from CORE_ROUTES)."""
    from ...bindings import CORE_ROUTES

    def trigger(method: str, path: str) -> RouteTrigger:
        return next(r for r in CORE_ROUTES if (r.method, r.path) == (method, path))

    async def list_dead_letters(request: Request) -> Response:
        """Dead-lettered events with the target that failed them, oldest first."""
        filters = read_filters(dict(request.query_params) or None)
        letters = await run_in_threadpool(lambda: bus.dead_letters(**filters))  # the store may be a database
        return JSONAnswer({"data": to_json(letters)})

    async def replay_dead_letters(request: Request) -> Response:
        """Re-deliver dead letters, each to the target that failed it only."""
        body = await request.body()
        data = None
        if body.strip():  # no body is no filter; a body given is an object (null is not)
            data = input_policy.loads(body)
            if not isinstance(data, dict):
                raise BadRequestError("expected a JSON object {\"eventId\"?, \"target\"?}")
        replayed = await run_in_threadpool(lambda: bus.replay(**read_filters(data)))
        return JSONAnswer({"data": to_json(replayed)})

    def letters_schema(reg: Any) -> dict[str, Any]:
        return {"type": "object", "properties": {"data": {"type": "array", "items": reg.ref(DeadLetter)}},
                "required": ["data"]}

    # read_filters' rule: a filter given is a non-empty string (null, like absent, is no filter).
    filters = (QueryParam("eventId", "string", "only this event's dead letters", bounds={"minLength": 1}),
               QueryParam("target", "string", "only this binding's (hook or subscriber name)",
                          bounds={"minLength": 1}))

    def replay_request(reg: Any) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": False,
                "description": "no body, like {}, replays every dead letter",
                "properties": {f.name: {"type": ["string", "null"], "description": f.description, **f.bounds}
                               for f in filters}}

    document_route(list_dead_letters, RouteDoc("list_dead_letters", "events", response_schema=letters_schema,
                                               query=filters))
    document_route(replay_dead_letters, RouteDoc("replay_dead_letters", "events", request_schema=replay_request,
                                                 response_schema=letters_schema, body_required=False))
    return [
        (trigger("GET", "/dead-letters"), list_dead_letters),
        (trigger("POST", "/dead-letters/replay"), replay_dead_letters),
    ]
