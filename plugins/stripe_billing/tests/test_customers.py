"""Customers and subscriptions against localstripe on 127.0.0.1 (plans: localstripe has no Prices)."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from sbt_core.errors import BadRequestError
from sbt_core.models import Event

API_KEY = "sk_test_sbt_fixture"


def client(url: str) -> stripe.StripeClient:
    return stripe.StripeClient(API_KEY, base_addresses={"api": url}, max_network_retries=0)


def customers_of(url: str, tenant_id: str) -> list[Any]:
    return [c for c in client(url).v1.customers.list(params={"limit": 100}).auto_paging_iter()
            if c.metadata and c.metadata.to_dict().get("tenantId") == tenant_id]


def subscriptions_of(url: str, customer_id: str, status: str = "all") -> list[Any]:
    return list(client(url).v1.subscriptions.list(params={"customer": customer_id, "status": status}).data)


def test_onboarding_creates_one_customer_with_tenant_metadata_and_subscription(localstripe_billing, stripe_url,
                                                                               onboarding_event):
    customer = localstripe_billing.facade.create_customer(onboarding_event("t-1", tenantRegistrationId="reg-1"))

    assert customer is not None and customer.tenant_id == "t-1" and customer.customer_id.startswith("cus_")
    found = customers_of(stripe_url, "t-1")
    assert [c.id for c in found] == [customer.customer_id]
    assert found[0].email == "admin@t-1.example" and found[0].name == "Tenant t-1"
    assert found[0].metadata.to_dict() == {"tenantId": "t-1", "tenantRegistrationId": "reg-1"}
    subs = subscriptions_of(stripe_url, customer.customer_id)
    assert len(subs) == 1 and subs[0].status == "active"
    assert [i.plan.id for i in subs[0]["items"].data] == ["plan_metered"]
    assert subs[0].metadata.to_dict() == {"tenantId": "t-1"}
    assert customer.metadata["subscriptionId"] == subs[0].id


def test_redelivered_onboarding_creates_nothing_new(localstripe_billing, stripe_url, onboarding_event):
    event = onboarding_event("t-2")
    first = localstripe_billing.facade.create_customer(event)
    again = localstripe_billing.facade.create_customer(event)

    assert again == first
    assert len(customers_of(stripe_url, "t-2")) == 1
    assert len(subscriptions_of(stripe_url, first.customer_id)) == 1


def test_onboarding_finds_the_customer_in_stripe_when_local_state_is_lost(stripe_url, make_billing,
                                                                          onboarding_event):
    # A fresh state directory = no local map: the lookup by metadata.tenantId must find the customer
    # (localstripe ignores idempotency keys, so this is the only guard here).
    settings = {"api_base": stripe_url, "item_kind": "plan", "customer_lookup": "list"}
    first = make_billing(**settings).facade.create_customer(onboarding_event("t-3"))
    second = make_billing(**settings).facade.create_customer(onboarding_event("t-3"))  # another event id too

    assert second.customer_id == first.customer_id
    assert len(customers_of(stripe_url, "t-3")) == 1
    assert len(subscriptions_of(stripe_url, first.customer_id)) == 1


def test_onboarding_without_prices_creates_customer_only(localstripe_billing, stripe_url, onboarding_event):
    customer = localstripe_billing.facade.create_customer(onboarding_event("t-4", prices=[]))

    assert subscriptions_of(stripe_url, customer.customer_id) == []
    assert "subscriptionId" not in customer.metadata


def test_onboarding_accepts_plain_id_lists(localstripe_billing, stripe_url, onboarding_event):
    customer = localstripe_billing.facade.create_customer(onboarding_event("t-5", prices=["plan_metered"]))

    assert [i.plan.id for s in subscriptions_of(stripe_url, customer.customer_id) for i in s["items"].data] == [
        "plan_metered"]


@pytest.mark.parametrize("detail, message", [
    ({"email": "x@example.com"}, "tenantId"),
    ({"tenantId": "t-6", "prices": [{"metricName": "m"}]}, "prices[0]"),
    ({"tenantId": "t-6", "prices": {"id": "plan_metered"}}, "prices must be a list"),
])
def test_onboarding_refuses_bad_details(localstripe_billing, stripe_url, detail, message):
    with pytest.raises(BadRequestError, match=message.replace("[", r"\[").replace("]", r"\]")):
        localstripe_billing.facade.create_customer(Event.create("onboardingRequest", detail))
    assert list(client(stripe_url).v1.customers.list().data) == []


def test_offboarding_cancels_subscriptions_and_deletes_the_customer(localstripe_billing, stripe_url,
                                                                    onboarding_event):
    customer = localstripe_billing.facade.create_customer(onboarding_event("t-7"))

    localstripe_billing.facade.delete_customer(Event.create("offboardingRequest", {"tenantId": "t-7"}))

    subscription = client(stripe_url).v1.subscriptions.retrieve(customer.metadata["subscriptionId"])
    assert subscription.status == "canceled"
    assert customers_of(stripe_url, "t-7") == []
    # Offboarding again (redelivery) and offboarding a tenant that never had a customer are not errors.
    localstripe_billing.facade.delete_customer(Event.create("offboardingRequest", {"tenantId": "t-7"}))
    localstripe_billing.facade.delete_customer(Event.create("offboardingRequest", {"tenantId": "never-onboarded"}))


def test_offboarding_can_keep_the_customer(stripe_url, make_billing, onboarding_event):
    billing = make_billing(api_base=stripe_url, item_kind="plan", customer_lookup="list",
                           delete_customer_on_offboarding=False)
    customer = billing.facade.create_customer(onboarding_event("t-8"))

    billing.facade.delete_customer(Event.create("offboardingRequest", {"tenantId": "t-8"}))

    kept = client(stripe_url).v1.customers.retrieve(customer.customer_id)
    assert kept.metadata.to_dict()["sbtOffboarded"] == "true"
    assert [s.status for s in subscriptions_of(stripe_url, customer.customer_id)] == ["canceled"]


def test_re_onboarding_after_deletion_creates_a_new_customer(localstripe_billing, stripe_url, onboarding_event):
    first = localstripe_billing.facade.create_customer(onboarding_event("t-9"))
    localstripe_billing.facade.delete_customer(Event.create("offboardingRequest", {"tenantId": "t-9"}))

    second = localstripe_billing.facade.create_customer(onboarding_event("t-9"))

    assert second.customer_id != first.customer_id
    assert [c.id for c in customers_of(stripe_url, "t-9")] == [second.customer_id]


def test_users_are_counted_on_the_customer(localstripe_billing, stripe_url, onboarding_event):
    customer = localstripe_billing.facade.create_customer(onboarding_event("t-10"))
    created = [Event.create("tenantUserCreated", {"tenantId": "t-10", "userId": u}) for u in ("u1", "u2")]
    for event in [*created, created[0]]:  # a redelivered tenantUserCreated counts once
        localstripe_billing.facade.create_user(event)
    assert client(stripe_url).v1.customers.retrieve(customer.customer_id).metadata.to_dict()["sbtUserCount"] == "2"

    localstripe_billing.facade.delete_user(Event.create("tenantUserDeleted", {"tenantId": "t-10", "userName": "u1"}))
    assert client(stripe_url).v1.customers.retrieve(customer.customer_id).metadata.to_dict()["sbtUserCount"] == "1"

    with pytest.raises(BadRequestError, match="user id"):
        localstripe_billing.facade.create_user(Event.create("tenantUserCreated", {"tenantId": "t-10"}))


def test_stripe_failure_is_a_provider_error_without_the_key(stripe_url, make_billing, onboarding_event):
    from sbt_core.errors import ProviderError

    billing = make_billing(api_base=stripe_url, item_kind="plan", customer_lookup="list", max_retries=0)
    # localstripe has no Prices: subscribing to a price id is refused by the fake (HTTP 400).
    billing_prices = make_billing(api_base=stripe_url, item_kind="price", customer_lookup="list", max_retries=0)
    with pytest.raises(ProviderError) as info:
        billing_prices.facade.create_customer(onboarding_event("t-11", prices=["price_x"]))
    assert "sk_test" not in info.value.message and "InvalidRequestError" in info.value.message
    # The customer exists already; a corrected retry reuses it.
    customer = billing.facade.create_customer(onboarding_event("t-11"))
    assert len(customers_of(stripe_url, "t-11")) == 1 and customer.customer_id
