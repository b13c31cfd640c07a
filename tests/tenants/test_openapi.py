"""The tenant routes in ``GET /openapi.json``: a valid document, and real answers match their schemas."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate


def _check(doc: dict[str, Any], method: str, path: str, answer: Any) -> None:
    operation = doc["paths"][path][method]
    [(status, response)] = [(k, v) for k, v in operation["responses"].items() if k < "300"]
    assert int(status) == answer.status_code
    schema = response["content"]["application/json"]["schema"]
    Draft202012Validator({**schema, "components": doc["components"]}).validate(answer.json())


def test_tenant_routes_are_described_and_answers_match(api: Any) -> None:
    doc = api.get("/openapi.json").json()
    validate(doc)
    create = doc["paths"]["/tenant-registrations"]["post"]
    assert create["security"] == [{"bearerAuth": ["tenant/tenant_write"]}]
    assert doc["paths"]["/tenants"]["get"]["security"] == [{"bearerAuth": ["tenant/tenant_read"]}]

    created = api.post("/tenant-registrations", json={"tenantData": {"tenantName": "doc"}})
    _check(doc, "post", "/tenant-registrations", created)
    rid, tid = created.json()["data"]["tenantRegistrationId"], created.json()["data"]["tenantId"]
    api.post("/tenant-registrations", json={"tenantData": {"tenantName": "doc-2"}})
    _check(doc, "get", "/tenant-registrations", api.get("/tenant-registrations", params={"limit": 1}))
    _check(doc, "get", "/tenant-registrations/{tenantRegistrationId}", api.get(f"/tenant-registrations/{rid}"))
    _check(doc, "patch", "/tenant-registrations/{tenantRegistrationId}",
           api.patch(f"/tenant-registrations/{rid}", json={"tenantData": {"tier": "gold"}}))
    _check(doc, "get", "/tenants", api.get("/tenants"))
    _check(doc, "get", "/tenants/{tenantId}", api.get(f"/tenants/{tid}"))
    _check(doc, "put", "/tenants/{tenantId}", api.put(f"/tenants/{tid}", json={"tier": "platinum"}))
    _check(doc, "post", "/tenants", api.post("/tenants", json={"tenantName": "m2m"}))
    _check(doc, "delete", "/tenant-registrations/{tenantRegistrationId}", api.delete(f"/tenant-registrations/{rid}"))
    _check(doc, "delete", "/tenants/{tenantId}", api.delete(f"/tenants/{tid}"))
