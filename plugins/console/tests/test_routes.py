"""The console's routes, without a browser: what it serves, to whom, and where it is listed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sbt_console import STATIC, Console

from sbt_core.testing import Harness, start_control_plane


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[Harness]:
    harness = start_control_plane(tmp_path, plugins={"console": Console})
    yield harness
    harness.close()


def test_the_page_and_its_assets_are_public(plane: Harness) -> None:
    anonymous = plane.client(authenticated=False)
    page = anonymous.get("/console")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:href|src)="(/console/static/[^"]+)"', page.text)
    assert "/console/static/console.css" in assets and "/console/static/js/app.js" in assets
    for asset in assets:
        assert anonymous.get(asset).status_code == 200, asset
    assert anonymous.get("/console/").text == page.text  # redirected to /console


def test_every_module_the_scripts_import_is_in_the_package(plane: Harness) -> None:
    """No CDN, no build step: each relative import resolves to a file shipped in ``static/``."""
    anonymous = plane.client(authenticated=False)
    scripts = sorted((STATIC / "js").rglob("*.js"))
    assert scripts
    for script in scripts:
        for target in re.findall(r'from "(\.[^"]+)"', script.read_text()):
            resolved = (script.parent / target).resolve()
            assert resolved.is_file(), f"{script.name} imports missing {target}"
            url = "/console/static/" + resolved.relative_to(STATIC).as_posix()
            assert anonymous.get(url).status_code == 200, url
        assert not re.search(r"https?://(?!www\.w3\.org)", script.read_text()), f"{script.name} reaches out"


def test_the_bindings_route_needs_the_event_read_scope(plane: Harness) -> None:
    assert plane.client(authenticated=False).get("/console/api/bindings").status_code == 401
    assert plane.client("tenant/tenant_read").get("/console/api/bindings").status_code == 403
    data = plane.client("event/event_read").get("/console/api/bindings").json()["data"]
    hooks = {b["hook"] for b in data["bindings"]}
    assert "auth_create_user" in hooks and "sbt_register_routes" in hooks
    plugins = {p["name"]: p for p in data["plugins"]}
    assert plugins["console"]["kind"] == "extension" and plugins["local"]["kind"] == "provider"


def test_the_console_routes_are_listed_in_bindings_and_openapi(plane: Harness) -> None:
    rows = {(b.provider, b.trigger.describe()) for b in plane.control_plane.bindings.plugin_routes()}
    assert {("console", "GET /console (no JWT)"), ("console", "GET /console/api/bindings [event/event_read]"),
            ("console", "GET /console/static/{file} (no JWT)")} <= rows
    paths = plane.client(authenticated=False).get("/openapi.json").json()["paths"]
    assert paths["/console/api/bindings"]["get"]["security"] == [{"bearerAuth": ["event/event_read"]}]
    assert "/console" in paths and not [p for p in paths if p.startswith("/console/static")]
