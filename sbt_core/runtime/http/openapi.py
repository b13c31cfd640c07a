"""``GET /openapi.json``: an OpenAPI 3.1 document generated from the mounted operations (the binding table
plus core routes and route groups) and the attrs model schemas. Nothing here is hand-kept per route:
a rebound hook, a disabled binding or a new route group shows up on the next start."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ... import __version__
from ...input_policy import NAME_PATTERN
from ...models import AuthSettings
from ...triggers import Authorizer as AuthorizerKind
from .operation import Operation
from .schema import SchemaRegistry

__all__ = ["build_openapi"]

_PARAM = re.compile(r"\{([^}]+)\}")

#: Error statuses and what they mean (docs/design.md section 4); every error body is ``{"message": ...}``.
_ERRORS = {
    "400": "Bad input: malformed JSON or invalid fields (the message names each).",
    "401": "Missing or invalid bearer token.",
    "403": "The token lacks the route's scope.",
    "404": "Unknown id.",
    "409": "Conflict with an existing resource.",
    "413": "Request body too large.",
    "500": "Internal error (no details are given).",
    "501": "The selected provider does not implement this optional hook.",
    "502": "The provider's backend failed.",
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def build_openapi(operations: Sequence[Operation], auth: AuthSettings | None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations``; security says each route's scope."""
    reg = SchemaRegistry()
    paths: dict[str, dict[str, Any]] = {}
    seen_ids: set[str] = set()
    for op in operations:
        trigger = op.trigger
        operation_id = op.operation_id
        if operation_id in seen_ids:  # two route groups may name endpoints alike; OpenAPI needs unique ids
            operation_id = f"{operation_id}_{trigger.method.lower()}_" + re.sub(r"\W+", "_", trigger.path).strip("_")
        seen_ids.add(operation_id)
        entry: dict[str, Any] = {"operationId": operation_id, "tags": [op.tag]}
        if op.summary:
            entry["summary"] = op.summary
        path_bounds = {p.name: p for p in op.doc.path}
        params: list[dict[str, Any]] = []
        for name in _PARAM.findall(trigger.path):
            param = {"name": name, "in": "path", "required": True,
                     "schema": {"type": "string", "minLength": 1, "pattern": NAME_PATTERN}}
            if name in path_bounds:
                param["schema"] |= {"type": path_bounds[name].type, **path_bounds[name].bounds}
                if path_bounds[name].description:
                    param["description"] = path_bounds[name].description
            params.append(param)
        for q in op.doc.query:
            # A bound may be computed when the document is (a list read from the system, such as time zones).
            schema: dict[str, Any] = {"type": q.type, **{k: v() if callable(v) else v for k, v in q.bounds.items()}}
            if q.type == "string" and not schema.keys() & {"pattern", "enum", "format"}:
                schema["pattern"] = NAME_PATTERN  # the input policy's rule for every query value
            if q.array:
                schema = {"type": "array", "items": schema}
            param = {"name": q.name, "in": "query", "required": q.required, "schema": schema}
            if q.description:
                param["description"] = q.description
            if q.array:
                param.update(style="form", explode=True)
            params.append(param)
        if params:
            entry["parameters"] = params
        if op.hook_route is not None and op.hook_route.raw_body:
            entry["requestBody"] = {"description": "passed to the provider byte for byte (signature check)",
                                    "content": {"*/*": {"schema": {}}}}
        elif op.doc.request_schema is not None:
            entry["requestBody"] = {"required": op.doc.body_required,
                                    "content": {op.doc.request_media_type: {"schema": op.doc.request_schema(reg)}}}
        success = {"description": "Success", "content": {
            op.doc.media_type: {"schema": op.doc.response_schema(reg) if op.doc.response_schema
                                                            else {}}}}
        responses: dict[str, Any] = {str(op.doc.status): success}
        needs_jwt = trigger.authorizer is AuthorizerKind.JWT
        for status in _ERRORS:
            if status in ("401", "403") and not needs_jwt and int(status) not in op.doc.errors:
                continue
            responses[status] = {"$ref": f"#/components/responses/Error{status}"}
        entry["responses"] = responses
        entry["security"] = [{"bearerAuth": [trigger.scope] if trigger.scope else []}] if needs_jwt else []
        paths.setdefault(trigger.path, {})[trigger.method.lower()] = entry

    error_schema = {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}
    bearer: dict[str, Any] = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    if auth is not None:
        bearer["description"] = (f"JWT from {auth.jwt_issuer} (audience {', '.join(auth.jwt_audience)}); "
                                 f"tokens from {auth.token_endpoint}. Each operation lists the scope it needs"
                                 + ("" if auth.enforce_scopes else " (not enforced by this provider)") + ".")
    return {
        "openapi": "3.1.0",
        "info": {"title": "sbt control plane", "version": __version__,
                 "description": "SaaS Builder Toolkit control-plane API (sbt-aws routes and envelopes)."},
        "paths": paths,
        "components": {
            "schemas": {**reg.components, "Error": error_schema},
            "responses": {f"Error{status}": {"description": text,
                                              "content": _json({"$ref": "#/components/schemas/Error"})}
                          for status, text in _ERRORS.items()},
            "securitySchemes": {"bearerAuth": bearer},
        },
    }
