"""Providers that each break one promise of the contract, for the kit's own tests: the suite must fail
each of them, naming that promise. (Not a test module: the kit's tests load it by path.)"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import attrs
from sbt_memory_metering import MemoryMetering

from sbt_core import hookimpl
from sbt_core.errors import ProviderError
from sbt_core.models import (
    Aggregation,
    Customer,
    Event,
    Page,
    PutUsageResult,
    ScheduleRun,
    UsageEvent,
    UsageQuery,
    UsageRow,
)
from sbt_core.testing import RecordingBilling


class CountsRedeliveriesTwice(MemoryMetering):
    """Forgets identifiers: a redelivered event counts again."""

    @hookimpl
    def metering_ingest_usage_event(self, usage_event: UsageEvent) -> None:
        self.engine.ingest(attrs.evolve(usage_event, identifier=uuid.uuid4().hex))


class MaxIgnoresCancels(MemoryMetering):
    """Keeps MAX and MIN incrementally: a cancelled event still counts in them."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.seen: list[tuple[str, str, datetime, float]] = []

    @hookimpl
    def metering_ingest_usage_event(self, usage_event: UsageEvent) -> None:
        self.engine.ingest(usage_event)
        value = usage_event.properties.get("value")
        if isinstance(value, int | float):
            self.seen.append((usage_event.event_name, usage_event.tenant_id, usage_event.timestamp, float(value)))

    @hookimpl
    def metering_fetch_usage(self, meter_id: str, query: UsageQuery) -> Page[UsageRow]:
        page = self.engine.fetch_usage(meter_id, query)
        meter = self.engine.fetch_meter(meter_id)
        if meter.aggregation is not Aggregation.MAX:
            return page
        rows = [attrs.evolve(r, value=max(v for name, t, ts, v in self.seen if name == meter.event_name
                                          and t == r.tenant_id and r.window_start <= ts < r.window_end))
                for r in page.items]
        return Page(rows, page.next_token)


class DayWindowsInUtc(MemoryMetering):
    """Answers DAY windows in UTC whatever windowTimeZone asked."""

    @hookimpl
    def metering_fetch_usage(self, meter_id: str, query: UsageQuery) -> Page[UsageRow]:
        if query.window_size is not None and query.window_size.value == "DAY":
            query = attrs.evolve(query, window_time_zone="UTC")
        return self.engine.fetch_usage(meter_id, query)


class PagesRepeatARow(MemoryMetering):
    """Starts each next page on the last row of the previous one (an off-by-one cursor)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.last: dict[str, UsageRow] = {}

    @hookimpl
    def metering_fetch_usage(self, meter_id: str, query: UsageQuery) -> Page[UsageRow]:
        page = self.engine.fetch_usage(meter_id, query)
        rows = list(page.items)
        if query.next_token in self.last and rows:
            rows = [self.last[query.next_token], *rows[:-1]] if len(rows) >= query.limit else \
                [self.last[query.next_token], *rows][:query.limit]
        if page.next_token is not None and page.items:
            self.last[page.next_token] = page.items[-1]
        return Page(rows, page.next_token)


class Backend:
    """A billing backend for :class:`PushesAgainAfterAnOutage`: records accepted; in an outage it accepts
    one more and then fails (the kit's ``pushed`` and ``outage`` probes)."""

    accepted: list[str] = []
    outage_left: int | None = None

    @classmethod
    def send(cls, record: str) -> None:
        if cls.outage_left == 0:
            raise ProviderError("backend down")
        if cls.outage_left is not None:
            cls.outage_left -= 1
        cls.accepted.append(record)

    @classmethod
    @contextlib.contextmanager
    def outage(cls) -> Iterator[None]:
        cls.outage_left = 1
        try:
            yield
        finally:
            cls.outage_left = None


class PushesAgainAfterAnOutage(RecordingBilling):
    """Marks usage pushed only once a whole run succeeded: a run cut short sends its first records again."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.pending: dict[str, str] = {}

    @hookimpl
    def billing_ingest(self, event: Event) -> None:
        self.pending[event.id] = f"{event.detail.get('tenantId')}:{event.detail.get('properties')}"

    @hookimpl
    def billing_put_usage(self, run: ScheduleRun) -> PutUsageResult:
        for record in self.pending.values():
            Backend.send(record)
        pushed = len(self.pending)
        self.pending.clear()
        return PutUsageResult(pushed=pushed)


class NewCustomerEachDelivery(RecordingBilling):
    """Creates a customer on every delivery of onboardingRequest, redelivered or not."""

    @hookimpl
    def billing_create_customer(self, event: Event) -> Customer:
        return Customer(str(event.detail.get("tenantId")), f"cus_{uuid.uuid4().hex[:12]}")


__all__ = ["Backend", "CountsRedeliveriesTwice", "DayWindowsInUtc", "MaxIgnoresCancels", "NewCustomerEachDelivery",
           "PagesRepeatARow", "PushesAgainAfterAnOutage", "UTC"]
