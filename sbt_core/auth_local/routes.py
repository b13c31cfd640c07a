"""HTTP routes of the local provider, added to ``sbt serve`` through its ``sbt_register_routes`` hook:

- ``GET /.well-known/jwks.json``: the public key set;
- ``GET /.well-known/openid-configuration``: a minimal discovery document (issuer, jwks_uri, token_endpoint);
- ``POST /oauth2/token``: OAuth 2.0 client credentials grant (RFC 6749 section 4.4) for the configured
  machine clients, with client authentication by HTTP Basic or ``client_id``/``client_secret`` form fields
  (section 2.3.1). Errors use the RFC's ``{"error", "error_description"}`` shape (plus ``message``, as every
  other route answers), so OAuth client libraries understand them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..routes import RouteDoc, Routes, document_route
from ..triggers import Authorizer, RouteTrigger

if TYPE_CHECKING:
    from . import LocalAuth

__all__ = ["JWKS", "OPENID_CONFIGURATION", "TOKEN", "routes"]

JWKS = RouteTrigger("GET", "/.well-known/jwks.json", authorizer=Authorizer.NONE)
OPENID_CONFIGURATION = RouteTrigger("GET", "/.well-known/openid-configuration", authorizer=Authorizer.NONE)
TOKEN = RouteTrigger("POST", "/oauth2/token", authorizer=Authorizer.NONE)

_NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}


def _oauth_error(status: int, error: str, description: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description, "message": description}, status,
                        headers={**_NO_STORE, **(headers or {})})


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str | None, str | None]:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        client_id, sep, secret = decoded.partition(":")
        return (unquote(client_id), unquote(secret)) if sep else (None, None)
    return form.get("client_id"), form.get("client_secret")


def routes(provider: LocalAuth) -> Routes:
    """The local provider's public routes: key set, discovery document, token endpoint."""

    async def jwks(request: Request) -> Response:
        """The public key set (JWKS) tokens are verified with."""
        return JSONResponse(provider.jwks(), headers={"cache-control": "public, max-age=300"})

    async def discovery(request: Request) -> Response:
        """OpenID discovery: issuer, jwks_uri, token_endpoint."""
        issuer = provider.issuer
        body: dict[str, Any] = {
            "issuer": issuer,
            "jwks_uri": f"{issuer}/.well-known/jwks.json",
            "token_endpoint": f"{issuer}/oauth2/token",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": sorted({s for c in provider.settings.machine_clients for s in c.scopes}),
        }
        return JSONResponse(body)

    async def token(request: Request) -> Response:
        """OAuth 2.0 client credentials grant for the configured machine clients."""
        body = await request.body()
        try:
            form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            return _oauth_error(400, "invalid_request", "the body must be application/x-www-form-urlencoded UTF-8")
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "only grant_type=client_credentials is supported")
        client_id, secret = _client_credentials(request, form)
        client = provider.settings.client(client_id) if client_id else None
        # Compare even when the client is unknown so timing does not tell which client ids exist.
        expected = client.client_secret.get_secret_value() if client else "\0unknown-client"
        if client is None or secret is None or not hmac.compare_digest(expected.encode(), secret.encode()):
            return _oauth_error(401, "invalid_client", "unknown client or wrong secret",
                                {"www-authenticate": 'Basic realm="sbt"'})
        requested = form.get("scope", "").split()
        refused = sorted(set(requested) - set(client.scopes))
        if refused:
            return _oauth_error(400, "invalid_scope", f"scope(s) not allowed for this client: {', '.join(refused)}")
        scopes = requested or list(client.scopes)
        lifetime = provider.settings.token_lifetime_seconds
        access_token = provider.mint_token(scopes, client_id=client.client_id, lifetime_seconds=lifetime)
        return JSONResponse({"access_token": access_token, "token_type": "Bearer", "expires_in": lifetime,
                             "scope": " ".join(scopes)}, headers=_NO_STORE)

    document_route(token, RouteDoc(operation_id="local_token", tag="local", request_schema=_token_request,
                                   request_media_type="application/x-www-form-urlencoded",
                                   response_schema=_token_answer, errors=(401,)))
    return Routes(routes=[(JWKS, jwks), (OPENID_CONFIGURATION, discovery), (TOKEN, token)])


def _token_request(reg: Any) -> dict[str, Any]:
    text = {"type": "string"}
    return {"type": "object", "required": ["grant_type"],
            "description": "client authentication by HTTP Basic or client_id + client_secret (RFC 6749 2.3.1); "
                           "an unknown client or wrong secret is 401 invalid_client",
            "properties": {"grant_type": {"type": "string", "enum": ["client_credentials"]},
                           "client_id": text, "client_secret": {"type": "string", "writeOnly": True},
                           "scope": {"type": "string", "description": "space-separated; default: every scope of "
                                                                     "the client (another is 400 invalid_scope)"}}}


def _token_answer(reg: Any) -> dict[str, Any]:
    return {"type": "object", "required": ["access_token", "token_type", "expires_in", "scope"], "properties": {
        "access_token": {"type": "string"}, "token_type": {"type": "string", "enum": ["Bearer"]},
        "expires_in": {"type": "integer", "description": "seconds"}, "scope": {"type": "string"}}}
