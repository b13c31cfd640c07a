"""sbt-aws's tenant-config route: public (no JWT), a tenant's sign-in configuration by name, id or Origin,
the auth provider's public settings and nothing secret."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sbt_core.models import scopes


@pytest.fixture
def acme(api: Any) -> dict[str, Any]:
    """A registered tenant whose provisioning exported its front end's config, as sbt-aws's job does."""
    body = {"tenantData": {"tenantName": "acme", "tier": "basic", "email": "owner@acme.test"}}
    created = api.post("/tenant-registrations", json=body).json()["data"]
    exported = json.dumps({"userPoolId": "pool-1", "appClientId": "client-1"})
    api.put(f"/tenants/{created['tenantId']}", json={"tenantConfig": exported, "TENANT_DB": "db_acme"})
    return dict(created)


def test_a_tenants_front_end_reads_its_sign_in_config_without_a_token(plane: Any, acme: dict[str, Any]) -> None:
    auth = plane.control_plane.auth_settings
    with plane.client(authenticated=False) as public:
        by_name = public.get("/tenant-config/acme")
        assert by_name.status_code == 200, by_name.text
        assert by_name.json() == {"data": {
            "tenantId": acme["tenantId"], "tenantName": "acme", "tier": "basic",
            "tenantConfig": {"userPoolId": "pool-1", "appClientId": "client-1"},
            "jwtIssuer": auth.jwt_issuer, "jwtAudience": auth.jwt_audience,
            "wellKnownEndpointUrl": auth.well_known_endpoint_url, "tokenEndpoint": auth.token_endpoint,
            "userClientId": auth.user_client_id}}
        # The other lookups of upstream's handler answer the same.
        assert public.get("/tenant-config", params={"tenantId": acme["tenantId"]}).json() == by_name.json()
        assert public.get("/tenant-config", params={"tenantName": "acme"}).json() == by_name.json()
        assert public.get("/tenant-config", headers={"Origin": "https://acme.app.example"}).json() == by_name.json()
    text = by_name.text
    assert "owner@acme.test" not in text and "db_acme" not in text  # other tenant data stays private
    assert "secret" not in text.lower()


def test_unknown_deleted_and_unnamed_tenants(api: Any, plane: Any, acme: dict[str, Any]) -> None:
    with plane.client(authenticated=False) as public:
        missing = public.get("/tenant-config/nobody")
        assert missing.status_code == 404
        assert missing.json() == {"message": "No tenant details found for nobody"}
        assert public.get("/tenant-config").status_code == 400
        assert public.get("/tenant-config", params={"tenantName": ""}).status_code == 400
        assert public.get("/tenant-config/a%00b").status_code == 400
        api.delete(f"/tenant-registrations/{acme['tenantRegistrationId']}")
        assert public.get("/tenant-config/acme").status_code == 404  # soft-deleted: nobody signs in


def test_the_route_is_in_openapi_public(plane: Any) -> None:
    with plane.client(scopes.TENANT_READ) as client:
        paths = client.get("/openapi.json").json()["paths"]
    for path in ("/tenant-config", "/tenant-config/{tenantName}"):
        operation = paths[path]["get"]
        assert operation.get("security") == [] and "200" in operation["responses"]
