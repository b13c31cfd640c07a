"""sbt-aws's tenant-config route: what a tenant's front end needs to sign its users in, public (no JWT),
as upstream (``sbt:resources/functions/tenant-config/index.py``, behind ``GET /tenant-config`` and
``GET /tenant-config/{tenantName}``).

Lookups, as upstream: ``GET /tenant-config/{tenantName}``; ``GET /tenant-config?tenantId=...`` or
``?tenantName=...``; with neither, the tenant name is the first label of the ``Origin`` header's host
(``https://acme.app.example`` -> ``acme``: a sub-domain per tenant). Only active tenants answer; an unknown
or soft-deleted one is 404 ``No tenant details found for <name or id>``, a request naming none 400.

The answer, ``{"data": TenantConfig}``, holds nothing secret:

- the tenant's identity from the registry: ``tenantId``, ``tenantName``, ``tier`` when set, and
  ``tenantConfig`` — the key upstream serves (what the application plane's provisioning job exported for
  the front end, e.g. a user pool id and app client id); a JSON text is answered parsed, as an object;
- the control plane's auth provider settings (IAuth's public properties): ``jwtIssuer``, ``jwtAudience``,
  ``wellKnownEndpointUrl``, ``tokenEndpoint``, ``userClientId`` (absent when no auth provider is selected).

Other tenant data (an owner's e-mail, the provisioning job's own exports) is not answered: the route is public.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from .. import input_policy
from ..bindings import CORE_ROUTES
from ..errors import BadRequestError
from ..models import AuthSettings
from ..runtime.contracts import QueryParam, RouteDoc, RouteGroup, document_route
from ..runtime.http._json import JSONAnswer
from ._records import TENANT_ID_KEY, Tenant
from .service import TenantService

__all__ = ["TENANT_CONFIG_KEY", "tenant_config", "tenant_config_routes"]

#: The tenant data key upstream's route serves (its ``TENANT_CONFIG_COLUMN``).
TENANT_CONFIG_KEY = "tenantConfig"
#: Identity keys of the tenant's data the public answer carries.
_IDENTITY_KEYS = ("tenantName", "tier")
#: Longest tenant name or id the route looks up (the registry's ids are 64 characters at most).
MAX_LOOKUP_LENGTH = 256


def tenant_config(tenant: Tenant, auth: AuthSettings | None) -> dict[str, Any]:
    """The public sign-in configuration of ``tenant`` (see the module docstring for the keys)."""
    out: dict[str, Any] = {TENANT_ID_KEY: tenant.tenant_id}
    out |= {k: tenant.data[k] for k in _IDENTITY_KEYS if k in tenant.data}
    config = tenant.data.get(TENANT_CONFIG_KEY)
    if isinstance(config, str):
        try:
            parsed = json.loads(config)
            config = parsed if isinstance(parsed, dict) else config
        except ValueError:
            pass
    out[TENANT_CONFIG_KEY] = config
    if auth is not None:
        out |= {"jwtIssuer": auth.jwt_issuer, "jwtAudience": list(auth.jwt_audience),
                "wellKnownEndpointUrl": auth.well_known_endpoint_url, "tokenEndpoint": auth.token_endpoint,
                "userClientId": auth.user_client_id}
    return out


#: What :func:`_lookup` accepts, as the OpenAPI document states it.
_LOOKUP_BOUNDS = {"minLength": 1, "maxLength": MAX_LOOKUP_LENGTH, "pattern": input_policy.NAME_PATTERN}


def _lookup(value: str, field: str) -> str:
    if not value or len(value) > MAX_LOOKUP_LENGTH:
        raise BadRequestError(f"{field}: must be 1 to {MAX_LOOKUP_LENGTH} characters")
    return input_policy.check_name(value, field)


def _origin_tenant(request: Request) -> str:
    origin = request.headers.get("origin")
    if not origin:
        raise BadRequestError("name the tenant: /tenant-config/{tenantName}, ?tenantId=, ?tenantName=, or an "
                              "Origin header whose host's first label is the tenant name")
    host = urlsplit(origin).hostname or ""
    return _lookup(host.split(".")[0], "Origin")


def _schema(reg: Any) -> dict[str, Any]:
    text = {"type": "string"}
    config = {"type": "object", "required": [TENANT_ID_KEY, TENANT_CONFIG_KEY], "additionalProperties": False,
              "properties": {
                  TENANT_ID_KEY: text, "tenantName": text, "tier": {},
                  TENANT_CONFIG_KEY: {"description": "the tenant's tenantConfig as its provisioning set it (a "
                                                     "JSON text is answered parsed); null when unset"},
                  "jwtIssuer": text, "jwtAudience": {"type": "array", "items": text},
                  "wellKnownEndpointUrl": text, "tokenEndpoint": text, "userClientId": text}}
    return {"type": "object", "required": ["data"], "properties": {"data": config}}


def _trigger(path: str) -> Any:
    return next(r for r in CORE_ROUTES if r.method == "GET" and r.path == path)


def tenant_config_routes(service: TenantService, auth_settings: Callable[[], AuthSettings | None]) -> RouteGroup:
    """``GET /tenant-config`` and ``GET /tenant-config/{tenantName}``; ``auth_settings`` gives the selected
    auth provider's settings (None without one) when a request comes."""

    async def answer(**lookup: str) -> Response:
        tenant = await run_in_threadpool(lambda: service.find_tenant(**lookup))
        return JSONAnswer({"data": tenant_config(tenant, auth_settings())})

    async def get_tenant_config(request: Request) -> Response:
        """A tenant's public sign-in configuration, by ?tenantId=, ?tenantName= or the Origin's sub-domain."""
        query = request.query_params
        if "tenantId" in query:
            return await answer(tenant_id=_lookup(query["tenantId"], "tenantId"))
        if "tenantName" in query:
            return await answer(tenant_name=_lookup(query["tenantName"], "tenantName"))
        return await answer(tenant_name=_origin_tenant(request))

    async def get_tenant_config_by_name(request: Request) -> Response:
        """A tenant's public sign-in configuration, by its tenantName."""
        return await answer(tenant_name=_lookup(request.path_params["tenantName"], "tenantName"))

    lookups = (QueryParam("tenantId", "string", "the tenant's id", bounds=_LOOKUP_BOUNDS),
               QueryParam("tenantName", "string", "the tenant's tenantName (without either: the Origin header's "
                                                  "first host label)", bounds=_LOOKUP_BOUNDS))
    document_route(get_tenant_config, RouteDoc(operation_id="get_tenant_config", tag="tenant-config",
                                               response_schema=_schema, query=lookups))
    document_route(get_tenant_config_by_name, RouteDoc(
        operation_id="get_tenant_config_by_name", tag="tenant-config", response_schema=_schema,
        path=(QueryParam("tenantName", "string", "the tenant's tenantName", bounds=_LOOKUP_BOUNDS),)))
    return [(_trigger("/tenant-config"), get_tenant_config),
            (_trigger("/tenant-config/{tenantName}"), get_tenant_config_by_name)]
