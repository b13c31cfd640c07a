"""The ASGI app: one Starlette route per enabled route binding, the core routes, the core's route groups,
and the routes and static files plugins add through ``sbt_register_routes``.

Every route goes through the same steps: body size limit (:class:`BodyLimitMiddleware`, 413), the JWT
authorizer and the route's scope (401/403; skipped for ``authorizer = "none"`` routes such as the
billing webhook), the endpoint, then error mapping: an :class:`~sbt_core.errors.SbtError` becomes
``{"message": ...}`` with its status; anything else is logged and answered 500 with a generic message,
so internals and secrets never reach the caller. Provider hooks are synchronous and run in Starlette's
worker threads, so a slow provider never stalls the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ... import input_policy
from ...bindings import CORE_ROUTES, BindingTable, find_route_clashes
from ...errors import BadRequestError, PayloadTooLargeError, SbtError, StartupError, UnauthorizedError
from ...hookspecs import CONTRACT
from ...models import AuthSettings, to_json
from ...triggers import Authorizer as AuthorizerKind
from ...triggers import RouteTrigger
from ..authorizer import Authorizer, JwksSource, StaticJwks, bearer_token
from ..contracts import EventBus, QueryParam, RouteDoc, RouteGroup, route_doc
from . import events as ev
from ._json import FastJSONResponse, JSONAnswer
from .hooks import hook_route, json_body
from .operation import Endpoint, Operation

if TYPE_CHECKING:
    from ...config import Config
    from ...plugins import Providers
    from ..metrics import Metrics
    from .schema import SchemaRegistry

__all__ = ["BodyLimitMiddleware", "ControlPlaneLike", "Operation", "build_app", "error_response"]

log = logging.getLogger("sbt.http")

#: Upper bound of ``GET /events?limit=``.
MAX_EVENTS_PAGE = 1000


class ControlPlaneLike(Protocol):
    """What :func:`build_app` reads of the control plane (``sbt_core.runtime.control_plane.ControlPlane``);
    a ``metrics`` attribute (:class:`~sbt_core.runtime.metrics.Metrics`), when it has one, counts requests."""

    providers: Providers
    bindings: BindingTable
    bus: EventBus
    config: Config
    auth_settings: AuthSettings | None


# --- errors ------------------------------------------------------------------------------------------------

def error_response(exc: SbtError) -> JSONAnswer:
    """``{"message": ...}`` with the error's status; 401/403 carry ``WWW-Authenticate`` (RFC 6750)."""
    headers = {}
    if exc.status == 401:
        headers["www-authenticate"] = 'Bearer error="invalid_token"'
    elif exc.status == 403:
        headers["www-authenticate"] = 'Bearer error="insufficient_scope"'
    return JSONAnswer({"message": exc.message}, exc.status, headers=headers)


def _internal_error() -> JSONAnswer:
    return JSONAnswer({"message": "Internal server error"}, 500)


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path. Starlette's 405 names only the first matching route's
    (``POST`` for ``/events``, which ``GET`` reads too), since each operation is a route of its own."""
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(request.scope["path"]):
            methods |= route.methods
    return ", ".join(sorted(methods))


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    # Starlette's own 404 (no route) and 405 (wrong method) in our envelope.
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return JSONAnswer({"message": exc.detail}, exc.status_code, headers=headers)


async def _unhandled(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _internal_error()


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413, whether announced by Content-Length or streamed
    (chunked), before any endpoint runs; the body read so far is replayed to the app unchanged."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Built only when needed: building the 413 response up front cost every request ~10 us.
        await error_response(PayloadTooLargeError(f"request body larger than {self.max_bytes} bytes"))(
            scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = self._too_large
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    announced = int(value)
                except ValueError:
                    await error_response(BadRequestError("Content-Length is not a number"))(scope, receive, send)
                    return
                if announced > self.max_bytes:
                    await too_large(scope, receive, send)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# --- the authorizer step -------------------------------------------------------------------------------------

def _make_authorizer(cp: ControlPlaneLike) -> Authorizer | None:
    """The authorizer for the selected auth provider. An auth provider that signs tokens itself may offer
    ``jwks() -> {"keys": [...]}``: its keys are then read in-process (a request to our own JWKS route would
    wait on this very server); any other provider's keys are fetched from its ``jwks_url``."""
    settings = cp.auth_settings
    if settings is None:
        return None
    instance = cp.providers.instances.get("auth") if cp.providers is not None else None
    own_keys = getattr(instance, "jwks", None)
    jwks: JwksSource | None = StaticJwks(own_keys) if callable(own_keys) else None
    return Authorizer(settings, jwks)


def _guard(op: Operation, authorizer: Authorizer | None) -> Endpoint:
    trigger = op.trigger
    needs_jwt = trigger.authorizer is AuthorizerKind.JWT

    async def endpoint(request: Request) -> Response:
        try:
            request.state.claims = None
            _check_names(request)
            if needs_jwt:
                if authorizer is None:
                    raise UnauthorizedError("no auth provider is configured, so routes that need a token are closed")
                token = bearer_token(request.headers.get("authorization"))
                if authorizer.needs_io(token):  # a JWKS fetch: keep it off the event loop
                    claims = await run_in_threadpool(authorizer.verify, token)
                else:
                    claims = authorizer.verify(token)
                authorizer.check_scope(claims, trigger.scope)
                request.state.claims = claims
            return await op.endpoint(request)
        except SbtError as exc:
            if exc.status >= 500:
                log.warning("%s %s answered %s: %s", trigger.method, trigger.path, exc.status, exc.message)
            return error_response(exc)
        except Exception:
            log.exception("unhandled error in %s %s", trigger.method, trigger.path)
            return _internal_error()

    return endpoint


def _check_names(request: Request) -> None:
    """The input policy for path parameters (ids) and query parameters: no control characters."""
    for where, params in (("path", request.path_params), ("query", request.query_params)):
        for key, value in params.items():
            if isinstance(value, str):
                problem = input_policy.name_problem(value)
                if problem is not None:
                    raise BadRequestError(f"{key} ({where}): {problem}")


# --- operations ------------------------------------------------------------------------------------------------

def _first_line(text: str | None) -> str:
    return (text or "").strip().split("\n", 1)[0].strip()


def _hook_operation(cp: ControlPlaneLike, hook: str, trigger: RouteTrigger) -> Operation:
    row = CONTRACT[hook]
    if row.route is None:
        raise StartupError(f"hook {hook} is bound to {trigger.method} {trigger.path} but the HTTP app does not "
                           "know how to decode its request")
    route = hook_route(row)
    providers = cp.providers

    async def endpoint(request: Request) -> Response:
        body = await request.body()
        kwargs = route.decode(request, body)
        result = await run_in_threadpool(providers.call, hook, **kwargs)
        return route.encode(result)

    from ... import hookspecs

    spec = getattr(getattr(hookspecs, row.interface), hook, None)
    return Operation(trigger=trigger, endpoint=endpoint, operation_id=hook, summary=_first_line(spec.__doc__ if spec
                     else row.sbt_property), tag=row.interface, hook_route=route,
                     doc=RouteDoc(request_schema=(lambda reg: reg.request_ref(route.body_model)) if route.body_model
                                  else None, response_schema=route.response, status=route.status, query=route.query))


def _core_trigger(method: str, path: str) -> RouteTrigger:
    return next(r for r in CORE_ROUTES if r.method == method and r.path == path)


def _events_schema(reg: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {
        "data": {"type": "array", "items": _record_schema(reg)},
        "total": {"type": "integer", "minimum": 0, "description": "Events the event log holds, newest first."}},
        "required": ["data", "total"]}


def _record_schema(reg: SchemaRegistry) -> dict[str, Any]:
    from ..contracts import EventRecord

    return reg.ref(EventRecord)


def _put_events_request(reg: Any) -> dict[str, Any]:
    name = {"type": "string", "minLength": 1, "pattern": input_policy.NONBLANK_NAME_PATTERN}
    entry = {"type": "object", "required": ["Source", "DetailType", "Detail"], "additionalProperties": False,
             "properties": {
                 "Source": name, "DetailType": name,
                 "Detail": {"anyOf": [{"type": "string", "description": "JSON text of an object"},
                                      {"type": "object"}]},
                 "Time": {"type": "string", "format": "date-time"},
                 "Resources": {"type": "array", "items": {"type": "string"}},
                 "EventBusName": {"type": "string"}, "TraceHeader": {"type": "string"}}}
    from ...models import Event

    return {"anyOf": [
        {"type": "object", "required": ["Entries"], "additionalProperties": False,
         "properties": {"Entries": {"type": "array", "items": entry, "minItems": 1}}},
        {"type": "array", "items": reg.ref(Event), "minItems": 1}]}


def _put_events_response(reg: Any) -> dict[str, Any]:
    return {"type": "object", "required": ["FailedEntryCount", "Entries"],
            "description": "EventBridge PutEvents' partial failure: the answer is 200 even when entries fail "
                           "(an entry of the wrong type, a refused detail); FailedEntryCount counts them and "
                           "each failed entry carries ErrorCode and ErrorMessage instead of EventId, in order.",
            "properties": {
        "FailedEntryCount": {"type": "integer"},
        "Entries": {"type": "array", "items": {"type": "object", "properties": {
            "EventId": {"type": "string"}, "ErrorCode": {"type": "string"}, "ErrorMessage": {"type": "string"}}}}}}


def _core_operations(cp: ControlPlaneLike, openapi: Callable[[], dict[str, Any]]) -> list[Operation]:
    bus = cp.bus

    problems_of = getattr(cp, "health_problems", None)

    async def health(request: Request) -> Response:
        # A load balancer takes a process out on 503: one whose broker or databases are unreachable.
        problems = await run_in_threadpool(problems_of) if problems_of is not None else []
        if problems:
            return JSONAnswer({"status": "unavailable", "message": "; ".join(problems), "problems": problems},
                                status_code=503)
        return JSONAnswer({"status": "ok"})

    async def openapi_json(request: Request) -> Response:
        return JSONAnswer(openapi())

    durable = bool(getattr(bus, "durable", False))

    async def put_events(request: Request) -> Response:
        parsed = ev.parse_entries(json_body(await request.body()))
        # A durable bus answers once the events are on disk: its accept waits for a commit, in a thread,
        # so the loop serves other requests meanwhile (and their events share that commit).
        answer = await run_in_threadpool(ev.put_events_response, parsed, bus) if durable \
            else ev.put_events_response(parsed, bus)
        # Only strings and ints: orjson renders the same bytes as JSONResponse, several times faster.
        return FastJSONResponse(answer)

    async def list_events(request: Request) -> Response:
        raw = request.query_params.get("limit", "50")
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_EVENTS_PAGE:
            raise BadRequestError(f"limit: must be an integer between 1 and {MAX_EVENTS_PAGE}")
        records = await run_in_threadpool(bus.recent, int(raw))
        return JSONAnswer({"data": [to_json(r) for r in records], "total": bus.logged()})

    async def get_event(request: Request) -> Response:
        # In a thread: with [events] database_url the log is read from the database.
        record = await run_in_threadpool(ev.get_record, bus, request.path_params["eventId"])
        return JSONAnswer({"data": to_json(record)})

    def status_schema(reg: Any) -> dict[str, Any]:
        return {"type": "object", "properties": {"status": {"type": "string", "enum": ["ok"]}}, "required": ["status"]}

    def record_schema(reg: Any) -> dict[str, Any]:
        return {"type": "object", "properties": {"data": _record_schema(reg)}, "required": ["data"]}

    return [
        Operation(_core_trigger("GET", "/health"), health, "health",
                  "Health: 200 {\"status\": \"ok\"}; 503 with the problems when the event broker or a database "
                  "cannot be reached.", "core",
                  doc=RouteDoc(response_schema=status_schema)),
        Operation(_core_trigger("GET", "/openapi.json"), openapi_json, "openapi",
                  "This OpenAPI 3.1 document, generated from the binding table.", "core",
                  doc=RouteDoc(response_schema=lambda reg: {"type": "object"})),
        Operation(_core_trigger("POST", "/events"), put_events, "put_events",
                  "Put a batch of events on the bus (EventBridge PutEvents-like, per-entry results).", "events",
                  doc=RouteDoc(request_schema=_put_events_request, response_schema=_put_events_response)),
        Operation(_core_trigger("GET", "/events"), list_events, "list_events",
                  "Recent events, newest first, with each binding's delivery status.", "events",
                  doc=RouteDoc(response_schema=_events_schema,
                               query=(QueryParam("limit", "integer", f"how many (1-{MAX_EVENTS_PAGE}, default 50)",
                                                 bounds={"minimum": 1, "maximum": MAX_EVENTS_PAGE}),))),
        Operation(_core_trigger("GET", "/events/{eventId}"), get_event, "get_event",
                  "One event of the log with each binding's delivery status.", "events",
                  doc=RouteDoc(response_schema=record_schema)),
    ]


def _group_operations(group: RouteGroup, tag: str) -> list[Operation]:
    ops = []
    for trigger, endpoint in group:
        name = getattr(endpoint, "__name__", "endpoint")
        doc = route_doc(endpoint)
        ops.append(Operation(trigger, endpoint, doc.operation_id or (name if name.startswith(tag) else f"{tag}_{name}"),
                             _first_line(getattr(endpoint, "__doc__", None)) or f"{trigger.method} {trigger.path}",
                             doc.tag or tag, doc=doc))
    return ops


def _group_tag(group: RouteGroup) -> str:
    first = next(iter(group), None)
    if first is None:
        return "routes"
    segment = first[0].path.strip("/").split("/", 1)[0]
    return segment.lstrip(".") or "routes"


def build_app(control_plane: ControlPlaneLike, route_groups: Iterable[RouteGroup] = (), *,
              authorizer: Authorizer | None = None) -> Starlette:
    """The control-plane ASGI app.

    :param control_plane: providers, binding table, bus, config and auth settings (see :class:`ControlPlaneLike`).
    :param route_groups: more core routes (e.g. the tenant registry's ``/tenant-registrations``), each
        ``(RouteTrigger, async endpoint(request) -> Response)``, given the same body limit, authorizer,
        scope check and error mapping; verified claims are in ``request.state.claims``. The plugins' routes
        (``control_plane.providers.routes``) are mounted the same way, tagged with the plugin's name.
    :param authorizer: replaces the one derived from ``control_plane.auth_settings`` (tests).
    :raises StartupError: a route binding whose hook has no request decoding, or two routes that clash.
    """
    cp = control_plane
    auth = authorizer or _make_authorizer(cp)
    document: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not document:
            from .openapi import build_openapi

            document.update(build_openapi(operations, cp.auth_settings))
        return document

    operations: list[Operation] = _core_operations(cp, openapi)
    for group in route_groups:
        operations += _group_operations(group, _group_tag(group))
    for binding in cp.bindings.routes():
        assert isinstance(binding.trigger, RouteTrigger)
        operations.append(_hook_operation(cp, binding.hook, binding.trigger))
    plugin_routes = cp.providers.routes if cp.providers is not None else {}
    for owner, added in plugin_routes.items():
        operations += _group_operations(added.routes, owner)
    static = [static for added in plugin_routes.values() for static in added.static]
    missing = [f"{s.path} -> {s.directory}" for s in static if not s.directory.is_dir()]
    if missing:
        raise StartupError(f"static files directory not found: {', '.join(missing)}")
    clashes = find_route_clashes([(op.operation_id, op.trigger) for op in operations]
                                 + [(f"static files {s.directory}", s.trigger()) for s in static])
    if clashes:
        raise StartupError("; ".join(clashes))

    routes: list[BaseRoute] = [Route(op.trigger.path, _guard(op, auth), methods=[op.trigger.method],
                                     name=op.operation_id) for op in operations]
    # Static files are public by design (stylesheets, scripts); what they call goes through the API's scopes.
    routes += [Mount(s.path, app=StaticFiles(directory=s.directory)) for s in static]
    max_body = cp.config.server.max_body_bytes
    middleware = [Middleware(BodyLimitMiddleware, max_bytes=max_body)]
    metrics: Metrics | None = getattr(cp, "metrics", None)
    if metrics is not None:  # outermost: a 413 is counted and timed too
        from ..metrics import MetricsMiddleware

        middleware.insert(0, Middleware(MetricsMiddleware, metrics=metrics))
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={HTTPException: _http_exception, Exception: _unhandled})
    app.state.control_plane = cp
    app.state.authorizer = auth
    app.state.operations = tuple(operations)
    return app

