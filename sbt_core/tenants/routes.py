"""The HTTP face of the registry: Starlette endpoints for the core routes ``/tenant-registrations`` and
``/tenants`` (their triggers and scopes come from :data:`sbt_core.bindings.CORE_ROUTES`).

The HTTP app mounts the :data:`~sbt_core.runtime.contracts.RouteGroup` returned by :func:`tenant_routes`
behind the authorizer, the scope check and the body limit, and maps an :class:`~sbt_core.errors.SbtError`
to ``{"message": ...}`` with its status. Endpoints only translate HTTP to :class:`TenantService` calls,
which run in the thread pool (the database calls block).

Answers (sbt-aws ``resources/functions/tenant-registrations/index.py``):

| route | status | body |
|---|---|---|
| POST /tenant-registrations | 201 | ``{data: {tenantRegistrationId, tenantId, message: "Tenant registration initiated"}}`` |
| GET /tenant-registrations | 200 | ``{data: [registration...], next_token?}`` |
| GET /tenant-registrations/{id} | 200 | ``{data: registration}`` |
| PATCH /tenant-registrations/{id} | 200 | ``{data: {tenantRegistration, tenant, message: "Tenant registration updated successfully"}}`` |
| DELETE /tenant-registrations/{id} | 200 | ``{data: {message: "Tenant registration deletion initiated"}}`` |
| POST /tenants | 201 | ``{data: tenant}`` |
| GET /tenants | 200 | ``{data: [tenant...], next_token?}`` |
| GET, PUT, DELETE /tenants/{tenantId} | 200 | ``{data: tenant}`` |

``tenant`` in the PATCH answer is always the current tenant row (upstream answers null when the body had
no ``tenantData``). Lists include soft-deleted rows (``sbtaws_active: false``), as the upstream scan
does, in id order; ``next_token`` is the last id of a page that has more after it.
Unknown ids are 404 ``Tenant registration not found for id <id>`` / ``Tenant not found for id <id>``;
malformed bodies and queries 400. ``POST`` routes honour an ``Idempotency-Key`` header: a retry with the
same body gets the first answer (plus ``Idempotent-Replayed: true``), a different body 409.
"""  # noqa: E501 - the table's rows stay one line each

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from .. import input_policy
from ..bindings import CORE_ROUTES
from ..errors import BadRequestError
from ..models import PageRequest, from_json
from ..runtime.contracts import RouteGroup
from ..runtime.http._json import JSONAnswer
from ..runtime.http.hooks import page_body
from ..triggers import RouteTrigger
from ._openapi import describe
from ._records import JsonObject, RegistrationCreate, RegistrationUpdate
from .service import TenantService

__all__ = ["IDEMPOTENCY_HEADER", "tenant_routes"]

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"


def _trigger(method: str, path: str) -> RouteTrigger:
    # The core's route table is the one source of paths and scopes.
    return next(r for r in CORE_ROUTES if r.method == method and r.path == path)


async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise BadRequestError("request body is empty; expected a JSON object")
    return input_policy.loads(raw)


async def _object(request: Request) -> dict[str, Any]:
    body = await _body(request)
    if not isinstance(body, dict):
        raise BadRequestError(f"request body must be a JSON object, got {type(body).__name__}")
    return body


def _page(request: Request) -> PageRequest:
    query = {k: v for k, v in request.query_params.items() if k in ("limit", "next_token") and v != ""}
    return from_json(PageRequest, query)


def _principal(request: Request) -> str:
    """Who the idempotency key belongs to: the token's subject (or machine client), so two callers
    never see each other's answers."""
    claims = getattr(request.state, "claims", None) or {}
    return str(claims.get("sub") or claims.get("client_id") or "")


def _created(data: dict[str, Any], replayed: bool) -> JSONAnswer:
    headers = {REPLAYED_HEADER: "true"} if replayed else None
    return JSONAnswer({"data": data}, status_code=201, headers=headers)


def tenant_routes(service: TenantService) -> RouteGroup:
    """The registry's endpoints, each paired with its core :class:`RouteTrigger`."""

    async def create_registration(request: Request) -> Response:
        """Register a tenant: create the registration and its tenant, emit onboardingRequest (201)."""
        request_body = from_json(RegistrationCreate, await _body(request))
        answer = await run_in_threadpool(service.register, request_body,
                                         idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
                                         principal=_principal(request))
        return _created(answer.to_json(), answer.replayed)

    async def list_registrations(request: Request) -> Response:
        """List tenant registrations (limit, default 10, and next_token)."""
        page = await run_in_threadpool(service.list_registrations, _page(request))
        return JSONAnswer(page_body([r.to_json() for r in page.items], page.next_token))

    async def get_registration(request: Request) -> Response:
        """Get one tenant registration (soft-deleted: still 200, with sbtaws_active false, as sbt-aws)."""
        reg = await run_in_threadpool(service.get_registration, request.path_params["tenantRegistrationId"])
        return JSONAnswer({"data": reg.to_json()})

    async def update_registration(request: Request) -> Response:
        """Merge tenantRegistrationData and tenantData into a registration and its tenant."""
        update = from_json(RegistrationUpdate, await _body(request))
        reg, tenant = await run_in_threadpool(service.update_registration,
                                              request.path_params["tenantRegistrationId"], update)
        return JSONAnswer({"data": {"tenantRegistration": reg.to_json(),
                                      "tenant": tenant.to_json() if tenant is not None else None,
                                      "message": "Tenant registration updated successfully"}})

    async def delete_registration(request: Request) -> Response:
        """Soft-delete a registration and its tenant, emit offboardingRequest."""
        await run_in_threadpool(service.delete_registration, request.path_params["tenantRegistrationId"])
        return JSONAnswer({"data": {"message": "Tenant registration deletion initiated"}})

    async def create_tenant(request: Request) -> Response:
        """Create a tenant directly (machine clients; emits nothing) (201)."""
        data = JsonObject(await _object(request))
        tenant = await run_in_threadpool(service.create_tenant, data,
                                         idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
                                         principal=_principal(request))
        return _created(tenant.to_json(), False)

    async def list_tenants(request: Request) -> Response:
        """List tenants (limit, default 10, and next_token)."""
        page = await run_in_threadpool(service.list_tenants, _page(request))
        return JSONAnswer(page_body([t.to_json() for t in page.items], page.next_token))

    async def get_tenant(request: Request) -> Response:
        """Get one tenant (soft-deleted: still 200, with sbtaws_active false, as sbt-aws)."""
        tenant = await run_in_threadpool(service.get_tenant, request.path_params["tenantId"])
        return JSONAnswer({"data": tenant.to_json()})

    async def update_tenant(request: Request) -> Response:
        """Merge keys into a tenant (machine clients)."""
        data = await _object(request)
        tenant = await run_in_threadpool(service.update_tenant, request.path_params["tenantId"], data)
        return JSONAnswer({"data": tenant.to_json()})

    async def delete_tenant(request: Request) -> Response:
        """Soft-delete a tenant (machine clients; emits nothing)."""
        tenant = await run_in_threadpool(service.delete_tenant, request.path_params["tenantId"])
        return JSONAnswer({"data": tenant.to_json()})

    for endpoint in (create_registration, list_registrations, get_registration, update_registration,
                     delete_registration):
        describe(endpoint, "tenant-registrations")
    for endpoint in (create_tenant, list_tenants, get_tenant, update_tenant, delete_tenant):
        describe(endpoint, "tenants")
    return [
        (_trigger("POST", "/tenant-registrations"), create_registration),
        (_trigger("GET", "/tenant-registrations"), list_registrations),
        (_trigger("GET", "/tenant-registrations/{tenantRegistrationId}"), get_registration),
        (_trigger("PATCH", "/tenant-registrations/{tenantRegistrationId}"), update_registration),
        (_trigger("DELETE", "/tenant-registrations/{tenantRegistrationId}"), delete_registration),
        (_trigger("POST", "/tenants"), create_tenant),
        (_trigger("GET", "/tenants"), list_tenants),
        (_trigger("GET", "/tenants/{tenantId}"), get_tenant),
        (_trigger("PUT", "/tenants/{tenantId}"), update_tenant),
        (_trigger("DELETE", "/tenants/{tenantId}"), delete_tenant),
    ]
