"""sbt extension ``console``: the operator web console, served under ``/console`` by ``sbt serve``.

An extension (it implements no interface) that adds, through ``sbt_register_routes``:

- ``GET /console`` (public): the single page. Every asset is inside this package (``static/``, plain
  JavaScript modules and CSS, no build step, no CDN); the page signs in with a bearer token kept in the
  browser's ``sessionStorage`` and calls the same public API, with the same scopes, as any other client.
- ``GET /console/static/...`` (public): the scripts and stylesheet.
- ``GET /console/api/bindings`` (scope ``event/event_read``): the binding table and the plugins of the
  running control plane (what ``sbt bindings`` and ``sbt plugins list --json`` print), which no core route
  serves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from sbt_core import hookimpl
from sbt_core.models.scopes import EVENT_READ
from sbt_core.routes import RouteDoc, Routes, StaticFiles, document_route
from sbt_core.triggers import Authorizer, RouteTrigger

__all__ = ["BASE_PATH", "STATIC", "Console"]

#: Where the console is served.
BASE_PATH = "/console"
#: The packaged assets.
STATIC = Path(__file__).parent / "static"


def _control_plane_json(control_plane: Any) -> dict[str, Any]:
    catalog = getattr(control_plane, "catalog", None)
    plugins = [record.to_json() for record in catalog.records.values()] if catalog is not None else []
    return {"bindings": control_plane.bindings.to_json(), "plugins": plugins}


class Console:
    """The console extension (entry point ``console``)."""

    @hookimpl
    def sbt_register_routes(self) -> Routes:
        """``GET /console``, ``GET /console/api/bindings`` and the static assets."""
        page = (STATIC / "index.html").read_text(encoding="utf-8")

        async def console_page(request: Request) -> Response:
            """The operator console (HTML); it signs in with a bearer token and calls the public API."""
            # no-store: a new version of the page must never meet scripts cached from an older one.
            return HTMLResponse(page, headers={"cache-control": "no-store"})

        async def console_bindings(request: Request) -> Response:
            """The running control plane's bindings and plugins: ``{"data": {"bindings": [...], "plugins": [...]}}``."""
            return JSONResponse({"data": _control_plane_json(request.app.state.control_plane)})

        document_route(console_page, RouteDoc(media_type="text/html", response_schema=lambda reg: {"type": "string"}))
        return Routes(
            routes=[(RouteTrigger("GET", BASE_PATH, authorizer=Authorizer.NONE), console_page),
                    (RouteTrigger("GET", f"{BASE_PATH}/api/bindings", scope=EVENT_READ), console_bindings)],
            static=[StaticFiles(f"{BASE_PATH}/static", STATIC)],
        )
