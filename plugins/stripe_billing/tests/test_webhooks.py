"""Signed webhooks: localstripe's own deliveries reach ``billing_webhook`` through a loopback HTTP server."""

from __future__ import annotations

import json
import time
import uuid

import attrs
import pytest
import stripe

from sbt_core.errors import BadRequestError, NotFoundError
from sbt_core.models import Event, WebhookRequest

API_KEY = "sk_test_sbt_fixture"
WEBHOOK_SECRET = "whsec_sbt_fixture_secret"


def client(url: str) -> stripe.StripeClient:
    return stripe.StripeClient(API_KEY, base_addresses={"api": url}, max_network_retries=0)


def signed(payload: dict, secret: str = WEBHOOK_SECRET, path: str = "stripe") -> WebhookRequest:
    """A webhook request signed as Stripe signs it (``t=<unix>,v1=HMAC-SHA256(secret, "<t>.<body>")``)."""
    body = json.dumps(payload).encode()
    ts = int(time.time())
    signature = stripe.WebhookSignature._compute_signature(f"{ts}.{body.decode()}", secret)
    return WebhookRequest(path=path, body=body, headers={"stripe-signature": f"t={ts},v1={signature}"})


def subscribe_with_card(url: str, customer_id: str, payment_method: str) -> None:
    """Attach a localstripe test payment method as the default and subscribe to the 5.00 USD ``plan_paid``."""
    stripe_api = client(url)
    stripe_api.v1.payment_methods.attach(payment_method, params={"customer": customer_id})
    stripe_api.v1.customers.update(customer_id, params={"invoice_settings": {"default_payment_method": payment_method}})
    stripe_api.v1.subscriptions.create(params={"customer": customer_id, "items": [{"plan": "plan_paid"}]})


def test_paid_invoice_emits_billing_success_once(localstripe_billing, stripe_url, webhook_receiver, onboarding_event,
                                                 wait):
    # localstripe sends invoice.payment_succeeded for a charged invoice (real Stripe also sends
    # invoice.paid; both map to one billingSuccess). A 0-amount invoice is marked paid without an event,
    # so the test pays a 5.00 USD subscription with a working card.
    customer = localstripe_billing.facade.create_customer(onboarding_event("t-w1", prices=[]))
    subscribe_with_card(stripe_url, customer.customer_id, "pm_card_visa")

    delivery = webhook_receiver.first("invoice.payment_succeeded", customer.customer_id)
    assert delivery.status == 200 and delivery.body["emitted"] == "billingSuccess"
    [event] = localstripe_billing.of("billingSuccess", "t-w1")
    invoice = json.loads(delivery.request.body)["data"]["object"]
    assert event.source == "sbt.control.plane"
    assert event.detail == {"tenantId": "t-w1", "customerId": customer.customer_id, "invoiceId": invoice["id"],
                            "amount": 500, "currency": "usd", "stripeEventId": json.loads(delivery.request.body)["id"],
                            "stripeEventType": "invoice.payment_succeeded"}

    # Stripe redelivers the same signed event: 200, nothing emitted again.
    again = localstripe_billing.facade.webhook(delivery.request)
    assert again.status == 200 and again.body.get("duplicate") is True
    assert len(localstripe_billing.of("billingSuccess", "t-w1")) == 1
    # Other event types (customer.created, invoice.created, ...) are answered 200 and ignored.
    wait(lambda: webhook_receiver.of("customer.created", customer.customer_id), "customer.created")
    assert all(d.status == 200 for d in webhook_receiver.deliveries)
    created = webhook_receiver.of("customer.created", customer.customer_id)
    assert {d.body.get("ignored", "").split(":")[0] for d in created} == {"customer.created"}


def test_failed_payment_emits_billing_failure(localstripe_billing, stripe_url, webhook_receiver, onboarding_event,
                                              wait):
    customer = localstripe_billing.facade.create_customer(onboarding_event("t-w2", prices=[]))
    # localstripe reports a failed invoice payment only for asynchronous methods: a SEPA debit from its
    # failing test IBAN fails about 0.5 s later, and the subscription is then deleted too.
    sepa = client(stripe_url).v1.payment_methods.create(params={
        "type": "sepa_debit", "sepa_debit": {"iban": "DE62370400440532013001"},
        "billing_details": {"name": "Tenant t-w2", "email": "admin@t-w2.example"}})
    subscribe_with_card(stripe_url, customer.customer_id, sepa.id)

    delivery = webhook_receiver.first("invoice.payment_failed", customer.customer_id)
    assert delivery.body["emitted"] == "billingFailure"
    [event] = localstripe_billing.of("billingFailure", "t-w2")
    assert event.detail["tenantId"] == "t-w2"
    assert event.detail["amount"] == 500 and event.detail["currency"] == "usd"
    assert event.detail["invoiceId"] == json.loads(delivery.request.body)["data"]["object"]["id"]
    assert localstripe_billing.of("billingSuccess", "t-w2") == []
    wait(lambda: localstripe_billing.of("deactivateRequest", "t-w2"), "deactivateRequest after the failed SEPA debit")


def test_subscription_deleted_in_stripe_emits_deactivate_request(localstripe_billing, stripe_url, webhook_receiver,
                                                                 onboarding_event):
    customer = localstripe_billing.facade.create_customer(onboarding_event("t-w3"))

    client(stripe_url).v1.subscriptions.cancel(customer.metadata["subscriptionId"])

    delivery = webhook_receiver.first("customer.subscription.deleted", customer.customer_id)
    assert delivery.body["emitted"] == "deactivateRequest"
    [event] = localstripe_billing.of("deactivateRequest", "t-w3")
    assert event.detail["tenantId"] == "t-w3"
    assert event.detail["subscriptionId"] == customer.metadata["subscriptionId"]
    assert event.id == str(uuid.uuid5(uuid.UUID("6f1c3c0e-5b7a-4f43-9a55-2f1f0d6c7b21"),
                                      f"deactivateRequest:{json.loads(delivery.request.body)['id']}"))


def test_offboarding_cancellation_does_not_ask_to_deactivate(localstripe_billing, stripe_url, webhook_receiver,
                                                             onboarding_event):
    customer = localstripe_billing.facade.create_customer(onboarding_event("t-w4"))

    localstripe_billing.facade.delete_customer(Event.create("offboardingRequest", {"tenantId": "t-w4"}))

    delivery = webhook_receiver.first("customer.subscription.deleted", customer.customer_id)
    assert delivery.status == 200 and "cancelled by offboarding" in delivery.body["ignored"]
    assert localstripe_billing.of("deactivateRequest", "t-w4") == []


def test_bad_or_missing_signature_is_400_and_emits_nothing(localstripe_billing, stripe_url, onboarding_event):
    customer = localstripe_billing.facade.create_customer(onboarding_event("t-w5", prices=[]))
    payload = {"id": "evt_forged", "type": "invoice.paid", "object": "event",
               "data": {"object": {"id": "in_1", "object": "invoice", "customer": customer.customer_id,
                                   "amount_paid": 100, "currency": "usd"}}}
    good = signed(payload)

    with pytest.raises(BadRequestError, match="invalid Stripe-Signature"):
        localstripe_billing.facade.webhook(signed(payload, secret="whsec_someone_else"))
    with pytest.raises(BadRequestError, match="invalid Stripe-Signature"):  # body changed after signing
        localstripe_billing.facade.webhook(attrs.evolve(good, body=good.body.replace(b"100", b"1")))
    with pytest.raises(BadRequestError, match="missing Stripe-Signature"):
        localstripe_billing.facade.webhook(attrs.evolve(good, headers={}))
    with pytest.raises(NotFoundError):
        localstripe_billing.facade.webhook(signed(payload, path="chargebee"))
    assert localstripe_billing.events == []

    # The same payload correctly signed is accepted; invoice.paid maps to billingSuccess.
    assert localstripe_billing.facade.webhook(good).body["emitted"] == "billingSuccess"
    assert [e.detail["amount"] for e in localstripe_billing.of("billingSuccess")] == [100]


def test_invoice_paid_and_payment_succeeded_emit_one_success_per_invoice(localstripe_billing, onboarding_event):
    customer = localstripe_billing.facade.create_customer(onboarding_event("t-w6", prices=[]))
    invoice = {"id": "in_2", "object": "invoice", "customer": customer.customer_id, "amount_paid": 900,
               "currency": "eur"}
    for event_id, event_type in (("evt_a", "invoice.paid"), ("evt_b", "invoice.payment_succeeded")):
        localstripe_billing.facade.webhook(signed({"id": event_id, "type": event_type, "data": {"object": invoice}}))

    [event] = localstripe_billing.of("billingSuccess")
    assert event.detail["invoiceId"] == "in_2" and event.detail["currency"] == "eur"


def test_webhook_for_a_customer_without_tenant_is_ignored(localstripe_billing, stripe_url):
    stranger = client(stripe_url).v1.customers.create(params={"email": "someone@example.com"})
    answer = localstripe_billing.facade.webhook(signed({
        "id": "evt_c", "type": "invoice.payment_failed",
        "data": {"object": {"id": "in_3", "customer": stranger.id, "amount_due": 1, "currency": "usd"}}}))

    assert answer.status == 200 and "not a tenant's customer" in answer.body["ignored"]
    assert localstripe_billing.events == []


def test_webhook_without_configured_secret_refuses_everything(stripe_url, make_billing):
    billing = make_billing(api_base=stripe_url, item_kind="plan", customer_lookup="list", webhook_secret=None)
    with pytest.raises(BadRequestError, match="not configured"):
        billing.facade.webhook(signed({"id": "evt_d", "type": "invoice.paid", "data": {"object": {}}}))


def test_deleting_one_of_two_subscriptions_does_not_deactivate(localstripe_billing, stripe_url, webhook_receiver,
                                                               onboarding_event, wait):
    customer = localstripe_billing.facade.create_customer(onboarding_event("t-w7"))
    stripe_api = client(stripe_url)
    second = stripe_api.v1.subscriptions.create(params={"customer": customer.customer_id,
                                                        "items": [{"plan": "plan_metered"}]})

    stripe_api.v1.subscriptions.cancel(customer.metadata["subscriptionId"])
    first = wait(lambda: webhook_receiver.of("customer.subscription.deleted", customer.customer_id),
                 "the first customer.subscription.deleted")[0]
    assert "still has a live subscription" in first.body["ignored"]
    assert localstripe_billing.of("deactivateRequest", "t-w7") == []

    stripe_api.v1.subscriptions.cancel(second.id)
    wait(lambda: localstripe_billing.of("deactivateRequest", "t-w7"), "deactivateRequest after the last one")


def signed_raw(body: bytes, secret: str = WEBHOOK_SECRET, at: int | None = None) -> WebhookRequest:
    ts = int(time.time()) if at is None else at
    signature = stripe.WebhookSignature._compute_signature(f"{ts}.{body.decode()}", secret)
    return WebhookRequest(path="stripe", body=body, headers={"stripe-signature": f"t={ts},v1={signature}"})


def test_a_signature_dated_in_the_future_beyond_the_skew_is_refused(localstripe_billing, onboarding_event):
    from sbt_stripe_billing._webhooks import MAX_FUTURE_SKEW_SECONDS

    customer = localstripe_billing.facade.create_customer(onboarding_event("t-w9", prices=[]))
    body = json.dumps({"id": "evt_future", "type": "invoice.paid", "data": {"object": {
        "id": "in_9", "customer": customer.customer_id, "amount_paid": 1, "currency": "usd"}}}).encode()
    with pytest.raises(BadRequestError, match="in the future"):
        localstripe_billing.facade.webhook(signed_raw(body, at=int(time.time()) + 3600))
    assert localstripe_billing.events == []
    near = localstripe_billing.facade.webhook(signed_raw(body, at=int(time.time()) + MAX_FUTURE_SKEW_SECONDS // 2))
    assert near.body["emitted"] == "billingSuccess"


@pytest.mark.parametrize("body", [b"[]", b"null", b'"evt"', b"{}", b'{"id": "evt_x", "type": "invoice.paid"}',
                                  b'{"id": "evt_x", "type": "invoice.paid", "data": []}',
                                  b'{"id": "evt_x", "type": "invoice.paid", "data": {"object": "in_1"}}',
                                  b'{"id": "evt_x", "type": 5, "data": {"object": {}}}',
                                  b'{"id": "evt_x", "object": "charge", "type": "x", "data": {"object": {}}}',
                                  b'{"id": "evt_x", "type": "customer.subscription.deleted", '
                                  b'"data": {"object": {"metadata": "t1"}}}',
                                  b'{"id": "evt_x", "type": "invoice.paid", "data": {"object": {"amount_paid": NaN}}}',
                                  b'{"id": "evt_x", "type": "invoice.paid", "data": {"object": {"id": "\\ud800"}}}'])
def test_a_validly_signed_body_that_is_not_a_stripe_event_is_400_and_emits_nothing(localstripe_billing, body):
    with pytest.raises(BadRequestError):
        localstripe_billing.facade.webhook(signed_raw(body))
    assert localstripe_billing.events == []


def test_emitted_is_answered_only_when_an_event_was_published(localstripe_billing, onboarding_event):
    customer = localstripe_billing.facade.create_customer(onboarding_event("t-w10", prices=[]))
    invoice = {"id": "in_10", "customer": customer.customer_id, "amount_paid": 5, "currency": "usd"}
    first = localstripe_billing.facade.webhook(signed({"id": "evt_p", "type": "invoice.paid",
                                                       "data": {"object": invoice}}))
    second = localstripe_billing.facade.webhook(signed({"id": "evt_q", "type": "invoice.payment_succeeded",
                                                        "data": {"object": invoice}}))
    assert first.body["emitted"] == "billingSuccess"
    assert "emitted" not in second.body and "already emitted" in second.body["ignored"]
    assert len(localstripe_billing.of("billingSuccess")) == 1
