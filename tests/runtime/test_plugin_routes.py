"""Routes and static files from plugins (``sbt_register_routes``): an extension's, a provider's, and a
third-party auth provider serving its own token endpoint and key set."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from typer.testing import CliRunner

from sbt_core import NotFoundError, Provider, StartupError, hookimpl
from sbt_core.cli import CliState, build_app
from sbt_core.models import AdminUser, AuthSettings, CreateUserRequest, Page, UpdateUserRequest, User
from sbt_core.routes import Routes, StaticFiles
from sbt_core.testing import start_control_plane
from sbt_core.triggers import RouteTrigger


class Greeter:
    """An extension: a scoped route, a public route and a directory of static files."""

    assets: Path

    @hookimpl
    def sbt_register_routes(self) -> Routes:
        async def whoami(request: Request) -> Response:
            """Who the caller's token says it is."""
            return JSONResponse({"data": request.state.claims["sub"]})

        async def ping(request: Request) -> Response:
            """Answer pong to anyone."""
            return PlainTextResponse("pong")

        return Routes(routes=[(RouteTrigger("GET", "/greeter/whoami", scope="tenant/tenant_read"), whoami),
                              (RouteTrigger("GET", "/greeter/ping", authorizer="none"), ping)],
                      static=[StaticFiles("/greeter/assets", Greeter.assets)])


@pytest.fixture
def greeter(tmp_path: Path) -> type[Greeter]:
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "hello.txt").write_text("hello from a file")
    Greeter.assets = tmp_path / "assets"
    return Greeter


def test_an_extension_route_gets_the_authorizer_and_its_scope(greeter: type[Greeter], tmp_path: Path) -> None:
    plane = start_control_plane(tmp_path / "state", plugins={"greeter": greeter})
    try:
        assert plane.client(authenticated=False).get("/greeter/whoami").status_code == 401
        assert plane.client("user/user_read").get("/greeter/whoami").status_code == 403
        answer = plane.client("tenant/tenant_read", user="admin").get("/greeter/whoami")
        assert answer.status_code == 200 and answer.json() == {"data": "admin"}
        assert plane.client(authenticated=False).get("/greeter/ping").text == "pong"
        assert plane.client(authenticated=False).get("/greeter/assets/hello.txt").text == "hello from a file"
        assert plane.client(authenticated=False).get("/greeter/assets/nope.txt").status_code == 404
    finally:
        plane.close()


def test_plugin_routes_are_in_the_binding_table_and_the_openapi_document(greeter: type[Greeter],
                                                                        tmp_path: Path) -> None:
    from openapi_spec_validator import validate

    plane = start_control_plane(tmp_path / "state", plugins={"greeter": greeter})
    try:
        rows = [b.to_json() for b in plane.control_plane.bindings.plugin_routes()]
        assert {"hook": "sbt_register_routes", "interface": None, "provider": "greeter", "origin": "plugin",
                "enabled": True, "trigger": {"kind": "route", "method": "GET", "path": "/greeter/whoami",
                                             "scope": "tenant/tenant_read", "authorizer": "jwt"}} in rows
        assert {(r["provider"], r["trigger"]["path"]) for r in rows} == {
            ("greeter", "/greeter/whoami"), ("greeter", "/greeter/ping"), ("greeter", "/greeter/assets/{file}"),
            ("local", "/.well-known/jwks.json"), ("local", "/.well-known/openid-configuration"),
            ("local", "/oauth2/token")}
        document = plane.client(authenticated=False).get("/openapi.json").json()
        validate(document)
        whoami = document["paths"]["/greeter/whoami"]["get"]
        assert whoami["tags"] == ["greeter"] and whoami["summary"] == "Who the caller's token says it is."
        assert whoami["security"] == [{"bearerAuth": ["tenant/tenant_read"]}]
        assert document["paths"]["/greeter/ping"]["get"]["security"] == []
        assert not [p for p in document["paths"] if p.startswith("/greeter/assets")]
    finally:
        plane.close()


def test_sbt_bindings_lists_the_routes_plugins_add(greeter: type[Greeter], tmp_path: Path) -> None:
    config = tmp_path / "sbt.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n[providers.auth]\ntype = "local"\n')
    app = build_app(CliState(extra={"greeter": greeter}, entry_points=False))
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["bindings", "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    routes = {(b["provider"], b["trigger"]["method"], b["trigger"]["path"]) for b in json.loads(result.stdout)
              if b["origin"] == "plugin"}
    assert ("greeter", "GET", "/greeter/whoami") in routes and ("local", "POST", "/oauth2/token") in routes
    table = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["bindings", "--config", str(config)])
    assert "GET /greeter/ping (no JWT)" in table.stdout


class Squatter:
    @hookimpl
    def sbt_register_routes(self) -> Routes:
        async def health(request: Request) -> Response:
            return PlainTextResponse("mine")

        return Routes(routes=[(RouteTrigger("GET", "/health", authorizer="none"), health)])


class Confused:
    @hookimpl
    def sbt_register_routes(self) -> Any:
        return [("GET", "/x")]


class Broken:
    @hookimpl
    def sbt_register_routes(self) -> Routes:
        raise RuntimeError("no assets today")


class Homeless:
    @hookimpl
    def sbt_register_routes(self) -> Routes:
        return Routes(static=[StaticFiles("/homeless", "/nonexistent/sbt-assets")])


@pytest.mark.parametrize(("plugin", "message"), [
    (Squatter, "route GET /health of plugin 'squatter' clashes with core route GET /health"),
    (Confused, "plugin 'confused': sbt_register_routes must return sbt_core.routes.Routes or None, not list"),
    (Broken, "plugin 'broken' failed in sbt_register_routes: RuntimeError: no assets today"),
    (Homeless, "static files directory not found: /homeless -> /nonexistent/sbt-assets"),
])
def test_a_plugin_route_that_clashes_or_a_wrong_answer_stops_start_up(plugin: type, message: str,
                                                                      tmp_path: Path) -> None:
    with pytest.raises(StartupError, match=re.escape(message)):
        plane = start_control_plane(tmp_path, plugins={plugin.__name__.lower(): plugin}, start=False)
        try:
            plane.control_plane.asgi_app  # noqa: B018 - building the app is what refuses a missing directory
        finally:
            plane.close()


# --- a third-party auth provider with its own token endpoint and key set ------------------------------------

_KEY = ec.generate_private_key(ec.SECP256R1())
_PUBLIC_JWK = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(_KEY.public_key())), "kid": "k1", "use": "sig",
               "alg": "ES256"}


class KeyringAuth(Provider):
    """IAuth by a third party: ES256 tokens from ``POST /keyring/token``, keys at ``GET /keyring/keys``.
    It offers no in-process ``jwks()``: the core's authorizer fetches its key set over HTTP."""

    issuer = ""  # set by the test once the port is known

    @hookimpl
    def auth_settings(self) -> AuthSettings:
        return AuthSettings(jwt_issuer=self.issuer, jwt_audience=["keyring"],
                            token_endpoint=f"{self.issuer}/keyring/token",
                            well_known_endpoint_url=f"{self.issuer}/keyring/keys", user_client_id="keyring",
                            jwks_url=f"{self.issuer}/keyring/keys", algorithms=["ES256"])

    @hookimpl
    def sbt_register_routes(self) -> Routes:
        async def keys(request: Request) -> Response:
            """The key set tokens are verified with."""
            return JSONResponse({"keys": [_PUBLIC_JWK]})

        async def token(request: Request) -> Response:
            """Client credentials: a token for the scopes asked."""
            form = dict(x.split("=", 1) for x in (await request.body()).decode().split("&"))
            if form.get("client_secret") != "s3cret":
                return JSONResponse({"error": "invalid_client", "message": "wrong secret"}, 401)
            now = int(time.time())
            claims = {"iss": self.issuer, "aud": "keyring", "client_id": "keyring", "sub": "robot",
                      "token_use": "access", "scope": form.get("scope", "").replace("+", " "), "iat": now,
                      "exp": now + 300}
            return JSONResponse({"access_token": jwt.encode(claims, _KEY, "ES256", headers={"kid": "k1"}),
                                 "token_type": "Bearer"})

        return Routes(routes=[(RouteTrigger("GET", "/keyring/keys", authorizer="none"), keys),
                              (RouteTrigger("POST", "/keyring/token", authorizer="none"), token)])

    @hookimpl
    def auth_create_admin_user(self, admin: AdminUser) -> User | None:
        return None

    @hookimpl
    def auth_create_user(self, user: CreateUserRequest) -> User:
        raise NotFoundError("no users here")

    @hookimpl
    def auth_fetch_all_users(self, limit: int, next_token: str | None) -> Page[User]:
        return Page([])

    @hookimpl
    def auth_fetch_user(self, user_id: str) -> User:
        raise NotFoundError(f"User {user_id} not found.")

    @hookimpl
    def auth_update_user(self, user_id: str, update: UpdateUserRequest) -> User:
        raise NotFoundError(f"User {user_id} not found.")

    @hookimpl
    def auth_delete_user(self, user_id: str) -> None:
        raise NotFoundError(f"User {user_id} not found.")

    @hookimpl
    def auth_disable_user(self, user_id: str) -> None:
        raise NotFoundError(f"User {user_id} not found.")

    @hookimpl
    def auth_enable_user(self, user_id: str) -> None:
        raise NotFoundError(f"User {user_id} not found.")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_third_party_auth_provider_serves_its_own_token_endpoint_and_key_set(tmp_path: Path) -> None:
    port = _free_port()
    KeyringAuth.issuer = f"http://127.0.0.1:{port}"
    plane = start_control_plane(tmp_path, plugins={"keyring": KeyringAuth}, auth=False,
                                config={"providers": {"auth": {"type": "keyring"}}})
    try:
        with plane.serve_http(port=port) as url, httpx.Client(base_url=url) as http:
            assert http.get("/keyring/keys").json() == {"keys": [_PUBLIC_JWK]}
            assert http.get("/.well-known/jwks.json").status_code == 404  # the local provider is not selected
            assert http.post("/keyring/token", content="client_secret=wrong").status_code == 401
            issued = http.post("/keyring/token", content="client_secret=s3cret&scope=tenant/tenant_read").json()
            bearer = {"authorization": f"Bearer {issued['access_token']}"}
            assert http.get("/tenants", headers=bearer).status_code == 200  # verified with the fetched key set
            assert http.post("/tenants", headers=bearer, json={}).status_code == 403  # and its scope checked
            assert http.get("/tenants").status_code == 401
            paths = http.get("/openapi.json").json()["paths"]
            assert paths["/keyring/token"]["post"]["tags"] == ["keyring"]
        rows = {(b.provider, b.interface, b.trigger.describe()) for b in plane.control_plane.bindings.plugin_routes()}
        assert rows == {("keyring", "auth", "GET /keyring/keys (no JWT)"),
                        ("keyring", "auth", "POST /keyring/token (no JWT)")}
    finally:
        plane.close()
