"""Recording providers for tests: they keep what their hooks received and can be told to fail.

Register them without installing: ``sbt_control_plane(plugins={"rec-billing": RecordingBilling},
config={"providers": {"billing": {"type": "rec-billing"}}})``. Each keeps ``calls`` (hook name -> list of
arguments) and fails a hook while ``fail[hook]`` holds an exception (``provider.fail["billing_create_customer"]
= ProviderError("down")``; delete the key to fix it). ``gate[hook]`` (a ``threading.Event``) makes a hook
wait until set, to hold a delivery in flight.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

from .._markers import hookimpl
from ..errors import BadRequestError, NotFoundError
from ..models import (
    Customer,
    Event,
    Meter,
    MeterCreate,
    Page,
    PutUsageResult,
    ScheduleRun,
    UsageEvent,
    UsageQuery,
    UsageRow,
)
from ..provider import Provider, ProviderContext

__all__ = ["RecordingBilling", "RecordingMetering", "RecordingProvider"]

#: The longest a gated hook waits (a hang guard).
GATE_TIMEOUT = 10.0


class RecordingProvider(Provider):
    """Base: ``calls``, ``fail`` and ``gate`` as the module docstring says; ``started``/``stopped`` flags."""

    def __init__(self, settings: Any, context: ProviderContext) -> None:
        super().__init__(settings, context)
        self.calls: defaultdict[str, list[Any]] = defaultdict(list)
        self.fail: dict[str, BaseException] = {}
        self.gate: dict[str, threading.Event] = {}
        self.started = self.stopped = False
        self._lock = threading.Lock()

    def _record(self, hook: str, argument: Any) -> None:
        gate = self.gate.get(hook)
        if gate is not None:
            gate.wait(GATE_TIMEOUT)
        error = self.fail.get(hook)
        if error is not None:
            raise error
        with self._lock:
            self.calls[hook].append(argument)

    @hookimpl
    def sbt_startup(self) -> None:
        self.started = True

    @hookimpl
    def sbt_shutdown(self) -> None:
        self.stopped = True


class RecordingBilling(RecordingProvider):
    """IBilling that records every call; ``billing_create_customer`` publishes ``billingSuccess``
    ``{tenantId}`` through its context (as a provider answering a webhook would)."""

    @hookimpl
    def billing_create_customer(self, event: Event) -> Customer:
        self._record("billing_create_customer", event)
        tenant = str(event.detail.get("tenantId"))
        self.context.publish("billingSuccess", {"tenantId": tenant})
        return Customer(tenant, f"cus_{tenant}")

    @hookimpl
    def billing_delete_customer(self, event: Event) -> None:
        self._record("billing_delete_customer", event)

    @hookimpl
    def billing_create_user(self, event: Event) -> None:
        self._record("billing_create_user", event)

    @hookimpl
    def billing_delete_user(self, event: Event) -> None:
        self._record("billing_delete_user", event)

    @hookimpl
    def billing_ingest(self, event: Event) -> None:
        self._record("billing_ingest", event)

    @hookimpl
    def billing_put_usage(self, run: ScheduleRun) -> PutUsageResult:
        self._record("billing_put_usage", run)
        return PutUsageResult(pushed=0)


class RecordingMetering(RecordingProvider):
    """IMetering that records ingested usage events and customer events; it has no meters (fetches 404,
    lists are empty, creation is refused)."""

    @hookimpl
    def metering_create_meter(self, meter: MeterCreate) -> Meter:
        self._record("metering_create_meter", meter)
        raise BadRequestError("RecordingMetering keeps no meters")

    @hookimpl
    def metering_fetch_meter(self, meter_id: str) -> Meter:
        raise NotFoundError(f"Meter {meter_id} not found.")

    @hookimpl
    def metering_fetch_all_meters(self, limit: int, next_token: str | None) -> Page[Meter]:
        return Page([])

    @hookimpl
    def metering_ingest_usage_event(self, usage_event: UsageEvent) -> None:
        self._record("metering_ingest_usage_event", usage_event)

    @hookimpl
    def metering_fetch_usage(self, meter_id: str, query: UsageQuery) -> Page[UsageRow]:
        return Page([])

    @hookimpl
    def metering_create_customer(self, event: Event) -> None:
        self._record("metering_create_customer", event)

    @hookimpl
    def metering_delete_customer(self, event: Event) -> None:
        self._record("metering_delete_customer", event)
