"""The provider inside a running control plane (``sbt_core.testing``): SBT's tenant-registration flow drives
onboarding/offboarding on localstripe, ``POST /billing/stripe`` reaches the webhook hook (localstripe's own
signed deliveries, to the real app served by uvicorn on 127.0.0.1), and ``POST /schedules/billing_put_usage/run``
pushes usage on demand, also through `sbt schedule run billing_put_usage`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
import responses
import stripe
from sbt_stripe_billing import StripeBilling

from sbt_core.models import Event, to_json

API_KEY = "sk_test_sbt_fixture"
WEBHOOK_SECRET = "whsec_sbt_fixture_secret"


def client(url: str) -> stripe.StripeClient:
    return stripe.StripeClient(API_KEY, base_addresses={"api": url}, max_network_retries=0)


def tenant_customers(url: str, tenant_id: str) -> list[Any]:
    return [c for c in client(url).v1.customers.list(params={"limit": 100}).auto_paging_iter()
            if c.metadata and c.metadata.to_dict().get("tenantId") == tenant_id]


@pytest.fixture
def plane(sbt_control_plane, stripe_url):
    return sbt_control_plane(plugins={"stripe": StripeBilling}, config={
        "providers": {"billing": {"type": "stripe", "api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET,
                                  "api_base": stripe_url, "item_kind": "plan", "customer_lookup": "list",
                                  "retry_base_seconds": 0, "retry_max_seconds": 0,
                                  "meter_event_names": {"productsSold": "products_sold"}}},
        "bindings": [{"hook": "billing_put_usage", "schedule": "rate(1 hour)"}],
    })


def registration_body(name: str) -> dict[str, Any]:
    # The body sbt-aws.sh create-tenant-registration sends, with a localstripe plan id.
    return {"tenantData": {"tenantName": name, "email": f"{name}@example.com", "tier": "basic",
                           "prices": [{"id": "plan_metered", "metricName": "productsSold"}]},
            "tenantRegistrationData": {"registrationStatus": "In progress"}}


@pytest.fixture
def served(plane) -> Iterator[str]:
    """The control plane's app under a real uvicorn on 127.0.0.1 (the core harness's ``serve_http``)."""
    with plane.serve_http() as url:
        yield url


def test_tenant_registration_onboards_and_offboards_one_customer(plane, stripe_url):
    api = plane.client()
    created = api.post("/tenant-registrations", json=registration_body("acme"))
    assert created.status_code == 201, created.text
    tenant_id = created.json()["data"]["tenantId"]
    plane.settle()

    [onboarding] = plane.events.of_type("onboardingRequest")
    assert plane.events.states(onboarding)["billing_create_customer"] == "delivered"
    [customer] = tenant_customers(stripe_url, tenant_id)
    assert customer.email == "acme@example.com" and customer.name == "acme"
    [subscription] = client(stripe_url).v1.subscriptions.list(params={"customer": customer.id}).data
    assert subscription.status == "active"

    # The same onboardingRequest put again with a new envelope id (a producer's retry): nothing new.
    plane.put(Event.create("onboardingRequest", dict(onboarding.detail)))
    plane.settle()
    assert [c.id for c in tenant_customers(stripe_url, tenant_id)] == [customer.id]
    assert len(client(stripe_url).v1.subscriptions.list(params={"customer": customer.id}).data) == 1

    registration_id = created.json()["data"]["tenantRegistrationId"]
    assert api.delete(f"/tenant-registrations/{registration_id}").status_code == 200
    plane.settle()
    [offboarding] = plane.events.of_type("offboardingRequest")
    assert plane.events.states(offboarding)["billing_delete_customer"] == "delivered"
    assert client(stripe_url).v1.subscriptions.retrieve(subscription.id).status == "canceled"
    assert tenant_customers(stripe_url, tenant_id) == []


def test_webhook_route_verifies_the_signature_and_emits_once(plane, stripe_url):
    customer = plane.providers.billing.create_customer(Event.create("onboardingRequest", {"tenantId": "t-r1"}))
    body = json.dumps({"id": "evt_route_1", "type": "invoice.paid", "object": "event", "data": {"object": {
        "id": "in_r1", "object": "invoice", "customer": customer.customer_id, "amount_paid": 1200,
        "currency": "usd"}}}).encode()
    ts = int(__import__("time").time())
    sig = stripe.WebhookSignature._compute_signature(f"{ts}.{body.decode()}", WEBHOOK_SECRET)
    hook = plane.client(authenticated=False)  # the webhook route takes no JWT

    forged = hook.post("/billing/stripe", content=body, headers={"Stripe-Signature": f"t={ts},v1={'0' * 64}"})
    missing = hook.post("/billing/stripe", content=body)
    assert (forged.status_code, missing.status_code) == (400, 400)
    assert "message" in forged.json()

    for _ in range(2):  # Stripe redelivers
        answer = hook.post("/billing/stripe", content=body, headers={"Stripe-Signature": f"t={ts},v1={sig}"})
        assert answer.status_code == 200, answer.text
    plane.settle()
    [success] = plane.events.of_type("billingSuccess")
    assert success.detail["tenantId"] == "t-r1" and success.detail["amount"] == 1200


def test_localstripe_webhooks_reach_the_served_app(plane, stripe_url, served, wait):
    answer = requests.post(f"{stripe_url}/_config/webhooks/sbt-tests", auth=(API_KEY, ""), timeout=5,
                           data={"url": f"{served}/billing/stripe", "secret": WEBHOOK_SECRET})
    assert answer.status_code == 200
    customer = plane.providers.billing.create_customer(Event.create("onboardingRequest", {
        "tenantId": "t-r2", "prices": ["plan_metered"]}))
    subscription_id = customer.metadata["subscriptionId"]

    client(stripe_url).v1.subscriptions.cancel(subscription_id)  # cancelled in Stripe, not by offboarding

    # Filter by tenant: localstripe may still be delivering an earlier test's events (it sends ~1 s late).
    [deactivate] = wait(lambda: [e for e in plane.events.of_type("deactivateRequest")
                                 if e.detail["tenantId"] == "t-r2"], "deactivateRequest via the app")
    assert deactivate.detail["tenantId"] == "t-r2" and deactivate.detail["subscriptionId"] == subscription_id
    assert deactivate.source == "sbt.control.plane"


def test_schedule_run_pushes_usage_on_demand(plane, stripe_url):
    customer = plane.providers.billing.create_customer(Event.create("onboardingRequest", {"tenantId": "t-r3"}))
    plane.put(Event.create("ingestUsage", {"tenantId": "t-r3", "metric": {"name": "productsSold", "value": 4}},
                           source="sbt.application.plane"))
    plane.settle()

    with responses.RequestsMock() as mock:
        mock.add(responses.POST, f"{stripe_url}/v1/billing/meter_events",
                 json={"object": "billing.meter_event", "event_name": "products_sold"})
        run = plane.client("event/event_write").post("/schedules/billing_put_usage/run")
        assert run.status_code == 202, run.text
        plane.settle()
        [call] = mock.calls
    form = dict(parse_qsl(call.request.body))
    assert form["event_name"] == "products_sold" and form["payload[value]"] == "4"
    assert form["payload[stripe_customer_id]"] == customer.customer_id
    assert to_json(plane.events.of_type("Scheduled Event")[0].detail)["manual"] is True


def test_sbt_schedule_run_cli_pushes_usage_on_demand(plane, stripe_url, served):
    from typer.testing import CliRunner

    from sbt_core.cli import build_app

    customer = plane.providers.billing.create_customer(Event.create("onboardingRequest", {"tenantId": "t-r4"}))
    plane.put(Event.create("ingestUsage", {"tenantId": "t-r4", "eventName": "productsSold",
                                           "properties": {"value": 6}}, source="sbt.application.plane"))
    plane.settle()

    with responses.RequestsMock() as mock:
        mock.add_passthru(served)  # in case the CLI's client is requests-based: it must reach the server
        mock.add_passthru(stripe_url)
        mock.add(responses.POST, f"{stripe_url}/v1/billing/meter_events",
                 json={"object": "billing.meter_event", "event_name": "products_sold"})
        result = CliRunner().invoke(build_app(), ["schedule", "run", "billing_put_usage", "--url", served,
                                                  "--token", plane.token("event/event_write"), "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["hook"] == "billing_put_usage"
        plane.settle()
        calls = [c for c in mock.calls if c.request.url.endswith("/v1/billing/meter_events")]
    [call] = calls
    form = dict(parse_qsl(call.request.body))
    assert (form["event_name"], form["payload[value]"], form["payload[stripe_customer_id]"]) == (
        "products_sold", "6", customer.customer_id)
