"""IBilling's contract as tests: :class:`TestBillingConformance`.

Delivery is at least once, so every event hook must be idempotent: the suite redelivers events through
the hook and the bus, and delivers one event from several threads at once. Customers are compared by
the :class:`~sbt_core.models.Customer` the hook returns (a provider returning None declares
``billing.customer_not_returned``).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from ...errors import SbtError
from ...models import Customer, PutUsageResult, ScheduleRun
from ...plugins import BillingFacade
from .. import events as sbt_events
from ..harness import Harness
from ._kit import ConformanceTarget, Planes, at_once, gate, promise

__all__ = ["TestBillingConformance"]

#: The detail types a billing provider publishes; a refused webhook must publish none of them.
BILLING_OUTPUT = ("billingSuccess", "billingFailure", "activateRequest", "deactivateRequest")


def _run() -> ScheduleRun:
    return ScheduleRun(hook="billing_put_usage", expression="rate(24 hours)", manual=True)


class TestBillingConformance:
    """IBilling as docs/design.md section 2 promises it. Needs the fixture ``sbt_conformance_billing``
    (a :class:`~._kit.ConformanceTarget`); ``pytest --sbt-conformance billing=<type>`` provides it."""

    sbt_interface = "billing"

    @pytest.fixture(autouse=True)
    def _gate(self, sbt_conformance_billing: ConformanceTarget, request: pytest.FixtureRequest) -> None:
        gate(sbt_conformance_billing, request)

    @pytest.fixture
    def billing_plane(self, sbt_conformance_billing: ConformanceTarget, sbt_conformance_planes: Planes) -> Harness:
        return sbt_conformance_planes.get(sbt_conformance_billing)

    @pytest.fixture
    def hooks(self, billing_plane: Harness) -> BillingFacade:
        facade: BillingFacade | None = billing_plane.providers.billing
        assert facade is not None
        return facade

    @staticmethod
    def _pushed(target: ConformanceTarget) -> int:
        return target.pushed() if target.pushed is not None else 0

    @staticmethod
    def _usage(hooks: BillingFacade, tenants: int) -> None:
        """Customers for ``tenants`` fresh tenants and two usage records of each, each delivered twice."""
        for _ in range(tenants):
            tenant = f"t-{uuid.uuid4().hex[:8]}"
            hooks.create_customer(sbt_events.onboarding_request(tenant, email=f"{tenant}@example.com"))
            for value in (3, 4):
                event = sbt_events.ingest_usage(tenant, "conformance_calls", value)
                hooks.ingest(event)
                hooks.ingest(event)

    @staticmethod
    def _customer(result: Any) -> Customer:
        assert isinstance(result, Customer), f"billing_create_customer answered {result!r}, not a Customer"
        return result

    @promise("billing_create_customer", unless="billing.customer_not_returned")
    def test_a_redelivered_onboarding_reaches_the_same_customer(self, hooks: BillingFacade,
                                                                billing_plane: Harness) -> None:
        """An onboardingRequest delivered again (hook or bus) reaches the same customer, never a second one."""
        tenant = f"t-{uuid.uuid4().hex[:8]}"
        onboarding = sbt_events.onboarding_request(tenant, tenant_name="Conformance", email=f"{tenant}@example.com")
        first = self._customer(hooks.create_customer(onboarding))
        again = self._customer(hooks.create_customer(onboarding))
        assert (again.tenant_id, again.customer_id) == (tenant, first.customer_id), (
            f"a redelivered onboardingRequest created a second customer: {first.customer_id} then {again.customer_id}")
        billing_plane.put(onboarding)
        billing_plane.settle()
        assert billing_plane.events.states(onboarding).get("billing_create_customer") == "delivered"
        assert self._customer(hooks.create_customer(onboarding)).customer_id == first.customer_id

    @promise("billing_create_customer", unless="billing.customer_not_returned")
    def test_concurrent_deliveries_of_one_onboarding_make_one_customer(self, hooks: BillingFacade) -> None:
        """One onboardingRequest delivered from several workers at once makes one customer."""
        tenant = f"t-{uuid.uuid4().hex[:8]}"
        onboarding = sbt_events.onboarding_request(tenant, email=f"{tenant}@example.com")
        results = at_once(4, lambda: hooks.create_customer(onboarding))
        failures = [r for r in results if isinstance(r, Exception)]
        assert not failures, f"concurrent deliveries failed: {failures}"
        ids = {self._customer(r).customer_id for r in results}
        assert len(ids) == 1, f"concurrent deliveries of one onboardingRequest made {len(ids)} customers: {ids}"
        assert self._customer(hooks.create_customer(onboarding)).customer_id in ids

    @promise("billing_delete_customer")
    def test_offboarding_is_idempotent(self, hooks: BillingFacade, billing_plane: Harness) -> None:
        """offboardingRequest delivered twice, or for a tenant without a customer, succeeds."""
        tenant = f"t-{uuid.uuid4().hex[:8]}"
        hooks.create_customer(sbt_events.onboarding_request(tenant, email=f"{tenant}@example.com"))
        offboarding = sbt_events.offboarding_request(tenant)
        hooks.delete_customer(offboarding)
        hooks.delete_customer(offboarding)
        hooks.delete_customer(sbt_events.offboarding_request(f"t-never-{uuid.uuid4().hex[:8]}"))
        stranger = sbt_events.offboarding_request(f"t-never-{uuid.uuid4().hex[:8]}")
        billing_plane.put(stranger, stranger)
        billing_plane.settle()
        assert billing_plane.events.states(stranger).get("billing_delete_customer") == "delivered"

    @promise("billing_create_user", "billing_delete_user")
    def test_user_events_are_idempotent(self, hooks: BillingFacade, billing_plane: Harness) -> None:
        """tenantUserCreated and tenantUserDeleted, each delivered twice (hook and bus), succeed."""
        tenant = f"t-{uuid.uuid4().hex[:8]}"
        hooks.create_customer(sbt_events.onboarding_request(tenant, email=f"{tenant}@example.com"))
        created = sbt_events.tenant_user_created(tenant, "user-1")
        deleted = sbt_events.tenant_user_deleted(tenant, "user-1")
        for event, call in ((created, hooks.create_user), (deleted, hooks.delete_user)):
            call(event)
            call(event)
            billing_plane.put(event)
            billing_plane.settle()
            states = set(billing_plane.events.states(event).values())
            assert states <= {"delivered"}, f"{event.detail_type} redelivered: {states}"

    @promise("billing_ingest", "billing_put_usage", unless="billing.no_usage_push")
    def test_put_usage_never_pushes_the_same_usage_twice(self, hooks: BillingFacade,
                                                         sbt_conformance_billing: ConformanceTarget) -> None:
        """billing_put_usage run again, or twice at once, never pushes usage already pushed."""
        target = sbt_conformance_billing
        hooks.put_usage(_run())  # nothing left from earlier checks
        self._usage(hooks, 1)
        before = self._pushed(target)
        first = hooks.put_usage(_run())
        assert isinstance(first, PutUsageResult) and first.pushed > 0, f"nothing was pushed: {first!r}"
        again = hooks.put_usage(_run())
        assert again is None or again.pushed == 0, f"a second run pushed the same usage again: {again!r}"
        if target.pushed is not None:
            received = self._pushed(target) - before
            assert received == first.pushed, f"the backend received {received} records, the run reported {first.pushed}"
        self._usage(hooks, 1)
        before = self._pushed(target)
        runs = at_once(2, lambda: hooks.put_usage(_run()))
        failures = [r for r in runs if isinstance(r, Exception)]
        reported = sum(r.pushed for r in runs if isinstance(r, PutUsageResult))
        pushed = self._pushed(target) - before if target.pushed is not None else reported
        assert pushed == first.pushed, (f"two runs at once pushed {pushed} records for usage one run pushes as "
                                        f"{first.pushed} (runs raised: {failures})")

    @promise("billing_ingest", "billing_put_usage", unless="billing.single_process")
    def test_two_processes_on_one_store_push_each_record_once(self, hooks: BillingFacade,
                                                              sbt_conformance_billing: ConformanceTarget,
                                                              sbt_conformance_planes: Planes) -> None:
        """Two processes of one deployment (two instances built with the same settings), each receiving part
        of the usage and redeliveries of the other's, running billing_put_usage at once, push each record once."""
        target = sbt_conformance_billing
        if "billing.no_usage_push" in target.differences:
            pytest.skip(f"declared difference billing.no_usage_push: {target.differences['billing.no_usage_push']}")
        other = sbt_conformance_planes.get(target, process=2).providers.billing
        assert other is not None
        hooks.put_usage(_run())  # nothing left from earlier checks
        other.put_usage(_run())
        self._usage(hooks, 2)
        before = self._pushed(target)
        first = hooks.put_usage(_run())
        assert isinstance(first, PutUsageResult) and first.pushed > 0, f"nothing was pushed: {first!r}"
        expected = self._pushed(target) - before if target.pushed is not None else first.pushed
        for i in range(2):  # the same shape of usage, spread over the two processes
            tenant = f"t-{uuid.uuid4().hex[:8]}"
            (hooks if i % 2 else other).create_customer(sbt_events.onboarding_request(tenant,
                                                                                      email=f"{tenant}@example.com"))
            for value in (3, 4):
                event = sbt_events.ingest_usage(tenant, "conformance_calls", value)
                (hooks if value % 2 else other).ingest(event)
                (other if value % 2 else hooks).ingest(event)  # a redelivery reaches the other process
        before = self._pushed(target)
        calls = iter([hooks, other])
        runs = at_once(2, lambda: next(calls).put_usage(_run()))
        failures = [r for r in runs if isinstance(r, Exception)]
        reported = sum(r.pushed for r in runs if isinstance(r, PutUsageResult))
        after = [hooks.put_usage(_run()), other.put_usage(_run())]  # each process again, once both are done
        reported += sum(r.pushed for r in after if isinstance(r, PutUsageResult))
        left = [r.remaining for r in after if isinstance(r, PutUsageResult)]
        pushed = self._pushed(target) - before if target.pushed is not None else reported
        assert pushed == expected and not any(left), (
            f"two processes pushing at once pushed {pushed} records for usage one process pushes as {expected}, "
            f"leaving {left} waiting (runs raised: {failures}); a provider that keeps its state per process "
            "declares billing.single_process")

    @promise("billing_ingest", "billing_put_usage", unless="billing.no_usage_push")
    def test_an_interrupted_push_rerun_pushes_the_rest_once(self, hooks: BillingFacade,
                                                            sbt_conformance_billing: ConformanceTarget) -> None:
        """A billing_put_usage run interrupted by a backend outage, then run again, pushes every record once."""
        target = sbt_conformance_billing
        if target.pushed is None or target.outage is None:
            pytest.skip("the target gives no backend probes (ConformanceTarget.pushed and .outage)")
        hooks.put_usage(_run())  # nothing left from earlier checks
        self._usage(hooks, 3)
        start = target.pushed()
        clean = hooks.put_usage(_run())
        assert isinstance(clean, PutUsageResult) and clean.pushed > 1, f"a clean run pushed {clean!r}"
        expected = target.pushed() - start
        self._usage(hooks, 3)
        start = target.pushed()
        with target.outage():
            try:
                hooks.put_usage(_run())
            except SbtError:
                pass  # interrupted: what was not pushed must stay for the next run
        hooks.put_usage(_run())
        hooks.put_usage(_run())
        received = target.pushed() - start
        assert received == expected, (f"after an interrupted run and reruns the backend received {received} records "
                                      f"for usage a clean run pushes as {expected}")

    @promise("billing_webhook", unless="billing.unsigned_webhooks")
    def test_a_webhook_without_a_valid_signature_is_refused(self, billing_plane: Harness,
                                                            sbt_conformance_billing: ConformanceTarget) -> None:
        """POST /billing/{path} with a bad or missing signature answers 400 and publishes nothing."""
        client = billing_plane.client(authenticated=False)
        before = len(billing_plane.events.events)
        body = b'{"id": "evt_conformance", "type": "invoice.payment_succeeded", "data": {"object": {}}}'
        forged = {"stripe-signature": "t=1700000000,v1=" + "0" * 64, "x-signature": "0" * 64,
                  "x-hub-signature-256": "sha256=" + "0" * 64, "content-type": "application/json"}
        for headers in (forged, {"content-type": "application/json"}):
            answer = client.post(f"/billing/{sbt_conformance_billing.type_name}", content=body, headers=headers)
            assert answer.status_code == 400 and "message" in answer.json(), (
                f"an unsigned webhook answered {answer.status_code}: {answer.text}")
        billing_plane.settle()
        published = [e.detail_type for e in billing_plane.events.events[before:] if e.name in BILLING_OUTPUT]
        assert not published, f"a refused webhook published {published}"
