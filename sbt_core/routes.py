"""What a plugin adds to ``sbt serve`` through the ``sbt_register_routes`` hook (datasette's
``register_routes``): HTTP routes, each with its :class:`~sbt_core.triggers.RouteTrigger` (a scope, or
``authorizer="none"`` for a public route), and directories of static files.

Any plugin may implement the hook: an extension (a plugin implementing no interface, such as the console)
or a provider (the built-in ``local`` auth provider serves its token endpoint and JWKS this way)::

    from sbt_core import hookimpl
    from sbt_core.routes import Routes, StaticFiles
    from sbt_core.triggers import RouteTrigger

    class Hello:
        @hookimpl
        def sbt_register_routes(self) -> Routes:
            async def hello(request: Request) -> Response:
                \"\"\"Say hello to the caller.\"\"\"
                return JSONResponse({"data": request.state.claims["sub"]})

            return Routes(routes=[(RouteTrigger("GET", "/hello", scope="tenant/tenant_read"), hello)],
                          static=[StaticFiles("/hello/assets", Path(__file__).parent / "assets")])

The HTTP app gives every route the same body limit, authorizer, scope check and error mapping as the
core's routes (verified claims in ``request.state.claims``); ``sbt bindings`` lists them and
``GET /openapi.json`` documents them (summary from the endpoint's docstring; more with
:func:`document_route`). Static files are public and left out of the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import attrs
from starlette.requests import Request
from starlette.responses import Response

from .runtime.contracts import QueryParam, RouteDoc, document_route
from .triggers import RouteTrigger

__all__ = ["Endpoint", "QueryParam", "RouteDoc", "Routes", "StaticFiles", "document_route"]

#: A Starlette endpoint: ``async def endpoint(request) -> Response``.
Endpoint = Callable[[Request], Awaitable[Response]]


def _prefix(path: str) -> str:
    if not path.startswith("/") or path.rstrip("/") == "" or "{" in path:
        raise ValueError(f"static files path {path!r} must start with / and name a fixed prefix, as /console/assets")
    return path.rstrip("/")


@attrs.frozen
class StaticFiles:
    """The files under ``directory``, served (GET and HEAD, public) at ``path`` + ``/`` + their relative name.

    :raises ValueError: ``path`` is not a fixed prefix starting with ``/``.
    """

    path: str = attrs.field(converter=_prefix)
    directory: Path = attrs.field(converter=Path)

    def trigger(self) -> RouteTrigger:
        """How ``sbt bindings`` shows it: ``GET <path>/{file}``, no JWT."""
        return RouteTrigger("GET", f"{self.path}/{{file}}", authorizer="none")


def _routes(pairs: Iterable[tuple[RouteTrigger, Endpoint]]) -> tuple[tuple[RouteTrigger, Endpoint], ...]:
    return tuple(pairs)


def _static(directories: Iterable[StaticFiles]) -> tuple[StaticFiles, ...]:
    return tuple(directories)


@attrs.frozen
class Routes:
    """What one plugin's ``sbt_register_routes`` returns: ``routes`` as ``(RouteTrigger, endpoint)`` pairs
    and ``static`` directories (any iterables; kept as tuples)."""

    routes: tuple[tuple[RouteTrigger, Endpoint], ...] = attrs.field(default=(), converter=_routes)
    static: tuple[StaticFiles, ...] = attrs.field(default=(), converter=_static)
