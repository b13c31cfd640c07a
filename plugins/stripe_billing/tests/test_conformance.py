"""The stripe provider against sbt's conformance suite, on localstripe, with Stripe's Billing Meter endpoint
(which localstripe lacks) answered by the ``responses`` stub of ``test_usage.py``; the stub is also the
suite's probe of what Stripe received, and fails on demand for the interrupted-push check."""

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from sbt_stripe_billing import StripeBilling

from sbt_core.testing.conformance import ConformanceTarget, TestBillingConformance  # noqa: F401 - the suite

from .conftest import API_KEY, WEBHOOK_SECRET
from .test_usage import meter_event_answer, stripe_error


class MeterEvents:
    """Stripe's ``POST /v1/billing/meter_events`` as a stub: counts accepted events; in an outage, accepts
    one more and then answers 500 (after the provider's retries, the run is cut short)."""

    def __init__(self) -> None:
        self.accepted = 0
        self.outage_left: int | None = None

    def answer(self, request: Any) -> tuple[int, dict[str, str], str]:
        if self.outage_left is not None:
            if self.outage_left == 0:
                return stripe_error(500, "api_error")
            self.outage_left -= 1
        self.accepted += 1
        return meter_event_answer(request)

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        self.outage_left = 1
        try:
            yield
        finally:
            self.outage_left = None


@pytest.fixture(scope="session")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One store for every process of the suite's deployment (its second process included)."""
    return f"sqlite:///{tmp_path_factory.mktemp('stripe-store') / 'billing.sqlite3'}"


@pytest.fixture
def sbt_conformance_billing(localstripe_server: str, shared_store: str) -> Iterator[ConformanceTarget]:
    meter_events = MeterEvents()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as stub:
        stub.add_callback(responses.POST, f"{localstripe_server}/v1/billing/meter_events", callback=meter_events.answer)
        stub.add_passthru(localstripe_server)
        yield ConformanceTarget("billing", "stripe", StripeBilling, {
            "api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET, "api_base": localstripe_server,
            "item_kind": "plan", "customer_lookup": "list", "retry_base_seconds": 0, "retry_max_seconds": 0,
            "database_url": shared_store},
            pushed=lambda: meter_events.accepted, outage=meter_events.outage)
