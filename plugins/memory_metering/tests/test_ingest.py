"""Ingest rules: values, horizon, dedup, policies, inactive meters, batch and columnar entry points."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sbt_memory_metering import MemoryMetering

from sbt_core.errors import BadRequestError
from sbt_core.models import (
    Aggregation,
    CancelUsageRequest,
    Event,
    MeterCreate,
    MeterStatus,
    MeterUpdate,
    UsageEvent,
    UsageQuery,
)

NOW = datetime(2026, 4, 2, 9, 30, tzinfo=UTC)  # the clock of conftest.py


def event(ident: str, value: Any = 1, *, tenant: str = "t1", name: str = "calls", at: datetime | None = None,
          **props: Any) -> UsageEvent:
    properties = {"value": value, **props} if value is not ... else dict(props)
    return UsageEvent(tenant_id=tenant, event_name=name, identifier=ident, timestamp=at or NOW - timedelta(hours=1),
                      properties=properties)


def total(provider: MemoryMetering, meter_id: str, tenant: str | None = None) -> dict[str, float]:
    page = provider.metering_fetch_usage(meter_id, UsageQuery(from_=NOW - timedelta(days=40),
                                                              to=NOW + timedelta(days=1), tenant_id=tenant))
    return {row.tenant_id: row.value for row in page.items}


@pytest.fixture
def meter_id(provider: MemoryMetering) -> str:
    return provider.metering_create_meter(MeterCreate(name="calls", event_name="calls")).meter_id


def test_numbers_and_numeric_strings(provider: MemoryMetering, meter_id: str) -> None:
    for i, value in enumerate([1, 2.5, "3", " 4.5 ", "1e1", -2]):
        provider.metering_ingest_usage_event(event(f"e{i}", value))
    assert total(provider, meter_id) == {"t1": 1 + 2.5 + 3 + 4.5 + 10 - 2}


@pytest.mark.parametrize(("value", "reason"), [
    (float("nan"), "finite"), (float("inf"), "finite"), ("-Infinity", "finite"), ("NaN", "finite"),
    (True, "number"), (None, "missing"), (..., "missing"), ("ten", "numeric"), ("1_000", "numeric"), ({}, "number"),
])
def test_bad_values_are_refused_naming_the_event(provider: MemoryMetering, meter_id: str, value: Any,
                                                 reason: str) -> None:
    with pytest.raises(BadRequestError, match=f"'bad-1'.*value .*{reason}"):
        provider.metering_ingest_usage_event(event("bad-1", value))
    assert total(provider, meter_id) == {}


def test_count_meter_needs_no_value(provider: MemoryMetering) -> None:
    meter = provider.metering_create_meter(MeterCreate(name="n", event_name="logins", aggregation=Aggregation.COUNT))
    provider.metering_ingest_usage_event(event("a", ..., name="logins"))
    provider.metering_ingest_usage_event(event("b", "anything", name="logins"))
    assert total(provider, meter.meter_id) == {"t1": 2.0}


def test_unique_count_compares_values_as_text(provider: MemoryMetering) -> None:
    meter = provider.metering_create_meter(MeterCreate(name="u", event_name="users",
                                                       aggregation=Aggregation.UNIQUE_COUNT, value_property="user"))
    for i, user in enumerate(["alice", "bob", "alice", 7, 7.0, "7", 7.5]):
        provider.metering_ingest_usage_event(event(f"u{i}", ..., name="users", user=user))
    assert total(provider, meter.meter_id) == {"t1": 4.0}  # alice, bob, 7, 7.5
    with pytest.raises(BadRequestError, match="user"):
        provider.metering_ingest_usage_event(event("u-bad", ..., name="users", user=True))


@pytest.mark.parametrize(("offset", "ok"), [
    (timedelta(days=-35), True), (timedelta(days=-35, milliseconds=-1), False),
    (timedelta(minutes=5), True), (timedelta(minutes=5, milliseconds=1), False),
])
def test_default_horizon_is_stripes(provider: MemoryMetering, meter_id: str, offset: timedelta, ok: bool) -> None:
    ev = event("h", 1, at=NOW + offset)
    if ok:
        provider.metering_ingest_usage_event(ev)
        assert total(provider, meter_id) == {"t1": 1.0}
    else:
        with pytest.raises(BadRequestError, match="'h'.*horizon"):
            provider.metering_ingest_usage_event(ev)


def test_horizon_is_configurable(new_provider: Callable[..., MemoryMetering]) -> None:
    provider = new_provider(horizon_past_days=1, horizon_future_seconds=0)
    provider.metering_create_meter(MeterCreate(name="calls", event_name="calls"))
    with pytest.raises(BadRequestError, match="horizon"):
        provider.metering_ingest_usage_event(event("old", at=NOW - timedelta(days=2)))
    with pytest.raises(BadRequestError, match="horizon"):
        provider.metering_ingest_usage_event(event("ahead", at=NOW + timedelta(seconds=1)))
    provider.metering_ingest_usage_event(event("now", at=NOW))


def test_dedup_by_identifier(provider: MemoryMetering, meter_id: str) -> None:
    provider.metering_ingest_usage_event(event("same", 5))
    provider.metering_ingest_usage_event(event("same", 7))  # a retry with another value: still the first
    provider.ingest_batch([event("same", 9)])
    assert provider.ingest_columns("calls", ["t1"], [int(NOW.timestamp() * 1000)], [11], ["same"]).duplicates == 1
    assert total(provider, meter_id) == {"t1": 5.0}


def test_dedup_window(new_provider: Callable[..., MemoryMetering]) -> None:
    provider = new_provider(dedup_window_days=2)
    meter = provider.metering_create_meter(MeterCreate(name="calls", event_name="calls"))
    provider.metering_ingest_usage_event(event("old", 1, at=NOW - timedelta(days=3)))
    provider.metering_ingest_usage_event(event("old", 2, at=NOW - timedelta(days=1)))  # first one is outside the window
    provider.metering_ingest_usage_event(event("old", 4, at=NOW - timedelta(hours=1)))  # second one is inside
    assert total(provider, meter.meter_id) == {"t1": 3.0}


def test_inactive_meter_refuses_events_like_stripe(provider: MemoryMetering, meter_id: str) -> None:
    provider.metering_update_meter(meter_id, MeterUpdate(status=MeterStatus.INACTIVE))
    with pytest.raises(BadRequestError, match="inactive"):
        provider.metering_ingest_usage_event(event("a"))
    assert provider.ingest_batch([event("b")])[0].status == "rejected"
    with pytest.raises(BadRequestError, match="inactive"):
        provider.ingest_columns("calls", ["t1"], [int(NOW.timestamp() * 1000)], [1], ["c"])
    provider.metering_update_meter(meter_id, MeterUpdate(status=MeterStatus.ACTIVE))
    provider.metering_ingest_usage_event(event("a"))
    assert total(provider, meter_id) == {"t1": 1.0}


def test_unknown_event_rejected_by_default(provider: MemoryMetering) -> None:
    with pytest.raises(BadRequestError, match="no meter counts eventName 'ghost'"):
        provider.metering_ingest_usage_event(event("a", name="ghost"))


def test_unknown_event_dropped_by_policy(new_provider: Callable[..., MemoryMetering]) -> None:
    provider = new_provider(unknown_event="drop")
    provider.metering_ingest_usage_event(event("a", name="ghost"))
    assert [r.status for r in provider.ingest_batch([event("b", name="ghost")])] == ["dropped"]
    assert provider.stats()["dropped"] == 2


def _lifecycle(detail_type: str, tenant: str) -> Event:
    return Event.create(detail_type, {"tenantId": tenant})


def test_unknown_tenant_policy_reject(new_provider: Callable[..., MemoryMetering]) -> None:
    provider = new_provider(unknown_tenant="reject")
    meter = provider.metering_create_meter(MeterCreate(name="calls", event_name="calls"))
    with pytest.raises(BadRequestError, match="'t1' is not a metering customer"):
        provider.metering_ingest_usage_event(event("a"))
    provider.metering_create_customer(_lifecycle("onboardingRequest", "t1"))
    provider.metering_create_customer(_lifecycle("onboardingRequest", "t1"))  # idempotent
    provider.metering_ingest_usage_event(event("a", 3))
    provider.metering_delete_customer(_lifecycle("offboardingRequest", "t1"))
    with pytest.raises(BadRequestError, match="offboarded"):
        provider.metering_ingest_usage_event(event("b"))
    with pytest.raises(BadRequestError, match="not active metering customers"):
        provider.ingest_columns("calls", ["t1"], [int(NOW.timestamp() * 1000)], [1], ["c"])
    # Offboarded: usage stays queryable for billing.
    assert total(provider, meter.meter_id) == {"t1": 3.0}


def test_unknown_tenant_accepted_by_default(provider: MemoryMetering, meter_id: str) -> None:
    provider.metering_ingest_usage_event(event("a", tenant="never-onboarded"))
    assert total(provider, meter_id) == {"never-onboarded": 1.0}


def test_customer_events_need_a_tenant(provider: MemoryMetering) -> None:
    with pytest.raises(BadRequestError, match="tenantId"):
        provider.metering_create_customer(Event.create("onboardingRequest", {"name": "x"}))


def test_purge_erases_usage_and_dedup_memory(provider: MemoryMetering, meter_id: str) -> None:
    provider.metering_create_customer(_lifecycle("onboardingRequest", "t1"))
    provider.metering_ingest_usage_event(event("a", 3))
    provider.metering_ingest_usage_event(event("b", 4, tenant="t2"))
    provider.metering_delete_customer(_lifecycle("offboardingRequest", "t1"))
    assert total(provider, meter_id) == {"t1": 3.0, "t2": 4.0}
    assert provider.purge_tenant("t1") == 1
    assert total(provider, meter_id) == {"t2": 4.0}
    provider.metering_ingest_usage_event(event("a", 5))  # its identifier is forgotten too
    assert total(provider, meter_id) == {"t1": 5.0, "t2": 4.0}
    assert provider.metering_cancel_usage_events(CancelUsageRequest(identifiers=("b",))).cancelled == 1
    assert total(provider, meter_id) == {"t1": 5.0}


def test_batch_reports_each_event(provider: MemoryMetering, meter_id: str) -> None:
    results = provider.ingest_batch([
        event("a", 1),
        {"tenantId": "t2", "meterApiName": "calls", "meterValue": 2, "uniqueId": "flat-1",
         "meterTimeInMillis": int(NOW.timestamp() * 1000) - 1000},  # Amberflo's flat form
        event("a", 5),
        event("bad", "x"),
        {"tenantId": "t2"},
    ])
    assert [(r.index, r.status) for r in results] == [(0, "accepted"), (1, "accepted"), (2, "duplicate"),
                                                       (3, "rejected"), (4, "rejected")]
    assert "numeric" in (results[3].error or "") and "eventName is required" in (results[4].error or "")
    assert total(provider, meter_id) == {"t1": 1.0, "t2": 2.0}


def test_columns_are_all_or_nothing(provider: MemoryMetering, meter_id: str) -> None:
    ms = int(NOW.timestamp() * 1000)
    with pytest.raises(BadRequestError, match=r"row 1 \(b\).*finite"):
        provider.ingest_columns("calls", ["t1", "t1"], [ms, ms], [1.0, float("nan")], ["a", "b"])
    with pytest.raises(BadRequestError, match="row 0 .*horizon"):
        provider.ingest_columns("calls", ["t1"], [ms - 40 * 86_400_000], [1.0], ["a"])
    with pytest.raises(BadRequestError, match="do not have 2 rows"):
        provider.ingest_columns("calls", ["t1"], [ms, ms], [1.0, 2.0], ["a", "b"])
    with pytest.raises(BadRequestError, match="row 0 .*number"):
        provider.ingest_columns("calls", ["t1"], [ms], [True], ["a"])
    with pytest.raises(BadRequestError, match="row 0 .*numeric"):
        provider.ingest_columns("calls", ["t1"], [ms], ["1_000"], ["a"])
    with pytest.raises(BadRequestError, match="row 1: identifier is empty"):
        provider.ingest_columns("calls", ["t1", "t1"], [ms, ms], [1, 2], ["a", ""])
    with pytest.raises(BadRequestError, match="tenant ids must be non-empty"):
        provider.ingest_columns("calls", [""], [ms], [1], ["a"])
    assert total(provider, meter_id) == {}
    assert provider.ingest_columns("calls", ["t1", "t2"], [ms, ms], ["1.5", 2], ["a", "b"]).accepted == 2
    assert provider.ingest_columns("calls", np.array(["t1"]), [NOW - timedelta(minutes=1)], np.array([4]),
                                   np.array(["c"])).accepted == 1
    assert total(provider, meter_id) == {"t1": 5.5, "t2": 2.0}


def test_pending_events_are_visible_to_every_read(new_provider: Callable[..., MemoryMetering]) -> None:
    provider = new_provider(pending_flush_events=1000)
    meter = provider.metering_create_meter(MeterCreate(name="calls", event_name="calls"))
    provider.metering_ingest_usage_event(event("a", 2))
    assert provider.stats()["pending"] == 1
    assert total(provider, meter.meter_id) == {"t1": 2.0}
    provider.metering_ingest_usage_event(event("b", 2))
    assert provider.metering_cancel_usage_events(CancelUsageRequest(identifiers=("b",))).cancelled == 1


def test_bulk_redelivery_and_repeats(new_provider: Callable[..., MemoryMetering]) -> None:
    provider = new_provider(dedup_window_days=10)
    meter = provider.metering_create_meter(MeterCreate(name="calls", event_name="calls"))
    ms = int(NOW.timestamp() * 1000)
    n = 5000
    ids = [f"id-{i}" for i in range(n)]
    times = [ms - i * 60_000 for i in range(n)]
    assert provider.ingest_columns("calls", ["t1"] * n, times, [1] * n, ids).accepted == n
    # A redelivered load: every event is a duplicate.
    assert provider.ingest_columns("calls", ["t1"] * n, times, [5] * n, ids).duplicates == n
    # Repeats inside one load: the first occurrence (lowest row) wins...
    fresh = [f"new-{i % 100}" for i in range(1000)]
    assert provider.ingest_columns("calls", ["t2"] * 1000, [ms - i for i in range(1000)],
                                   list(range(1000)), fresh).accepted == 100
    # ...unless it is older than the window: then the next occurrence is stored too.
    old = 11 * 86_400_000
    result = provider.ingest_columns("calls", ["t3"] * 3, [ms - old, ms - 1000, ms - 2000], [1, 2, 4],
                                     ["late", "late", "late"])
    assert (result.accepted, result.duplicates) == (2, 1)
    assert total(provider, meter.meter_id) == {"t1": float(n), "t2": float(sum(range(100))), "t3": 3.0}


def test_a_value_that_would_take_a_sum_out_of_the_float_range_is_refused_at_ingest(
        provider: MemoryMetering, meter_id: str) -> None:
    # Each 1e308 is finite; two of them sum to infinity, which no answer can carry.
    provider.metering_ingest_usage_event(event("big-1", 1e308))
    with pytest.raises(BadRequestError, match="'big-2'.*beyond"):
        provider.metering_ingest_usage_event(event("big-2", 1e308))
    with pytest.raises(BadRequestError, match="'big-3'.*beyond"):
        provider.metering_ingest_usage_event(event("big-3", -1e308, tenant="t2"))  # magnitudes, any tenant
    [result] = provider.ingest_batch([event("big-4", 1e308)])
    assert result.status == "rejected" and "beyond" in (result.error or "")
    with pytest.raises(BadRequestError, match="beyond"):
        provider.ingest_columns("calls", ["t1"], [int(NOW.timestamp() * 1000) - 1000], [1e308], ["big-5"])
    assert total(provider, meter_id) == {"t1": 1e308}
    provider.metering_ingest_usage_event(event("small", 1.0))  # room is left for ordinary values


def test_the_magnitude_bound_survives_a_restart(new_provider: Callable[..., MemoryMetering]) -> None:
    first = new_provider()
    first.sbt_startup()
    meter_id = first.metering_create_meter(MeterCreate(name="calls", event_name="calls")).meter_id
    first.metering_ingest_usage_event(event("big-1", 1e308))
    first.sbt_shutdown()
    second = new_provider()
    second.sbt_startup()
    with pytest.raises(BadRequestError, match="beyond"):
        second.metering_ingest_usage_event(event("big-2", 1e308))
    assert total(second, meter_id) == {"t1": 1e308}
