"""One mounted route as the app serves it and the OpenAPI document describes it (shared by
:mod:`.app`, which builds them, and :mod:`.openapi`, which documents them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
from starlette.requests import Request
from starlette.responses import Response

from ...triggers import RouteTrigger
from ..contracts import QueryParam, Schema
from .hooks import HookRoute

__all__ = ["Endpoint", "Operation"]

Endpoint = Callable[[Request], Awaitable[Response]]


@attrs.frozen
class Operation:
    """One mounted route: its trigger, endpoint (``async (request) -> Response``, run after the authorizer),
    and what the OpenAPI document says of it (the fields after ``hook_route`` as in
    :class:`~sbt_core.runtime.contracts.RouteDoc`)."""

    trigger: RouteTrigger
    endpoint: Endpoint
    operation_id: str
    summary: str
    tag: str
    hook_route: HookRoute | None = None
    request_schema: Schema | None = None
    response_schema: Schema | None = None
    status: int = 200
    query: tuple[QueryParam, ...] = ()
    media_type: str = "application/json"
    body_required: bool = True
    request_media_type: str = "application/json"
    path: tuple[QueryParam, ...] = ()
    errors: tuple[int, ...] = ()
