"""One mounted route as the app serves it and the OpenAPI document describes it (shared by
:mod:`.app`, which builds them, and :mod:`.openapi`, which documents them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
from starlette.requests import Request
from starlette.responses import Response

from ...triggers import RouteTrigger
from ..contracts import RouteDoc
from .hooks import HookRoute

__all__ = ["Endpoint", "Operation"]

Endpoint = Callable[[Request], Awaitable[Response]]


@attrs.frozen
class Operation:
    """One mounted route: its trigger, endpoint (``async (request) -> Response``, run after the authorizer),
    resolved ``operation_id``, ``summary`` and ``tag``, and ``doc``, what the OpenAPI document says of its
    status, bodies and parameters (a route group's own :class:`~sbt_core.runtime.contracts.RouteDoc`, or one
    built for a hook or core route)."""

    trigger: RouteTrigger
    endpoint: Endpoint
    operation_id: str
    summary: str
    tag: str
    hook_route: HookRoute | None = None
    doc: RouteDoc = RouteDoc()
