"""The stripe provider against sbt's conformance suite, on localstripe, with Stripe's Billing Meter endpoint
(which localstripe lacks) answered by the ``responses`` stub of ``test_usage.py``."""

from collections.abc import Iterator

import pytest
import responses
from sbt_stripe_billing import StripeBilling

from sbt_core.testing.conformance import ConformanceTarget, TestBillingConformance  # noqa: F401 - the suite

from .conftest import API_KEY, WEBHOOK_SECRET
from .test_usage import meter_event_answer


@pytest.fixture
def sbt_conformance_billing(localstripe_server: str) -> Iterator[ConformanceTarget]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as stub:
        stub.add_callback(responses.POST, f"{localstripe_server}/v1/billing/meter_events", callback=meter_event_answer)
        stub.add_passthru(localstripe_server)
        yield ConformanceTarget("billing", "stripe", StripeBilling, {
            "api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET, "api_base": localstripe_server,
            "item_kind": "plan", "customer_lookup": "list", "retry_base_seconds": 0, "retry_max_seconds": 0})
