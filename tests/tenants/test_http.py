"""sbt-aws's integration flow (``scripts/test-sbt-aws.sh`` plus the registration CRUD of ``sbt-aws.sh``)
over HTTP against the assembled control plane, on SQLite and PostgreSQL; events through the real bus to
recording providers."""

from __future__ import annotations

import json
from typing import Any

from sbt_core.models import Event, scopes


def registration_body(name: str) -> dict[str, Any]:
    # The body sbt-aws.sh create-tenant-registration sends.
    return {"tenantData": {"tenantName": name, "email": f"{name}@example.com", "tier": "basic",
                           "prices": [{"id": "price_123", "metricName": "productsSold"}]},
            "tenantRegistrationData": {"registrationStatus": "In progress"}}


def put_event(plane: Any, name: str, detail: dict[str, Any]) -> None:
    """What the application plane does: put a job-result event on the control plane's bus."""
    [result] = plane.put(Event.create(name, detail))
    assert result.event_id
    plane.settle()


def test_sbt_aws_integration_flow(api: Any, plane: Any) -> None:
    # Delete of an unknown registration: 404 with sbt-aws's exact message.
    fake = "0123456789abcdef0123"
    answer = api.delete(f"/tenant-registrations/{fake}")
    assert answer.status_code == 404
    assert answer.json() == {"message": f"Tenant registration not found for id {fake}"}

    # Create three registrations.
    created = []
    for name in ("alpha", "beta", "gamma"):
        answer = api.post("/tenant-registrations", json=registration_body(name))
        assert answer.status_code == 201, answer.text
        data = answer.json()["data"]
        assert data["message"] == "Tenant registration initiated"
        assert set(data) == {"tenantRegistrationId", "tenantId", "message"}
        created.append(data)
    ids = {c["tenantRegistrationId"] for c in created}

    # List finds all; limit=2 pages: 2, then >= 1 from next_token.
    listed = api.get("/tenant-registrations").json()
    assert ids <= {r["tenantRegistrationId"] for r in listed["data"]} and "next_token" not in listed
    first = api.get("/tenant-registrations", params={"limit": 2}).json()
    assert len(first["data"]) == 2 and first["next_token"]
    second = api.get("/tenant-registrations", params={"limit": 2, "next_token": first["next_token"]}).json()
    assert len(second["data"]) >= 1
    assert {r["tenantRegistrationId"] for r in first["data"] + second["data"]} == ids

    # Get.
    target = created[0]
    rid, tid = target["tenantRegistrationId"], target["tenantId"]
    reg = api.get(f"/tenant-registrations/{rid}").json()["data"]
    assert reg == {"tenantRegistrationId": rid, "tenantId": tid, "sbtaws_active": True,
                   "registrationStatus": "In progress"}

    # Update of one key shows in both tenantRegistration and tenant (sbt-aws.sh update-tenant-registration).
    answer = api.patch(f"/tenant-registrations/{rid}", json={"tenantRegistrationData": {"testKey": "testValue"},
                                                             "tenantData": {"testKey": "testValue"}})
    assert answer.status_code == 200
    data = answer.json()["data"]
    assert data["message"] == "Tenant registration updated successfully"
    assert data["tenantRegistration"]["testKey"] == "testValue" and data["tenant"]["testKey"] == "testValue"
    assert "testValue" in json.dumps(api.get(f"/tenant-registrations/{rid}").json())

    # Get tenant; list tenants.
    tenant = api.get(f"/tenants/{tid}").json()["data"]
    assert tenant["tenantId"] == tid and tenant["tenantName"] == "alpha" and tenant["testKey"] == "testValue"
    assert tenant["tenantRegistrationId"] == rid and tenant["sbtaws_active"] is True
    tenants = api.get("/tenants").json()["data"]
    assert {c["tenantId"] for c in created} <= {t["tenantId"] for t in tenants}

    # The application plane reports provisioning: status becomes "created".
    put_event(plane, "provisionSuccess", {"tenantRegistrationId": rid, "jobOutput": {
        "tenantData": {"tenantStackName": "tenant-stack"},
        "tenantRegistrationData": {"registrationStatus": "created"}}})
    reg = api.get(f"/tenant-registrations/{rid}").json()["data"]
    assert reg["registrationStatus"] == "created"
    assert api.get(f"/tenants/{tid}").json()["data"]["tenantStackName"] == "tenant-stack"

    # Delete: soft, offboardingRequest emitted; then deprovisionSuccess makes it "deleted".
    answer = api.delete(f"/tenant-registrations/{rid}")
    assert answer.status_code == 200
    assert answer.json() == {"data": {"message": "Tenant registration deletion initiated"}}
    assert api.get(f"/tenant-registrations/{rid}").json()["data"]["sbtaws_active"] is False
    assert api.get(f"/tenants/{tid}").json()["data"]["sbtaws_active"] is False
    put_event(plane, "sbt_aws_deprovisionSuccess", {"tenantRegistrationId": rid, "jobOutput": {}})
    assert api.get(f"/tenant-registrations/{rid}").json()["data"]["registrationStatus"] == "deleted"

    # Failures set "failed" (upstream changes nothing).
    other = created[1]["tenantRegistrationId"]
    put_event(plane, "provisionFailure", {"tenantRegistrationId": other,
                                          "jobOutput": {"tenantStatus": "Failed to provision tenant."}})
    assert api.get(f"/tenant-registrations/{other}").json()["data"]["registrationStatus"] == "failed"

    # A job result for an unknown registration is final: dead-lettered, not retried.
    unknown = Event.create("provisionSuccess", {"tenantRegistrationId": "no-such-registration"})
    plane.put(unknown)
    plane.settle()
    assert plane.events.states(unknown) == {"tenants.provisionSuccess": "dead_lettered"}
    assert plane.events.deliveries(unknown)["tenants.provisionSuccess"].attempts == 1

    # Every binding of the lifecycle events got each one exactly once.
    plane.settle()
    for recorder, hook in ((plane.provider("billing"), "billing_create_customer"),
                           (plane.provider("metering"), "metering_create_customer")):
        onboarded = recorder.calls[hook]
        assert sorted(e.detail["tenantId"] for e in onboarded) == sorted(c["tenantId"] for c in created)
    [off] = plane.provider("billing").calls["billing_delete_customer"]
    assert off.detail["tenantId"] == tid and off.detail["tenantName"] == "alpha"
    assert [e.id for e in plane.provider("metering").calls["metering_delete_customer"]] == [off.id]


def test_onboarding_reaches_every_binding_once_despite_retries(api: Any, plane: Any) -> None:
    body = registration_body("retry")
    headers = {"Idempotency-Key": "client-retry-1"}
    first = api.post("/tenant-registrations", json=body, headers=headers)
    again = api.post("/tenant-registrations", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers.get("idempotent-replayed") == "true"
    conflict = api.post("/tenant-registrations", json=registration_body("other"), headers=headers)
    assert conflict.status_code == 409 and "different request body" in conflict.json()["message"]
    plane.settle()
    tenant_id = first.json()["data"]["tenantId"]
    for recorder, hook in ((plane.provider("billing"), "billing_create_customer"),
                           (plane.provider("metering"), "metering_create_customer")):
        [event] = recorder.calls[hook]
        assert event.detail == {"registrationStatus": "In progress", **body["tenantData"], "tenantId": tenant_id,
                                "tenantRegistrationId": first.json()["data"]["tenantRegistrationId"]}
    # One event on the bus, delivered once to each of its bindings.
    [put] = plane.events.of_type("onboardingRequest")
    assert plane.events.states(put) == {"billing_create_customer": "delivered", "metering_create_customer": "delivered"}
    assert len(api.get("/tenant-registrations").json()["data"]) == 1


BAD_BODIES: list[tuple[Any, str]] = [
    ({"tenantRegistrationData": {}}, "tenantData: required field missing"),
    ({"tenantData": "acme"}, "tenantData: expected a JSON object, got a string"),
    ({"tenantData": {}, "tenantRegistrationData": 7}, "tenantRegistrationData: expected a JSON object, got a number"),
    ({"tenantData": {}, "unexpected": True}, "unknown field(s) unexpected"),
    ({"tenantData": {"tenantId": "chosen-by-client"}}, "tenantData.tenantId: set by the control plane"),
    ([{"tenantData": {}}], "expected a JSON object"),
    ("not json", "not valid JSON"),
    ('{"tenantData": {"price": NaN}}', "tenantData.price: not a finite JSON number"),
    ('{"tenantData": {"name": "\\ud800"}}', "unpaired UTF-16 surrogate"),
    ('{"tenantData": ' + "[" * 40 + "]" * 40 + "}", "nests deeper than 32 levels"),
    ("[" * 100_000 + "]" * 100_000, "nests deeper than 32 levels"),
    (None, "request body is empty"),
]


def test_bad_registration_bodies_are_400_and_change_nothing(api: Any, plane: Any) -> None:
    for body, message in BAD_BODIES:
        if isinstance(body, str) or body is None:
            answer = api.post("/tenant-registrations", content=(body or "").encode(),
                              headers={"content-type": "application/json", "Idempotency-Key": "bad"})
        else:
            answer = api.post("/tenant-registrations", json=body, headers={"Idempotency-Key": "bad"})
        assert answer.status_code == 400, body
        assert message in answer.json()["message"], (body, answer.json())
    assert api.get("/tenant-registrations").json()["data"] == []
    assert api.get("/tenants").json()["data"] == []
    # A refused request claimed no key: the same key still works for a good body.
    assert api.post("/tenant-registrations", json=registration_body("ok"),
                    headers={"Idempotency-Key": "bad"}).status_code == 201
    plane.settle()
    assert len(plane.provider("billing").calls["billing_create_customer"]) == 1


def test_bad_updates_queries_and_oversized_bodies_change_nothing(api: Any, plane: Any) -> None:
    rid = api.post("/tenant-registrations", json=registration_body("keep")).json()["data"]["tenantRegistrationId"]
    before = api.get(f"/tenant-registrations/{rid}").json()
    for body, message in [({"tenantData": {"a": 1}, "other": 1}, "unknown field(s) other"),
                          ({"tenantData": []}, "tenantData: expected a JSON object"),
                          ({"tenantRegistrationData": {"sbtaws_active": False}}, "sbtaws_active")]:
        answer = api.patch(f"/tenant-registrations/{rid}", json=body)
        assert answer.status_code == 400 and message in answer.json()["message"]
    for query in ({"limit": "0"}, {"limit": "many"}, {"limit": "5000"}):
        answer = api.get("/tenant-registrations", params=query)
        assert answer.status_code == 400 and "limit" in answer.json()["message"]
    # Oversized bodies: refused by the app's body limit before the registry sees them.
    limit = plane.control_plane.config.server.max_body_bytes
    huge = registration_body("huge") | {"tenantData": {"blob": "x" * (limit + 1)}}
    answer = api.post("/tenant-registrations", json=huge)
    assert answer.status_code == 413 and "larger than" in answer.json()["message"]  # docs/design.md section 4
    assert api.get(f"/tenant-registrations/{rid}").json() == before
    assert len(api.get("/tenant-registrations").json()["data"]) == 1


def test_scopes_guard_the_routes(api: Any, plane: Any) -> None:
    read_only = {"authorization": f"Bearer {plane.token(scopes.TENANT_READ)}"}
    assert api.get("/tenant-registrations", headers=read_only).status_code == 200
    answer = api.post("/tenant-registrations", json=registration_body("x"), headers=read_only)
    assert answer.status_code == 403
    assert api.get("/tenants", headers={"authorization": ""}).status_code == 401
    assert api.get("/tenant-registrations").json()["data"] == []


def test_tenants_routes_for_machine_clients(api: Any) -> None:
    answer = api.post("/tenants", json={"tenantName": "direct", "tier": "gold"})
    assert answer.status_code == 201
    tenant = answer.json()["data"]
    tid = tenant["tenantId"]
    assert tenant == {"tenantId": tid, "sbtaws_active": True, "tenantName": "direct", "tier": "gold"}
    answer = api.put(f"/tenants/{tid}", json={"tier": "platinum"})
    assert answer.status_code == 200 and answer.json()["data"]["tier"] == "platinum"
    assert api.get(f"/tenants/{tid}").json()["data"]["tier"] == "platinum"
    answer = api.delete(f"/tenants/{tid}")
    assert answer.status_code == 200 and answer.json()["data"]["sbtaws_active"] is False
    missing = api.get("/tenants/nope")
    assert missing.status_code == 404 and missing.json() == {"message": "Tenant not found for id nope"}
    assert api.put("/tenants/nope", json={"a": 1}).status_code == 404
    assert api.put(f"/tenants/{tid}", json=["not", "an", "object"]).status_code == 400
    # Idempotent creation for machine clients too.
    headers = {"Idempotency-Key": "m2m-1"}
    first = api.post("/tenants", json={"tenantName": "once"}, headers=headers).json()
    assert api.post("/tenants", json={"tenantName": "once"}, headers=headers).json() == first
    assert [t["tenantName"] for t in api.get("/tenants").json()["data"]].count("once") == 1
