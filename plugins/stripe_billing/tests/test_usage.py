"""Ingest and the meter-event push, checked at the HTTP level.

localstripe has no Billing Meters, so ``POST /v1/billing/meter_events`` is answered by ``responses``
with the shapes Stripe documents (form-encoded ``event_name``, ``payload[stripe_customer_id]``,
``payload[value]``, ``identifier``, ``timestamp``; answer object ``billing.meter_event``).
The provider here talks to ``https://api.stripe.com``, but ``responses`` answers every call and refuses
any it was not told about, so nothing leaves the process.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
import responses
from sbt_stripe_billing._store import batch_identifier

from sbt_core.errors import BadRequestError, ProviderError
from sbt_core.models import Event, ScheduleRun

METER_EVENTS = "https://api.stripe.com/v1/billing/meter_events"
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
DAY = 86_400


def usage(tenant_id: str, name: str, value: Any, when: datetime | None = None, **extra: Any) -> Event:
    """sbt-aws's aggregator record ``{type, tenantId, metric: {name, unit, value}, timestamp}``."""
    detail = {"type": "ProductCount", "tenantId": tenant_id, "metric": {"name": name, "unit": "Count", "value": value},
              "timestamp": (when or NOW - timedelta(hours=1)).isoformat().replace("+00:00", "Z"), **extra}
    return Event.create("ingestUsage", detail, source="sbt.application.plane")


def run() -> ScheduleRun:
    return ScheduleRun(hook="billing_put_usage", expression="rate(24 hours)", manual=True)


def meter_event_answer(request: Any) -> tuple[int, dict[str, str], str]:
    """What Stripe answers a meter event: the ``billing.meter_event`` object echoing the request."""
    form = dict(parse_qsl(request.body))
    body = {"object": "billing.meter_event", "created": int(NOW.timestamp()), "livemode": False,
            "event_name": form["event_name"], "identifier": form["identifier"], "timestamp": int(form["timestamp"]),
            "payload": {k[len("payload["):-1]: v for k, v in form.items() if k.startswith("payload[")}}
    return 200, {"Content-Type": "application/json"}, json.dumps(body)


def stripe_error(status: int, kind: str, code: str | None = None) -> tuple[int, dict[str, str], str]:
    error = {"type": kind, "message": f"test {status}"}
    if code:
        error["code"] = code
    return status, {"Content-Type": "application/json"}, json.dumps({"error": error})


def sent(mock: responses.RequestsMock) -> list[dict[str, str]]:
    """The form fields of every meter-event request made, in order."""
    return [dict(parse_qsl(call.request.body)) for call in mock.calls if call.request.url == METER_EVENTS]


@pytest.fixture
def billing(make_billing):
    billing = make_billing(meter_event_names={"productsSold": "products_sold"}, retry_base_seconds=0,
                           retry_max_seconds=0, max_retries=3)
    billing.provider.clock = lambda: NOW
    billing.provider.store.set_customer("t1", "cus_T1")
    billing.provider.store.set_customer("t2", "cus_T2")
    return billing


@pytest.fixture
def mock():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def test_push_sends_one_documented_meter_event_per_tenant_metric_and_day(billing, mock):
    mock.add_callback(responses.POST, METER_EVENTS, callback=meter_event_answer)
    for event in (usage("t1", "productsSold", 3), usage("t1", "productsSold", 4, NOW - timedelta(minutes=5)),
                  usage("t2", "productsSold", 10), usage("t1", "apiCalls", 7)):
        billing.facade.ingest(event)

    result = billing.facade.put_usage(run())

    assert (result.pushed, result.remaining, result.errors) == (3, 0, [])
    today = int(NOW.timestamp()) - int(NOW.timestamp()) % DAY
    assert sorted(sent(mock), key=lambda f: (f["payload[stripe_customer_id]"], f["event_name"])) == [
        {"event_name": "apiCalls", "payload[stripe_customer_id]": "cus_T1", "payload[value]": "7",
         "identifier": batch_identifier("t1", "apiCalls", today, 0, 7),
         "timestamp": str(int((NOW - timedelta(hours=1)).timestamp()))},
        {"event_name": "products_sold", "payload[stripe_customer_id]": "cus_T1", "payload[value]": "7",
         "identifier": batch_identifier("t1", "productsSold", today, 0, 7),
         "timestamp": str(int((NOW - timedelta(minutes=5)).timestamp()))},
        {"event_name": "products_sold", "payload[stripe_customer_id]": "cus_T2", "payload[value]": "10",
         "identifier": batch_identifier("t2", "productsSold", today, 0, 10),
         "timestamp": str(int((NOW - timedelta(hours=1)).timestamp()))},
    ]
    call = mock.calls[0].request
    assert call.headers["Idempotency-Key"] == dict(parse_qsl(call.body))["identifier"]
    assert call.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert call.headers["Authorization"] == "Bearer sk_test_sbt_fixture"


def test_repeated_push_sends_nothing_new_and_new_usage_gets_a_new_identifier(billing, mock):
    mock.add_callback(responses.POST, METER_EVENTS, callback=meter_event_answer)
    billing.facade.ingest(usage("t1", "productsSold", 3))
    billing.facade.put_usage(run())

    again = billing.facade.put_usage(run())
    assert (again.pushed, again.remaining) == (0, 0) and len(sent(mock)) == 1

    billing.facade.ingest(usage("t1", "productsSold", 2))
    billing.facade.put_usage(run())
    first, second = sent(mock)
    assert second["payload[value]"] == "2" and second["identifier"] != first["identifier"]


def test_redelivered_usage_event_is_counted_once(billing, mock):
    mock.add_callback(responses.POST, METER_EVENTS, callback=meter_event_answer)
    event = usage("t1", "productsSold", 5)
    billing.facade.ingest(event)
    billing.facade.ingest(event)

    billing.facade.put_usage(run())
    assert [f["payload[value]"] for f in sent(mock)] == ["5"]


def test_canonical_and_amberflo_usage_events_are_aggregated(billing, mock):
    mock.add_callback(responses.POST, METER_EVENTS, callback=meter_event_answer)
    billing.facade.ingest(Event.create("ingestUsage", {"tenantId": "t1", "eventName": "productsSold",
                                                       "timestamp": "2026-11-21T10:00:00Z",
                                                       "properties": {"value": 2, "region": "eu"}}))
    billing.facade.ingest(Event.create("ingestUsage", {"tenantId": "t1", "meterApiName": "productsSold",
                                                       "meterValue": 3, "meterTimeInMillis": 1795255200000}))
    billing.facade.ingest(usage("t1", "productsSold", 4))
    billing.facade.ingest(usage("t1", "productsSold", "1"))  # sbt-aws's aggregator takes int(value)

    billing.facade.put_usage(run())
    assert [(f["event_name"], f["payload[value]"]) for f in sent(mock)] == [("products_sold", "10")]


def test_429_is_retried_with_the_same_identifier(billing, mock):
    mock.add(responses.POST, METER_EVENTS, body=stripe_error(429, "invalid_request_error", "rate_limit")[2],
             status=429, content_type="application/json")
    mock.add_callback(responses.POST, METER_EVENTS, callback=meter_event_answer)
    billing.facade.ingest(usage("t1", "productsSold", 3))

    result = billing.facade.put_usage(run())

    assert (result.pushed, result.remaining, result.errors) == (1, 0, [])
    first, second = sent(mock)
    assert first == second
    assert mock.calls[0].request.headers["Idempotency-Key"] == mock.calls[1].request.headers["Idempotency-Key"]


def test_500_keeps_the_aggregate_and_the_next_run_resends_the_same_event(billing, mock):
    mock.add(responses.POST, METER_EVENTS, body=stripe_error(500, "api_error")[2], status=500,
             content_type="application/json")
    billing.facade.ingest(usage("t1", "productsSold", 3))

    with pytest.raises(ProviderError, match="kept for the next run") as info:
        billing.facade.put_usage(run())
    assert "sk_test" not in info.value.message
    assert len(sent(mock)) == 1  # a 500 is not retried inside the run

    # Usage arriving meanwhile goes into a new batch; the failed one is re-sent unchanged.
    billing.facade.ingest(usage("t1", "productsSold", 4))
    mock.replace(responses.POST, METER_EVENTS, body=json.dumps({"object": "billing.meter_event"}),
                 content_type="application/json")
    result = billing.facade.put_usage(run())

    assert (result.pushed, result.remaining) == (2, 0)
    failed, resent, new = sent(mock)
    assert resent == failed and resent["payload[value]"] == "3"
    assert new["payload[value]"] == "4" and new["identifier"] != failed["identifier"]


def test_lost_response_is_resent_with_the_same_identifier(billing, mock):
    # The request may have reached Stripe; re-sending under the same identifier lets Stripe drop the copy.
    mock.add(responses.POST, METER_EVENTS, body=requests.ConnectionError("connection reset"))
    billing.facade.ingest(usage("t1", "productsSold", 3))
    with pytest.raises(ProviderError):
        billing.facade.put_usage(run())
    attempts = sent(mock)
    assert len(attempts) == 4 and all(a == attempts[0] for a in attempts)  # 1 + max_retries

    mock.replace(responses.POST, METER_EVENTS, body=json.dumps({"object": "billing.meter_event"}),
                 content_type="application/json")
    assert billing.facade.put_usage(run()).pushed == 1
    assert sent(mock)[-1] == attempts[0]


def test_usage_beyond_the_35_day_horizon_is_reported_not_sent(billing, mock):
    mock.add_callback(responses.POST, METER_EVENTS, callback=meter_event_answer)
    billing.facade.ingest(usage("t1", "productsSold", 8, NOW - timedelta(days=36)))
    billing.facade.ingest(usage("t1", "productsSold", 2, NOW - timedelta(days=30)))
    billing.facade.ingest(usage("t1", "productsSold", 1, NOW + timedelta(days=1)))  # clock skew: capped at now

    result = billing.facade.put_usage(run())

    assert (result.pushed, result.remaining) == (2, 0)
    assert len(result.errors) == 1 and "35-day" in result.errors[0] and "value 8" in result.errors[0]
    assert sorted(int(f["timestamp"]) for f in sent(mock)) == [int((NOW - timedelta(days=30)).timestamp()),
                                                               int(NOW.timestamp())]
    assert billing.facade.put_usage(run()).errors == []  # reported once


def test_tenant_without_customer_is_kept_until_it_has_one(billing, mock):
    mock.add_callback(responses.POST, METER_EVENTS, callback=meter_event_answer)
    billing.facade.ingest(usage("t3", "productsSold", 6))
    billing.facade.ingest(usage("t1", "productsSold", 1))

    result = billing.facade.put_usage(run())
    assert (result.pushed, result.remaining) == (1, 1) and "no Stripe customer" in result.errors[0]

    billing.provider.store.set_customer("t3", "cus_T3")
    assert billing.facade.put_usage(run()).pushed == 1
    assert sent(mock)[-1]["payload[stripe_customer_id]"] == "cus_T3"


@pytest.mark.parametrize("detail, message", [
    ({"metric": {"name": "productsSold", "value": 1}}, "tenantId"),
    ({"tenantId": "t1", "metric": {"value": 1}}, "metric.name"),
    ({"tenantId": "t1", "metric": {"name": "productsSold", "value": "many"}}, "must be a number"),
    ({"tenantId": "t1", "metric": {"name": "productsSold", "value": None}}, "must be a number"),
    ({"tenantId": "t1", "metric": {"name": "productsSold", "value": 1.5}}, "whole number"),
    ({"tenantId": "t1", "eventName": "productsSold", "properties": {}}, "properties.value"),
    ({"tenantId": "t1", "properties": {"value": 1}}, "eventName"),
])
def test_bad_usage_records_are_refused(billing, detail, message):
    with pytest.raises(BadRequestError, match=message):
        billing.facade.ingest(Event.create("ingestUsage", detail))


def test_aggregates_survive_a_restart(make_billing, tmp_path, mock):
    mock.add_callback(responses.POST, METER_EVENTS, callback=meter_event_answer)
    first = make_billing(state_dir=tmp_path / "state")
    first.provider.store.set_customer("t1", "cus_T1")
    first.facade.ingest(usage("t1", "productsSold", 3))
    first.provider.store.close()

    second = make_billing(state_dir=tmp_path / "state")
    second.provider.clock = lambda: NOW
    assert second.facade.put_usage(run()).pushed == 1
    assert sent(mock)[0]["payload[value]"] == "3"


def test_offboarding_pushes_final_usage_first_and_late_usage_is_reported_once(stripe_url, make_billing,
                                                                             onboarding_event):
    billing = make_billing(api_base=stripe_url, item_kind="plan", customer_lookup="list", retry_base_seconds=0,
                           retry_max_seconds=0)
    customer = billing.facade.create_customer(onboarding_event("t-off"))
    billing.facade.ingest(usage("t-off", "productsSold", 5, datetime.now(UTC)))
    meter_events = f"{stripe_url}/v1/billing/meter_events"

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(stripe_url)  # customers and subscriptions: localstripe itself
        mock.add(responses.POST, meter_events, status=500, json={"error": {"type": "api_error", "message": "x"}})
        with pytest.raises(ProviderError, match="final usage push"):
            billing.facade.delete_customer(Event.create("offboardingRequest", {"tenantId": "t-off"}))
        # Nothing was cancelled while the usage was unsent.
        subscription = stripe_client_for(stripe_url).v1.subscriptions.retrieve(customer.metadata["subscriptionId"])
        assert subscription.status == "active"

        mock.replace(responses.POST, meter_events, json={"object": "billing.meter_event"})
        billing.facade.delete_customer(Event.create("offboardingRequest", {"tenantId": "t-off"}))  # the bus's retry
        final = [dict(parse_qsl(c.request.body)) for c in mock.calls if c.request.url == meter_events]
        assert final[-1]["payload[value]"] == "5" and final[-1]["payload[stripe_customer_id]"] == customer.customer_id
        assert final[0]["identifier"] == final[-1]["identifier"]
        assert stripe_client_for(stripe_url).v1.subscriptions.retrieve(
            customer.metadata["subscriptionId"]).status == "canceled"

        billing.facade.ingest(usage("t-off", "productsSold", 2, datetime.now(UTC)))
        result = billing.facade.put_usage(run())
        assert (result.pushed, result.remaining) == (0, 0) and "offboarded" in result.errors[0]
        assert billing.facade.put_usage(run()).errors == []


def stripe_client_for(url: str) -> Any:
    import stripe

    return stripe.StripeClient("sk_test_sbt_fixture", base_addresses={"api": url}, max_network_retries=0)


def test_partial_failure_fails_the_run_and_the_retry_sends_only_what_is_missing(billing, mock):
    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        if dict(parse_qsl(request.body))["payload[stripe_customer_id]"] == "cus_T1" and not fixed:
            return stripe_error(500, "api_error")
        return meter_event_answer(request)

    fixed = False
    mock.add_callback(responses.POST, METER_EVENTS, callback=answer)
    billing.facade.ingest(usage("t1", "productsSold", 1))
    billing.facade.ingest(usage("t2", "productsSold", 2))

    with pytest.raises(ProviderError, match=r"1 batch\(es\) failed .*\(1 pushed\)"):
        billing.facade.put_usage(run())
    fixed = True
    result = billing.facade.put_usage(run())  # the bus's retry

    assert (result.pushed, result.remaining) == (1, 0)
    customers = [f["payload[stripe_customer_id]"] for f in sent(mock)]
    assert sorted(customers[:2]) == ["cus_T1", "cus_T2"] and customers[2:] == ["cus_T1"]
