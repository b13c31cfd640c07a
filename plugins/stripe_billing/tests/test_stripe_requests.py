"""What the provider sends real Stripe where localstripe cannot show it: Customer Search and idempotency keys
(localstripe has no search and ignores ``Idempotency-Key``). Answered by ``responses``; nothing leaves the process."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlparse

import pytest
import responses

from sbt_core.models import Event

API = "https://api.stripe.com"


@pytest.fixture
def mock():
    with responses.RequestsMock() as rsps:
        yield rsps


def test_onboarding_searches_by_tenant_then_creates_with_idempotency_keys(make_billing, mock):
    billing = make_billing(item_kind="price")
    event = Event.create("onboardingRequest", {"tenantId": "t'1", "email": "a@t1.example", "tenantName": "T1",
                                               "prices": [{"id": "price_A", "metricName": "productsSold"}]})
    mock.add(responses.GET, f"{API}/v1/customers/search",
             json={"object": "search_result", "data": [], "has_more": False, "url": "/v1/customers/search"})
    mock.add(responses.POST, f"{API}/v1/customers",
             json={"id": "cus_1", "object": "customer", "metadata": {"tenantId": "t'1"}})
    mock.add(responses.GET, f"{API}/v1/subscriptions",
             json={"object": "list", "data": [], "has_more": False, "url": "/v1/subscriptions"})
    mock.add(responses.POST, f"{API}/v1/subscriptions",
             json={"id": "sub_1", "object": "subscription", "status": "active"})

    customer = billing.facade.create_customer(event)

    assert customer.customer_id == "cus_1" and customer.metadata["subscriptionId"] == "sub_1"
    search, create, listing, subscribe = (c.request for c in mock.calls)
    assert dict(parse_qsl(urlparse(search.url).query))["query"] == "metadata['tenantId']:'t\\'1'"
    assert create.headers["Idempotency-Key"] == f"sbt-onboarding-{event.id}-customer"
    assert dict(parse_qsl(create.body)) == {"metadata[tenantId]": "t'1", "email": "a@t1.example", "name": "T1"}
    assert dict(parse_qsl(urlparse(listing.url).query))["customer"] == "cus_1"
    assert subscribe.headers["Idempotency-Key"] == f"sbt-onboarding-{event.id}-subscription"
    assert dict(parse_qsl(subscribe.body)) == {"customer": "cus_1", "items[0][price]": "price_A",
                                               "metadata[tenantId]": "t'1"}


def test_onboarding_reuses_a_customer_found_by_search(make_billing, mock):
    billing = make_billing()
    mock.add(responses.GET, f"{API}/v1/customers/search", json={
        "object": "search_result", "has_more": False, "url": "/v1/customers/search",
        "data": [{"id": "cus_old", "object": "customer", "metadata": {"tenantId": "t2"}}]})

    customer = billing.facade.create_customer(Event.create("onboardingRequest", {"tenantId": "t2"}))

    assert customer.customer_id == "cus_old"
    assert [c.request.method for c in mock.calls] == ["GET"]  # no create, no subscription (no prices)
    assert billing.provider.store.customer_of("t2") == "cus_old"


def test_offboarding_cancels_with_invoice_now(make_billing, mock):
    billing = make_billing(delete_customer_on_offboarding=False)
    billing.provider.store.set_customer("t3", "cus_3")
    mock.add(responses.GET, f"{API}/v1/customers/cus_3", json={"id": "cus_3", "object": "customer"})
    mock.add(responses.GET, f"{API}/v1/subscriptions", json={
        "object": "list", "has_more": False, "url": "/v1/subscriptions",
        "data": [{"id": "sub_3", "object": "subscription", "status": "active"}]})
    mock.add(responses.DELETE, f"{API}/v1/subscriptions/sub_3", json={"id": "sub_3", "object": "subscription",
                                                                      "status": "canceled"})
    mock.add(responses.POST, f"{API}/v1/customers/cus_3", json={"id": "cus_3", "object": "customer"})

    billing.facade.delete_customer(Event.create("offboardingRequest", {"tenantId": "t3"}))

    cancel = next(c.request for c in mock.calls if c.request.method == "DELETE")
    assert "invoice_now=true" in (urlparse(cancel.url).query + (cancel.body or ""))
    keep = [c.request for c in mock.calls if c.request.method == "POST"][-1]
    assert dict(parse_qsl(keep.body)) == {"metadata[sbtOffboarded]": "true"}


def test_subscription_options_are_sent_when_set(make_billing, mock):
    billing = make_billing(collection_method="send_invoice", days_until_due=14)
    billing.provider.store.set_customer("t4", "cus_4")
    mock.add(responses.GET, f"{API}/v1/customers/cus_4", json={"id": "cus_4", "object": "customer"})
    mock.add(responses.GET, f"{API}/v1/subscriptions",
             json={"object": "list", "data": [], "has_more": False, "url": "/v1/subscriptions"})
    mock.add(responses.POST, f"{API}/v1/subscriptions", json={"id": "sub_4", "object": "subscription"})

    billing.facade.create_customer(Event.create("onboardingRequest", {"tenantId": "t4", "prices": ["price_B"]}))

    subscribe = mock.calls[-1].request
    assert dict(parse_qsl(subscribe.body)) == {"customer": "cus_4", "items[0][price]": "price_B",
                                               "metadata[tenantId]": "t4", "collection_method": "send_invoice",
                                               "days_until_due": "14"}
