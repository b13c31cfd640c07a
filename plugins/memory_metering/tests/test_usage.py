"""Queries and cancellation: windows in time zones, groups, order, pagination, errors, exact cancels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sbt_memory_metering import MemoryMetering

from sbt_core.errors import BadRequestError, NotFoundError
from sbt_core.models import Aggregation, CancelUsageRequest, MeterCreate, UsageEvent, UsageQuery, WindowSize

NOW = datetime(2026, 4, 2, 9, 30, tzinfo=UTC)  # the clock of conftest.py


def ingest(provider: MemoryMetering, ident: str, at: datetime, value: Any = 1, tenant: str = "t1",
           name: str = "calls", **props: Any) -> None:
    provider.metering_ingest_usage_event(UsageEvent(tenant_id=tenant, event_name=name, identifier=ident, timestamp=at,
                                                    properties={"value": value, **props}))


def rows(provider: MemoryMetering, meter_id: str, **query: Any) -> list[tuple[Any, ...]]:
    query.setdefault("from_", NOW - timedelta(days=30))
    query.setdefault("to", NOW + timedelta(minutes=5))
    page = provider.metering_fetch_usage(meter_id, UsageQuery(**query))
    return [(r.tenant_id, r.window_start, r.window_end, r.value, r.groups) for r in page.items]


def hours(start: datetime, end: datetime) -> float:
    # Aware datetimes sharing a tzinfo subtract as wall clocks in Python: compare instants in UTC.
    return (end.astimezone(UTC) - start.astimezone(UTC)) / timedelta(hours=1)


def meter(provider: MemoryMetering, aggregation: Aggregation = Aggregation.SUM, **kw: Any) -> str:
    value_property = None if aggregation is Aggregation.COUNT else "value"
    return provider.metering_create_meter(MeterCreate(name="calls", event_name=kw.pop("event_name", "calls"),
                                                      aggregation=aggregation, value_property=value_property,
                                                      **kw)).meter_id


def test_day_windows_follow_dst_in_paris(provider: MemoryMetering) -> None:
    m = meter(provider)
    paris = "Europe/Paris"
    # 2026-03-29 is 23 hours long in Paris; 00:30 local on the 29th is 23:30 UTC on the 28th.
    ingest(provider, "a", datetime(2026, 3, 28, 23, 30, tzinfo=UTC), 1)
    ingest(provider, "b", datetime(2026, 3, 29, 21, 59, tzinfo=UTC), 2)  # 23:59 CEST, same local day
    ingest(provider, "c", datetime(2026, 3, 29, 22, 0, tzinfo=UTC), 4)  # midnight CEST: next day
    got = rows(provider, m, from_=datetime(2026, 3, 28, tzinfo=UTC), to=datetime(2026, 3, 31, tzinfo=UTC),
               window_size=WindowSize.DAY, window_time_zone=paris)
    assert [(r[1].isoformat(), hours(r[1], r[2]), r[3]) for r in got] == [
        ("2026-03-29T00:00:00+01:00", 23.0, 3.0), ("2026-03-30T00:00:00+02:00", 24.0, 4.0)]


def test_autumn_day_is_25_hours_and_its_hour_repeats(provider: MemoryMetering, new_provider: Any) -> None:
    # The autumn change (2026-10-25) is after the tests' clock: use a clock a day later.
    later = new_provider()
    later.engine.clock = lambda: int(datetime(2026, 10, 26, tzinfo=UTC).timestamp() * 1000)
    m = meter(later)
    ingest(later, "a", datetime(2026, 10, 25, 0, 30, tzinfo=UTC), 1)  # 02:30 CEST
    ingest(later, "b", datetime(2026, 10, 25, 1, 30, tzinfo=UTC), 2)  # 02:30 CET
    day = rows(later, m, from_=datetime(2026, 10, 24, 22, tzinfo=UTC), to=datetime(2026, 10, 25, 23, tzinfo=UTC),
               window_size=WindowSize.DAY, window_time_zone="Europe/Paris")
    assert [(hours(r[1], r[2]), r[3]) for r in day] == [(25.0, 3.0)]
    by_hour = rows(later, m, from_=datetime(2026, 10, 25, 0, tzinfo=UTC), to=datetime(2026, 10, 25, 2, tzinfo=UTC),
                 window_size=WindowSize.HOUR, window_time_zone="Europe/Paris")
    assert [(r[1].isoformat(), r[3]) for r in by_hour] == [("2026-10-25T02:00:00+02:00", 1.0),
                                                         ("2026-10-25T02:00:00+01:00", 2.0)]


def test_half_hour_dst_zone_hours(new_provider: Any) -> None:
    # Lord Howe moves its clocks by 30 minutes: 02:00 -> 02:30 on 2026-10-04.
    p = new_provider()
    p.engine.clock = lambda: int(datetime(2026, 10, 5, tzinfo=UTC).timestamp() * 1000)
    m = meter(p)
    ingest(p, "a", datetime(2026, 10, 3, 15, 10, tzinfo=UTC), 1)  # 01:40 +10:30
    ingest(p, "b", datetime(2026, 10, 3, 15, 40, tzinfo=UTC), 2)  # 02:40 +11:00
    ingest(p, "c", datetime(2026, 10, 3, 16, 5, tzinfo=UTC), 4)  # 03:05 +11:00
    got = rows(p, m, from_=datetime(2026, 10, 3, 14, tzinfo=UTC), to=datetime(2026, 10, 3, 17, tzinfo=UTC),
               window_size=WindowSize.HOUR, window_time_zone="Australia/Lord_Howe")
    # Hour windows start where the local clock reads hh:00; the skipped half hour joins the 01:00 window.
    assert [(r[1].isoformat(), r[2].isoformat(), r[3]) for r in got] == [
        ("2026-10-04T01:00:00+10:30", "2026-10-04T03:00:00+11:00", 3.0),
        ("2026-10-04T03:00:00+11:00", "2026-10-04T04:00:00+11:00", 4.0)]


def test_day_starts_at_the_jump_when_midnight_does_not_exist(new_provider: Any) -> None:
    # Santiago jumps from 00:00 to 01:00 on 2026-09-06.
    p = new_provider()
    p.engine.clock = lambda: int(datetime(2026, 9, 8, tzinfo=UTC).timestamp() * 1000)
    m = meter(p)
    ingest(p, "a", datetime(2026, 9, 6, 4, 30, tzinfo=UTC), 1)  # 01:30 -03
    got = rows(p, m, from_=datetime(2026, 9, 5, tzinfo=UTC), to=datetime(2026, 9, 8, tzinfo=UTC),
               window_size=WindowSize.DAY, window_time_zone="America/Santiago")
    assert [(r[1].isoformat(), hours(r[1], r[2])) for r in got] == [("2026-09-06T01:00:00-03:00", 23.0)]


def test_month_windows_and_quarter_hour_offsets(provider: MemoryMetering) -> None:
    m = meter(provider)
    ingest(provider, "a", datetime(2026, 3, 31, 18, 14, tzinfo=UTC), 1)  # 00:00 Apr 1 in Kathmandu (+5:45) is 18:15
    ingest(provider, "b", datetime(2026, 3, 31, 18, 15, tzinfo=UTC), 2)
    got = rows(provider, m, window_size=WindowSize.MONTH, window_time_zone="Asia/Kathmandu")
    assert [(r[1].isoformat(), r[3]) for r in got] == [("2026-03-01T00:00:00+05:45", 1.0),
                                                       ("2026-04-01T00:00:00+05:45", 2.0)]


def test_minute_windows_and_range_bounds(provider: MemoryMetering) -> None:
    m = meter(provider)
    base = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
    for i, sec in enumerate([0, 59, 60, 61, 125]):
        ingest(provider, f"e{i}", base + timedelta(seconds=sec), 1)
    got = rows(provider, m, from_=base + timedelta(seconds=59), to=base + timedelta(seconds=125),
               window_size=WindowSize.MINUTE)
    # [from, to): 59, 60 and 61 count; 0 is before from and 125 is at to.
    assert [(r[1] - base, r[3]) for r in got] == [(timedelta(0), 1.0), (timedelta(minutes=1), 2.0)]


def test_no_window_size_gives_one_row_per_group(provider: MemoryMetering) -> None:
    m = meter(provider, group_by=("region",))
    ingest(provider, "a", NOW - timedelta(days=3), 1, region="eu")
    ingest(provider, "b", NOW - timedelta(days=2), 2, region="us")
    ingest(provider, "c", NOW - timedelta(days=1), 4)  # no region: groups as ""
    ingest(provider, "d", NOW - timedelta(days=1), 8, tenant="t0", region="eu")
    frm, to = NOW - timedelta(days=10), NOW
    got = rows(provider, m, from_=frm, to=to, group_by=("region",))
    assert got == [("t0", frm, to, 8.0, {"region": "eu"}), ("t1", frm, to, 4.0, {"region": ""}),
                   ("t1", frm, to, 1.0, {"region": "eu"}), ("t1", frm, to, 2.0, {"region": "us"})]
    assert rows(provider, m, from_=frm, to=to, tenant_id="t1") == [("t1", frm, to, 7.0, {})]
    assert rows(provider, m, from_=frm, to=to, tenant_id="nobody") == []


def test_query_errors(provider: MemoryMetering) -> None:
    m = meter(provider, group_by=("region",))
    with pytest.raises(NotFoundError):
        rows(provider, "missing")
    with pytest.raises(BadRequestError, match="groupBy plan is not a dimension.*declared: region"):
        rows(provider, m, group_by=("plan",))
    with pytest.raises(BadRequestError, match="more than"):
        rows(provider, m, from_=NOW - timedelta(days=3000), window_size=WindowSize.MINUTE)


def test_pagination_and_tokens(provider: MemoryMetering) -> None:
    m = meter(provider)
    for i in range(5):
        ingest(provider, f"e{i}", NOW - timedelta(days=i, hours=1), i + 1, tenant=f"t{i % 2}")
    query = {"from_": NOW - timedelta(days=10), "to": NOW, "window_size": WindowSize.DAY}
    everything = rows(provider, m, **query)
    assert [r[0] for r in everything] == ["t0", "t0", "t0", "t1", "t1"]
    assert [r[1] for r in everything[:3]] == sorted(r[1] for r in everything[:3])
    paged, token = [], None
    while True:
        page = provider.metering_fetch_usage(m, UsageQuery(**query, limit=2, next_token=token))
        paged += [(r.tenant_id, r.window_start, r.window_end, r.value, r.groups) for r in page.items]
        token = page.next_token
        if token is None:
            break
    assert paged == everything
    first = provider.metering_fetch_usage(m, UsageQuery(**query, limit=2))
    assert first.next_token is not None
    with pytest.raises(BadRequestError, match="another query"):
        provider.metering_fetch_usage(m, UsageQuery(**{**query, "window_size": WindowSize.HOUR},
                                                    next_token=first.next_token))
    with pytest.raises(BadRequestError, match="malformed"):
        provider.metering_fetch_usage(m, UsageQuery(**query, next_token="%%%"))


@pytest.mark.parametrize(("aggregation", "before", "after"), [
    (Aggregation.SUM, 1 + 9 + 4, 1 + 4), (Aggregation.COUNT, 3, 2), (Aggregation.AVG, 14 / 3, 2.5),
    (Aggregation.MAX, 9, 4), (Aggregation.MIN, 1, 1), (Aggregation.LATEST, 9, 4), (Aggregation.UNIQUE_COUNT, 3, 2),
])
@pytest.mark.parametrize("grid", [True, False])
def test_cancel_is_exact_for_every_aggregation(new_provider: Any, aggregation: Aggregation, before: float,
                                               after: float, grid: bool) -> None:
    p = new_provider(rollup_cells_per_event=1.0 if grid else 0.0)
    m = meter(p, aggregation)
    ingest(p, "a", NOW - timedelta(hours=3), 1)
    ingest(p, "b", NOW - timedelta(hours=1), 9)  # the largest, and the latest
    ingest(p, "c", NOW - timedelta(hours=2), 4)
    assert rows(p, m)[0][3] == pytest.approx(before)
    assert p.metering_cancel_usage_events(CancelUsageRequest(identifiers=("b", "zzz"))).cancelled == 1
    assert p.metering_cancel_usage_events(CancelUsageRequest(identifiers=("b",))).cancelled == 0  # once
    assert rows(p, m)[0][3] == pytest.approx(after)
    ingest(p, "b", NOW - timedelta(minutes=30), 100)  # a cancelled identifier is still remembered
    assert rows(p, m)[0][3] == pytest.approx(after)


def test_cancel_by_range_and_tenant(provider: MemoryMetering) -> None:
    m = meter(provider)
    for i in range(6):
        ingest(provider, f"e{i}", NOW - timedelta(hours=i + 1), 1, tenant=f"t{i % 2}")
    request = CancelUsageRequest(meter_id=m, tenant_id="t0", from_=NOW - timedelta(hours=4), to=NOW)
    assert provider.metering_cancel_usage_events(request).cancelled == 2  # e0 (1h ago) and e2 (3h ago)
    assert provider.metering_cancel_usage_events(request).cancelled == 0
    assert [(r[0], r[3]) for r in rows(provider, m)] == [("t0", 1.0), ("t1", 3.0)]
    assert provider.metering_cancel_usage_events(CancelUsageRequest(
        meter_id=m, from_=NOW - timedelta(days=1), to=NOW)).cancelled == 4
    assert rows(provider, m) == []
    with pytest.raises(NotFoundError):
        provider.metering_cancel_usage_events(CancelUsageRequest(meter_id="missing", from_=NOW - timedelta(1), to=NOW))


def test_latest_is_by_event_time_and_ties_go_to_the_later_ingested(provider: MemoryMetering) -> None:
    m = meter(provider, Aggregation.LATEST)
    at = NOW - timedelta(hours=2)
    ingest(provider, "a", at, 5)
    ingest(provider, "b", at, 6)  # same time, ingested later: wins
    ingest(provider, "c", at - timedelta(hours=1), 7)  # late arrival but earlier event time: loses
    assert [r[3] for r in rows(provider, m)] == [6.0]


def test_late_events_update_the_grid(provider: MemoryMetering) -> None:
    m = meter(provider)
    ingest(provider, "a", NOW - timedelta(hours=1), 1)
    query = {"from_": NOW - timedelta(days=30), "to": NOW, "window_size": WindowSize.DAY}
    assert [r[3] for r in rows(provider, m, **query)] == [1.0]
    ingest(provider, "late", NOW - timedelta(days=20), 2)
    ingest(provider, "later", NOW - timedelta(hours=2), 4)
    assert [r[3] for r in rows(provider, m, **query)] == [2.0, 5.0]


def test_deleting_a_meter_drops_its_usage(provider: MemoryMetering) -> None:
    m = meter(provider)
    ingest(provider, "a", NOW - timedelta(hours=1), 1)
    provider.metering_delete_meter(m)
    with pytest.raises(NotFoundError):
        rows(provider, m)
    m2 = meter(provider)
    ingest(provider, "a", NOW - timedelta(hours=1), 3)  # a new meter: new dedup memory
    assert [r[3] for r in rows(provider, m2)] == [3.0]
