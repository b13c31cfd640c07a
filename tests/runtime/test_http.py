"""The HTTP API through a real ASGI client (httpx ASGITransport): routes from the binding table, sbt-aws
envelopes, the authorizer, body limit, errors, OpenAPI, ``/events`` and route groups; plus one run
through a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from openapi_spec_validator import validate
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sbt_core import NotFoundError, Provider, hookimpl
from sbt_core.auth_local import LocalAuth
from sbt_core.auth_local.keys import KEY_FILE, load_or_create_key
from sbt_core.bindings import BindingTable, build_binding_table
from sbt_core.config import Config, load_config
from sbt_core.models import (
    CancelResult,
    Meter,
    Page,
    UsageRow,
    WebhookResponse,
    scopes,
)
from sbt_core.plugins import Providers, build_providers, discover
from sbt_core.runtime.bus import Bus
from sbt_core.runtime.http import build_app
from sbt_core.triggers import RouteTrigger

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- test providers ---------------------------------------------------------------------------------------

class RecordingMetering(Provider):
    """IMetering that records what the routes hand it."""

    calls: list[tuple[str, Any]]

    def __init__(self, settings: Any, context: Any) -> None:
        super().__init__(settings, context)
        self.calls = []
        self.meters: dict[str, Meter] = {}

    @hookimpl
    def metering_create_meter(self, meter):  # type: ignore[no-untyped-def]
        created = Meter.new(f"m-{len(self.meters) + 1}", meter)
        self.meters[created.meter_id] = created
        return created

    @hookimpl
    def metering_fetch_meter(self, meter_id):  # type: ignore[no-untyped-def]
        if meter_id not in self.meters:
            raise NotFoundError(f"Meter {meter_id} not found.")
        return self.meters[meter_id]

    @hookimpl
    def metering_fetch_all_meters(self, limit, next_token):  # type: ignore[no-untyped-def]
        self.calls.append(("fetch_all_meters", (limit, next_token)))
        return Page(items=list(self.meters.values())[:limit], next_token="more" if len(self.meters) > limit else None)

    @hookimpl
    def metering_delete_meter(self, meter_id):  # type: ignore[no-untyped-def]
        raise RuntimeError("database password=hunter2 refused")

    @hookimpl
    def metering_ingest_usage_event(self, usage_event):  # type: ignore[no-untyped-def]
        self.calls.append(("ingest", usage_event))

    @hookimpl
    def metering_fetch_usage(self, meter_id, query):  # type: ignore[no-untyped-def]
        self.calls.append(("fetch_usage", (meter_id, query)))
        return Page(items=[UsageRow(tenant_id="t-1", window_start=query.from_, window_end=query.to, value=3.0)],
                    next_token="n2")

    @hookimpl
    def metering_cancel_usage_events(self, request):  # type: ignore[no-untyped-def]
        return CancelResult(cancelled=len(request.identifiers))


class RecordingBilling(Provider):
    def __init__(self, settings: Any, context: Any) -> None:
        super().__init__(settings, context)
        self.webhooks: list[Any] = []

    @hookimpl
    def billing_create_customer(self, event):  # type: ignore[no-untyped-def]
        return None

    @hookimpl
    def billing_delete_customer(self, event):  # type: ignore[no-untyped-def]
        return None

    @hookimpl
    def billing_webhook(self, request):  # type: ignore[no-untyped-def]
        self.webhooks.append(request)
        return WebhookResponse(status=202, body={"accepted": len(request.body)})


@attrs.define
class FakeControlPlane:
    """The attributes build_app reads of the ControlPlane."""

    providers: Providers
    bindings: BindingTable
    bus: Bus
    config: Config
    auth_settings: Any


_KEY_PEM: list[bytes] = []


def _reuse_signing_key(state_dir: Path) -> None:
    """Generating a 2048-bit RSA key costs ~0.1 s: make one per session and copy it into each state dir."""
    if not _KEY_PEM:
        load_or_create_key(state_dir / "_seed")
        _KEY_PEM.append((state_dir / "_seed" / KEY_FILE).read_bytes())
    target = state_dir / "local"
    target.mkdir(parents=True, exist_ok=True)
    (target / KEY_FILE).write_bytes(_KEY_PEM[0])


def make_control_plane(state_dir: Path, *, auth: dict[str, Any] | None = None,
                       max_body: int = 4096) -> FakeControlPlane:
    _reuse_signing_key(state_dir)
    catalog = discover(entry_points=False, builtins=True,
                       extra={"recmeter": RecordingMetering, "recbilling": RecordingBilling})
    raw = {"state_dir": str(state_dir), "server": {"max_body_bytes": max_body},
           "providers": {"auth": {"type": "local", **(auth or {})}, "metering": {"type": "recmeter"},
                         "billing": {"type": "recbilling"}}}
    config = load_config(catalog, raw=raw)
    providers = build_providers(catalog, config)
    table = build_binding_table(catalog, config)
    bus = Bus(config.events)
    bus.bind(table, providers)
    providers.attach(bus.publish)
    bus.start()
    assert providers.auth is not None
    return FakeControlPlane(providers, table, bus, config, providers.auth.settings())


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[FakeControlPlane]:
    plane = make_control_plane(tmp_path)
    yield plane
    plane.bus.stop(2)
    plane.providers.shutdown()


def local(plane: FakeControlPlane) -> LocalAuth:
    instance = plane.providers.instances["auth"]
    assert isinstance(instance, LocalAuth)
    return instance


def metering(plane: FakeControlPlane) -> RecordingMetering:
    instance = plane.providers.instances["metering"]
    assert isinstance(instance, RecordingMetering)
    return instance


def bearer(plane: FakeControlPlane, *scope: str) -> dict[str, str]:
    return {"authorization": f"Bearer {local(plane).mint_token(scope or scopes.ALL)}"}


@pytest.fixture
async def client(cp: FakeControlPlane) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(cp)), base_url="http://sbt.test") as c:
        yield c


# --- the authorizer over HTTP -----------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signed(plane: FakeControlPlane, **changes: Any) -> str:
    provider = local(plane)
    now = int(time.time())
    claims = {"iss": provider.issuer, "aud": provider.settings.audience, "sub": "x", "client_id": "sbt-local",
              "token_use": "access", "scope": " ".join(scopes.ALL), "iat": now, "nbf": now, "exp": now + 600,
              **changes}
    return jwt.encode(claims, provider.key.private_key, algorithm="RS256", headers={"kid": provider.key.kid})


def _tampered(plane: FakeControlPlane) -> str:
    head, body, sig = _signed(plane, scope="user/user_read").split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["scope"] = " ".join(scopes.ALL)
    return f"{head}.{_b64(json.dumps(claims).encode())}.{sig}"


def _alg_none(plane: FakeControlPlane) -> str:
    head, body, _ = _signed(plane).split(".")
    return f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{body}."


def _hs256_public_key(plane: FakeControlPlane) -> str:
    provider = local(plane)
    pem = provider.key.private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": provider.key.kid}).encode())
    body = _signed(plane).split(".")[1]
    return f"{head}.{body}.{_b64(hmac.new(pem, f'{head}.{body}'.encode(), hashlib.sha256).digest())}"


UNAUTHORIZED = {
    "missing": lambda p: None,
    "expired": lambda p: _signed(p, exp=int(time.time()) - 600, iat=int(time.time()) - 1200,
                                 nbf=int(time.time()) - 1200),
    "not yet valid": lambda p: _signed(p, nbf=int(time.time()) + 600),
    "wrong issuer": lambda p: _signed(p, iss="http://elsewhere.test"),
    "wrong audience": lambda p: _signed(p, aud="not-sbt"),
    "tampered": _tampered,
    "alg none": _alg_none,
    "HS256 with the public key": _hs256_public_key,
}


@pytest.mark.parametrize("case", list(UNAUTHORIZED))
async def test_bad_or_missing_tokens_are_401(cp: FakeControlPlane, client: httpx.AsyncClient, case: str) -> None:
    token = UNAUTHORIZED[case](cp)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await client.post("/users", json={"userName": "mallory", "userRole": "admin",
                                                 "email": "m@example.com"}, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["message"]
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert not local(cp).users.exists("mallory")


async def test_a_valid_token_passes(cp: FakeControlPlane, client: httpx.AsyncClient) -> None:
    response = await client.get("/users", headers={"authorization": f"Bearer {_signed(cp)}"})
    assert response.status_code == 200


async def test_a_missing_scope_is_403(cp: FakeControlPlane, client: httpx.AsyncClient) -> None:
    headers = bearer(cp, scopes.USER_READ)
    response = await client.post("/users", json={"userName": "bob", "userRole": "r", "email": "b@example.com"},
                                 headers=headers)
    assert response.status_code == 403
    assert response.json() == {"message": "the token lacks the scope user/user_write"}
    assert (await client.get("/users", headers=headers)).status_code == 200


async def test_scope_checks_can_be_switched_off(tmp_path: Path) -> None:
    plane = make_control_plane(tmp_path, auth={"enforce_scopes": False})
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(plane)),
                                     base_url="http://sbt.test") as c:
            no_scopes = {"authorization": f"Bearer {local(plane).mint_token([])}"}
            response = await c.post("/users", json={"userName": "bob", "userRole": "r", "email": "b@example.com"},
                                    headers=no_scopes)
            assert response.status_code == 201
            assert (await c.get("/users")).status_code == 401  # the token itself is still required
    finally:
        plane.bus.stop(2)
        plane.providers.shutdown()


# --- users through the local provider ------------------------------------------------------------------------

async def test_users_full_crud_with_enable_and_disable(cp: FakeControlPlane, client: httpx.AsyncClient) -> None:
    h = bearer(cp, scopes.USER_READ, scopes.USER_WRITE)
    created = await client.post("/users", json={"userName": "alice", "userRole": "TenantAdmin",
                                                "email": "alice@example.com"}, headers=h)
    assert created.status_code == 201
    assert created.json() == {"data": {"userName": "alice"}}
    again = await client.post("/users", json={"userName": "alice", "userRole": "x", "email": "a@example.com"},
                              headers=h)
    assert again.status_code == 409
    for name in ("bob", "carol"):
        await client.post("/users", json={"userName": name, "userRole": "r", "email": f"{name}@example.com"},
                          headers=h)

    first = (await client.get("/users", params={"limit": 2}, headers=h)).json()
    assert [u["userName"] for u in first["data"]] == ["alice", "bob"]
    second = (await client.get("/users", params={"limit": 2, "next_token": first["next_token"]}, headers=h)).json()
    assert [u["userName"] for u in second["data"]] == ["carol"]
    assert "next_token" not in second
    assert (await client.get("/users", params={"limit": 61}, headers=h)).status_code == 400
    assert (await client.get("/users", params={"limit": "ten"}, headers=h)).status_code == 400

    user = (await client.get("/users/alice", headers=h)).json()["data"]
    assert user["email"] == "alice@example.com" and user["userRole"] == "TenantAdmin" and user["enabled"] is True
    assert set(user) == {"userName", "userRole", "email", "status", "enabled", "created", "modified"}

    updated = await client.put("/users/alice", json={"userRole": "Reader"}, headers=h)
    assert updated.json() == {"message": "User updated"}
    assert (await client.get("/users/alice", headers=h)).json()["data"]["userRole"] == "Reader"
    assert (await client.put("/users/alice", json={}, headers=h)).status_code == 400

    assert (await client.put("/users/alice/disable", headers=h)).json() == {"message": "User disabled"}
    assert (await client.get("/users/alice", headers=h)).json()["data"]["enabled"] is False
    assert (await client.put("/users/alice/enable", headers=h)).json() == {"message": "User enabled"}
    assert (await client.get("/users/alice", headers=h)).json()["data"]["enabled"] is True

    assert (await client.delete("/users/alice", headers=h)).json() == {"message": "User deleted"}
    missing = await client.get("/users/alice", headers=h)
    assert missing.status_code == 404
    assert missing.json() == {"message": "User alice not found."}
    assert (await client.put("/users/alice/disable", headers=h)).status_code == 404


async def test_bad_fields_are_400_naming_each(cp: FakeControlPlane, client: httpx.AsyncClient) -> None:
    response = await client.post("/users", json={"userName": "x", "email": "x@example.com", "extra": 1},
                                 headers=bearer(cp))
    assert response.status_code == 400
    message = response.json()["message"]
    assert "userRole" in message and "extra" in message
    bad_email = await client.post("/users", json={"userName": "x", "userRole": "r", "email": "nope"},
                                  headers=bearer(cp))
    assert bad_email.status_code == 400 and "email" in bad_email.json()["message"]


# --- body limit and malformed JSON ------------------------------------------------------------------------

async def test_a_body_over_the_limit_is_413(cp: FakeControlPlane, client: httpx.AsyncClient) -> None:
    big = json.dumps({"userName": "big", "userRole": "r", "email": "b@example.com", "pad": "x" * 5000})
    response = await client.post("/users", content=big, headers={**bearer(cp), "content-type": "application/json"})
    assert response.status_code == 413
    assert "4096" in response.json()["message"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit counts streamed bytes
        for _ in range(10):
            yield b"x" * 1000

    streamed = await client.post("/events", content=chunks(), headers=bearer(cp))
    assert streamed.status_code == 413
    assert not local(cp).users.exists("big")
    assert cp.bus.recent() == []


async def test_malformed_json_is_400_and_nothing_is_stored(cp: FakeControlPlane, client: httpx.AsyncClient) -> None:
    h = {**bearer(cp), "content-type": "application/json"}
    response = await client.post("/users", content=b'{"userName": "x", ', headers=h)
    assert response.status_code == 400
    assert response.json()["message"].startswith("body: not valid JSON")
    assert (await client.get("/users", headers=h)).json() == {"data": []}

    events = await client.post("/events", content=b'{"Entries": [', headers=h)
    assert events.status_code == 400
    assert "not valid JSON" in events.json()["message"]
    empty = await client.post("/events", content=b"", headers=h)
    assert empty.status_code == 400
    assert cp.bus.recent() == []


# --- errors -----------------------------------------------------------------------------------------------

async def test_provider_failures_are_502_without_internals(cp: FakeControlPlane, client: httpx.AsyncClient) -> None:
    response = await client.delete("/meters/m-1", headers=bearer(cp))
    assert response.status_code == 502
    assert "hunter2" not in response.text
    assert response.json()["message"] == "metering provider 'recmeter' failed in metering_delete_meter: RuntimeError"


async def test_unknown_routes_and_methods_use_the_envelope(client: httpx.AsyncClient) -> None:
    assert (await client.get("/nowhere")).json() == {"message": "Not Found"}
    wrong = await client.patch("/users")
    assert wrong.status_code == 405
    assert wrong.json() == {"message": "Method Not Allowed"}


# --- metering routes ----------------------------------------------------------------------------------------

async def test_meter_and_usage_routes(cp: FakeControlPlane, client: httpx.AsyncClient) -> None:
    h = bearer(cp)
    created = await client.post("/meters", json={"name": "API calls", "eventName": "api_call",
                                                 "aggregation": "SUM", "groupBy": ["region"]}, headers=h)
    assert created.status_code == 201
    meter = created.json()["data"]
    assert meter["meterId"] == "m-1" and meter["valueProperty"] == "value" and meter["groupBy"] == ["region"]
    assert (await client.get("/meters/m-1", headers=h)).json()["data"]["name"] == "API calls"
    assert (await client.get("/meters/nope", headers=h)).status_code == 404
    listed = (await client.get("/meters", params={"limit": 5}, headers=h)).json()
    assert [m["meterId"] for m in listed["data"]] == ["m-1"]
    assert ("fetch_all_meters", (5, None)) in metering(cp).calls

    usage = await client.get("/usage/m-1", params=[("from", "2026-01-01T00:00:00Z"), ("to", "2026-01-02T00:00:00Z"),
                                                  ("windowSize", "HOUR"), ("groupBy", "region"),
                                                  ("groupBy", "plan"), ("tenantId", "t-1")], headers=h)
    assert usage.status_code == 200, usage.text
    body = usage.json()
    assert body["next_token"] == "n2"
    assert body["data"][0] == {"tenantId": "t-1", "windowStart": "2026-01-01T00:00:00Z",
                               "windowEnd": "2026-01-02T00:00:00Z", "value": 3.0, "groups": {}}
    meter_id, query = next(args for name, args in metering(cp).calls if name == "fetch_usage")
    assert meter_id == "m-1" and query.group_by == ("region", "plan") and query.tenant_id == "t-1"
    bad = await client.get("/usage/m-1", params={"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z",
                                                 "windwSize": "DAY"}, headers=h)
    assert bad.status_code == 400
    assert "windwSize" in bad.json()["message"]

    cancelled = await client.request("DELETE", "/usage", json={"identifiers": ["a", "b"]}, headers=h)
    assert cancelled.json() == {"data": {"cancelled": 2}}
    # PUT /meters/{id} is not bound: the provider does not implement the optional hook.
    assert (await client.put("/meters/m-1", json={"name": "x"}, headers=h)).status_code == 405


# --- events ---------------------------------------------------------------------------------------------

async def test_an_ingest_usage_event_reaches_the_metering_provider(cp: FakeControlPlane,
                                                                   client: httpx.AsyncClient) -> None:
    detail = {"tenantId": "t-1", "eventName": "api_call", "properties": {"value": 2}}
    response = await client.post("/events", json={"Entries": [
        {"Source": "sbt.application.plane", "DetailType": "ingestUsage", "Detail": json.dumps(detail)},
        {"Source": "sbt.application.plane", "DetailType": "sbt_aws_ingestUsage", "Detail": detail},
        {"Source": "sbt.application.plane", "DetailType": "ingestUsage", "Detail": "{not json"},
        {"Source": "sbt.application.plane", "Detail": "{}"},
    ]}, headers=bearer(cp, scopes.EVENT_WRITE))
    assert response.status_code == 200
    body = response.json()
    assert body["FailedEntryCount"] == 2
    first, second, bad_detail, no_type = body["Entries"]
    assert "EventId" in first and "EventId" in second
    assert bad_detail["ErrorCode"] == "MalformedDetail"
    assert no_type["ErrorCode"] == "InvalidArgument" and "DetailType" in no_type["ErrorMessage"]
    assert cp.bus.join(5)
    ingested = [args for name, args in metering(cp).calls if name == "ingest"]
    assert sorted(u.identifier for u in ingested) == sorted([first["EventId"], second["EventId"]])
    assert ingested[0].tenant_id == "t-1" and ingested[0].properties == {"value": 2}

    record = await client.get(f"/events/{first['EventId']}", headers=bearer(cp, scopes.EVENT_READ))
    assert record.status_code == 200
    data = record.json()["data"]
    assert data["event"]["detail-type"] == "ingestUsage"
    assert data["deliveries"] == [{"target": "metering_ingest_usage_event", "state": "delivered", "attempts": 1,
                                   "lastError": None, "updated": data["deliveries"][0]["updated"]}]
    listed = (await client.get("/events", params={"limit": 1}, headers=bearer(cp, scopes.EVENT_READ))).json()
    assert len(listed["data"]) == 1
    assert (await client.get("/events/nope", headers=bearer(cp, scopes.EVENT_READ))).status_code == 404
    assert (await client.get("/events", headers=bearer(cp, scopes.EVENT_WRITE))).status_code == 403


async def test_events_accept_a_list_of_envelopes_keeping_their_ids(cp: FakeControlPlane,
                                                                    client: httpx.AsyncClient) -> None:
    envelope = {"detail-type": "ingestUsage", "source": "sbt.application.plane", "id": "evt-1",
                "detail": {"tenantId": "t-9", "eventName": "api_call", "properties": {"value": 1}}}
    h = bearer(cp, scopes.EVENT_WRITE)
    for _ in range(2):  # a resent envelope is deduplicated by the bus
        response = await client.post("/events", json=[envelope], headers=h)
        assert response.json() == {"FailedEntryCount": 0, "Entries": [{"EventId": "evt-1"}]}
    assert cp.bus.join(5)
    assert [u.identifier for name, u in metering(cp).calls if name == "ingest"] == ["evt-1"]
    bad = await client.post("/events", json={"Records": []}, headers=h)
    assert bad.status_code == 400


# --- webhook, route groups --------------------------------------------------------------------------------

async def test_the_webhook_needs_no_token_and_gets_raw_bytes(cp: FakeControlPlane, client: httpx.AsyncClient) -> None:
    raw = b'{"id": "evt_1",  "type": "invoice.paid"}'
    response = await client.post("/billing/stripe?x=1", content=raw, headers={"Stripe-Signature": "t=1,v1=abc"})
    assert response.status_code == 202
    assert response.json() == {"accepted": len(raw)}
    billing = cp.providers.instances["billing"]
    request = billing.webhooks[0]
    assert request.body == raw and request.path == "stripe" and request.query == {"x": "1"}
    assert request.header("Stripe-Signature") == "t=1,v1=abc" and "stripe-signature" in request.headers


async def test_route_groups_get_the_authorizer_scope_and_error_mapping(cp: FakeControlPlane) -> None:
    seen: list[Any] = []

    async def list_tenants(request: Request) -> Response:
        """List tenants."""
        seen.append(request.state.claims)
        return JSONResponse({"data": []})

    async def create_tenant(request: Request) -> Response:
        body = await request.json()
        if body.get("boom"):
            raise RuntimeError("secret connection string postgres://u:pw@db")
        raise NotFoundError("Tenant t-404 not found.")

    group = [(RouteTrigger("GET", "/tenants", scope=scopes.TENANT_READ), list_tenants),
             (RouteTrigger("POST", "/tenants", scope=scopes.TENANT_WRITE), create_tenant)]
    app = build_app(cp, route_groups=[group])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sbt.test") as c:
        assert (await c.get("/tenants")).status_code == 401
        assert (await c.get("/tenants", headers=bearer(cp, scopes.USER_READ))).status_code == 403
        ok = await c.get("/tenants", headers=bearer(cp, scopes.TENANT_READ))
        assert ok.json() == {"data": []}
        assert seen[0]["scope"] == scopes.TENANT_READ
        h = bearer(cp, scopes.TENANT_WRITE)
        assert (await c.post("/tenants", json={}, headers=h)).json() == {"message": "Tenant t-404 not found."}
        boom = await c.post("/tenants", json={"boom": True}, headers=h)
        assert boom.status_code == 500
        assert boom.json() == {"message": "Internal server error"}
        assert (await c.post("/tenants", content=b"x" * 5000, headers=h)).status_code == 413
        spec = (await c.get("/openapi.json")).json()
        assert spec["paths"]["/tenants"]["get"]["security"] == [{"bearerAuth": [scopes.TENANT_READ]}]


# --- OpenAPI -------------------------------------------------------------------------------------------------

async def test_openapi_is_generated_from_the_bindings_and_validates(cp: FakeControlPlane,
                                                                    client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    validate(spec)  # OpenAPI 3.1 (openapi-spec-validator picks the version from the document)
    assert spec["openapi"] == "3.1.0"
    for binding in cp.bindings.routes():
        trigger = binding.trigger
        assert isinstance(trigger, RouteTrigger)
        operation = spec["paths"][trigger.path][trigger.method.lower()]
        assert operation["operationId"] == binding.hook
    users_post = spec["paths"]["/users"]["post"]
    assert users_post["security"] == [{"bearerAuth": [scopes.USER_WRITE]}]
    assert users_post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateUserRequest"}
    assert "201" in users_post["responses"]
    assert spec["paths"]["/billing/{path}"]["post"]["security"] == []
    assert spec["components"]["schemas"]["User"]["properties"]["userName"] == {"type": "string"}
    assert spec["components"]["schemas"]["MeterCreate"]["required"] == ["name", "eventName"]
    assert "/events" in spec["paths"] and "/.well-known/jwks.json" in spec["paths"]
    assert "/meters/{meterId}" in spec["paths"] and "put" not in spec["paths"]["/meters/{meterId}"]


async def test_health_and_jwks(cp: FakeControlPlane, client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    jwks = (await client.get("/.well-known/jwks.json")).json()
    assert jwks == local(cp).jwks()
    assert "d" not in jwks["keys"][0]  # never the private part


# --- a real server ------------------------------------------------------------------------------------------

def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
def served(cp: FakeControlPlane) -> Iterator[str]:
    sock = _free_socket()
    server = uvicorn.Server(uvicorn.Config(build_app(cp), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    host, port = sock.getsockname()
    yield f"http://{host}:{port}"
    server.should_exit = True
    thread.join(10)
    sock.close()


def test_through_a_real_uvicorn(cp: FakeControlPlane, served: str) -> None:
    with httpx.Client(base_url=served, timeout=10) as c:
        assert c.get("/health").json() == {"status": "ok"}
        assert c.get("/users").status_code == 401
        h = bearer(cp)
        created = c.post("/users", json={"userName": "uvi", "userRole": "r", "email": "u@example.com"}, headers=h)
        assert created.status_code == 201
        assert c.get("/users/uvi", headers=h).json()["data"]["userName"] == "uvi"
        streamed = c.post("/events", content=iter([b"x" * 1024] * 8), headers=h)  # chunked, no Content-Length
        assert streamed.status_code == 413
        validate(c.get("/openapi.json").json())


async def test_openapi_operation_ids_stay_unique_across_route_groups(cp: FakeControlPlane) -> None:
    async def handler(request: Request) -> Response:
        return JSONResponse({"data": []})

    groups = [[(RouteTrigger("GET", "/things", scope=scopes.TENANT_READ), handler)],
              [(RouteTrigger("GET", "/things/{thingId}", scope=scopes.TENANT_READ), handler)]]
    app = build_app(cp, route_groups=groups)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sbt.test") as c:
        spec = (await c.get("/openapi.json")).json()
    validate(spec)
    ids = [op["operationId"] for item in spec["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


async def test_without_an_auth_provider_jwt_routes_are_closed(tmp_path: Path) -> None:
    catalog = discover(entry_points=False, builtins=True, extra={"recmeter": RecordingMetering})
    config = load_config(catalog, raw={"state_dir": str(tmp_path), "providers": {"auth": {"type": "none"},
                                                                              "metering": {"type": "recmeter"}}})
    providers = build_providers(catalog, config)
    plane = FakeControlPlane(providers, build_binding_table(catalog, config), Bus(config.events), config, None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(plane)), base_url="http://sbt.test") as c:
        response = await c.get("/meters", headers={"authorization": "Bearer x.y.z"})
        assert response.status_code == 401
        assert "no auth provider" in response.json()["message"]
        assert (await c.get("/health")).status_code == 200
        assert (await c.get("/.well-known/jwks.json")).status_code == 404  # only the local provider serves one
    plane.bus.stop(1)


def test_a_remote_jwks_is_fetched_from_the_issuer_over_http(cp: FakeControlPlane, served: str) -> None:
    """The authorizer of a non-local provider: keys fetched with httpx from ``jwks_url`` (here the local
    provider's, served by a real uvicorn), off the event loop, then cached."""
    from sbt_core.runtime.authorizer import Authorizer, RemoteJwks

    settings = attrs.evolve(cp.auth_settings, jwks_url=f"{served}/.well-known/jwks.json")
    remote = RemoteJwks(settings.resolved_jwks_url)
    app = build_app(cp, authorizer=Authorizer(settings, remote))
    async def run() -> list[int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sbt.test") as c:
            token = bearer(cp, scopes.USER_READ)
            return [(await c.get("/users", headers=token)).status_code for _ in range(3)]

    assert asyncio.run(run()) == [200, 200, 200]
    assert remote.has_key(local(cp).key.kid)


def test_the_real_control_plane_serves_the_app(tmp_path: Path) -> None:
    """build_app as the ControlPlane calls it (with its dead-letter and schedule route groups)."""
    from sbt_core.runtime.control_plane import ControlPlane

    _reuse_signing_key(tmp_path)
    catalog = discover(entry_points=False, builtins=True, extra={"recmeter": RecordingMetering})
    config = load_config(catalog, raw={"state_dir": str(tmp_path), "providers": {
        "auth": {"type": "local"}, "metering": {"type": "recmeter"}}})
    plane = ControlPlane.from_config(catalog, config, tenants=False)
    plane.open()
    try:
        auth = plane.providers.instances["auth"]
        headers = {"authorization": f"Bearer {auth.mint_token(scopes.ALL)}"}

        async def run() -> dict[str, Any]:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=plane.asgi_app),
                                         base_url="http://sbt.test") as c:
                assert (await c.get("/users/admin", headers=headers)).json()["data"]["userRole"] == "SystemAdmin"
                put = await c.post("/events", headers=headers, json={"Entries": [
                    {"Source": "sbt.application.plane", "DetailType": "ingestUsage",
                     "Detail": {"tenantId": "t-1", "eventName": "api_call", "properties": {"value": 5}}}]})
                spec = (await c.get("/openapi.json")).json()
                validate(spec)
                return dict(put.json())

        body = asyncio.run(run())
        assert body["FailedEntryCount"] == 0
        assert plane.bus.join(5)
        ingested = [u for name, u in plane.providers.instances["metering"].calls if name == "ingest"]
        assert [u.identifier for u in ingested] == [body["Entries"][0]["EventId"]]
    finally:
        plane.close(timeout=5)
