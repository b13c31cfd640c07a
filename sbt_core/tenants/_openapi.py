"""How the registry's routes appear in ``GET /openapi.json``: each endpoint carries a
:class:`~sbt_core.runtime.contracts.RouteDoc` with its status, body and answer schemas.

The row shapes are sbt-aws's flat items (ids, ``sbtaws_active``, then the client's own keys), which no
attrs record describes field by field, so they are written out here, once, beside the code that
produces them (:meth:`TenantRegistration.to_json`, :meth:`Tenant.to_json`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from ..hookspecs import page_query
from ..runtime.contracts import RouteDoc, Schema, document_route

__all__ = ["PAGE_QUERY", "describe"]

#: ``limit`` (1-1000, default 10) and ``next_token``, as the registry enforces them.
PAGE_QUERY = page_query()

_ID = {"type": "string", "description": "uuid4"}
_ACTIVE = {"type": "boolean", "description": "false once soft-deleted"}
_OBJECT = {"type": "object", "description": "free-form keys of the client's own"}

_COMPONENTS: dict[str, dict[str, Any]] = {
    "TenantRegistrationRow": {
        "type": "object", "required": ["tenantRegistrationId", "sbtaws_active"], "additionalProperties": True,
        "description": "A registration as sbt-aws stores it: ids, sbtaws_active, then tenantRegistrationData.",
        "properties": {"tenantRegistrationId": _ID, "tenantId": _ID, "sbtaws_active": _ACTIVE,
                       "registrationStatus": {"type": "string",
                                              "description": "created, deleted or failed once the application "
                                                             "plane reports; else what the client set"}}},
    "TenantRow": {
        "type": "object", "required": ["tenantId", "sbtaws_active"], "additionalProperties": True,
        "description": "A tenant as sbt-aws stores it: ids, sbtaws_active, then tenantData.",
        "properties": {"tenantId": _ID, "tenantRegistrationId": {"type": "string"}, "sbtaws_active": _ACTIVE}},
    "TenantRegistrationCreate": {
        "type": "object", "required": ["tenantData"], "additionalProperties": False,
        "properties": {"tenantData": _OBJECT, "tenantRegistrationData": _OBJECT}},
    "TenantRegistrationUpdate": {
        "type": "object", "additionalProperties": False,
        "properties": {"tenantData": _OBJECT, "tenantRegistrationData": _OBJECT}},
}


def _ref(name: str) -> Schema:
    def schema(reg: Any) -> dict[str, Any]:
        reg.components.setdefault(name, _COMPONENTS[name])
        return {"$ref": f"#/components/schemas/{name}"}

    return schema


def _data(inner: Schema | dict[str, Any], *, page: bool = False) -> Schema:
    def schema(reg: Any) -> dict[str, Any]:
        body = inner(reg) if callable(inner) else inner
        if page:
            return {"type": "object", "required": ["data"],
                    "properties": {"data": {"type": "array", "items": body}, "next_token": {"type": "string"}}}
        return {"type": "object", "required": ["data"], "properties": {"data": body}}

    return schema


def _message(text: str) -> dict[str, Any]:
    return {"type": "object", "properties": {"message": {"type": "string", "const": text}}}


def _patched(reg: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {"tenantRegistration": _ref("TenantRegistrationRow")(reg),
                                             "tenant": {"anyOf": [_ref("TenantRow")(reg), {"type": "null"}]},
                                             "message": {"type": "string"}}}


def _registered(reg: Any) -> dict[str, Any]:
    return {"type": "object", "required": ["tenantRegistrationId", "tenantId", "message"],
            "properties": {"tenantRegistrationId": _ID, "tenantId": _ID,
                           "message": {"type": "string", "const": "Tenant registration initiated"}}}


_ANY_OBJECT: Schema = lambda reg: {"type": "object"}  # noqa: E731 - a schema, not a function to name

#: Per endpoint name: how it appears in the OpenAPI document.
DESCRIPTIONS: dict[str, RouteDoc] = {
    "create_registration": RouteDoc(status=201, request_schema=_ref("TenantRegistrationCreate"),
                                    response_schema=_data(_registered)),
    "list_registrations": RouteDoc(response_schema=_data(_ref("TenantRegistrationRow"), page=True), query=PAGE_QUERY),
    "get_registration": RouteDoc(response_schema=_data(_ref("TenantRegistrationRow"))),
    "update_registration": RouteDoc(request_schema=_ref("TenantRegistrationUpdate"), response_schema=_data(_patched)),
    "delete_registration": RouteDoc(response_schema=_data(_message("Tenant registration deletion initiated"))),
    "create_tenant": RouteDoc(status=201, request_schema=_ANY_OBJECT, response_schema=_data(_ref("TenantRow"))),
    "list_tenants": RouteDoc(response_schema=_data(_ref("TenantRow"), page=True), query=PAGE_QUERY),
    "get_tenant": RouteDoc(response_schema=_data(_ref("TenantRow"))),
    "update_tenant": RouteDoc(request_schema=_ANY_OBJECT, response_schema=_data(_ref("TenantRow"))),
    "delete_tenant": RouteDoc(response_schema=_data(_ref("TenantRow"))),
}


def describe(endpoint: Callable[..., Any], tag: str) -> Callable[..., Any]:
    """Attach the OpenAPI description of ``endpoint`` (by its name) and ``tag``; returns it."""
    name = endpoint.__name__
    return document_route(endpoint, attrs.evolve(DESCRIPTIONS[name], operation_id=name, tag=tag))
