"""IMetering's contract as tests: :class:`TestMeteringConformance`.

Each test's docstring is the promise it checks; a failure report quotes it. Expected usage comes from the
brute-force :class:`~.oracle.UsageOracle`, never from the provider. Tests drive the provider through its
hooks (the selected provider only, as the runtime calls it) and, for the default routes and events,
through the control plane: ``POST /meters``, ``GET /usage/{meterId}``, ``DELETE /usage`` and ``ingestUsage``
events on the bus.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from ...errors import BadRequestError, ConflictError, NotFoundError
from ...models import (
    Aggregation,
    CancelUsageRequest,
    MeterCreate,
    MeterStatus,
    MeterUpdate,
    UsageEvent,
    UsageQuery,
    WindowSize,
    format_timestamp,
)
from .. import events as sbt_events
from ..harness import Harness
from ._kit import ConformanceTarget, Planes, at_once, gate, promise
from ._metering_case import MeteringCase, _at, _ms

__all__ = ["MeteringCase", "TestMeteringConformance"]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
#: How far back the suite puts events: inside Stripe's 35-day horizon, which the kit assumes at least.
SPAN_DAYS = 20
AGGREGATIONS = list(Aggregation)
#: (zone, an instant just after one of its DST changes): the DST checks move the clock two days after it.
DST_CHANGES = [("Europe/Paris", datetime(2026, 3, 29, 1, tzinfo=UTC)),
               ("America/New_York", datetime(2026, 11, 1, 6, tzinfo=UTC))]


def _nan_text(value: Any) -> str:
    return "NaN" if isinstance(value, float) and math.isnan(value) else repr(value)


class TestMeteringConformance:
    """IMetering as docs/design.md sections 2 and 4 promise it. Needs the fixture ``sbt_conformance_metering``
    (a :class:`~._kit.ConformanceTarget`); ``pytest --sbt-conformance metering=<type>`` provides it."""

    sbt_interface = "metering"

    @pytest.fixture(autouse=True)
    def _gate(self, sbt_conformance_metering: ConformanceTarget, request: pytest.FixtureRequest) -> None:
        gate(sbt_conformance_metering, request)

    @pytest.fixture
    def metering_plane(self, sbt_conformance_metering: ConformanceTarget, sbt_conformance_planes: Planes) -> Harness:
        return sbt_conformance_planes.get(sbt_conformance_metering)

    @pytest.fixture
    def case(self, metering_plane: Harness, sbt_conformance_metering: ConformanceTarget) -> MeteringCase:
        return MeteringCase(metering_plane, sbt_conformance_metering)

    # -- meters --------------------------------------------------------------------------------------

    @promise("metering_create_meter", "metering_fetch_meter", "metering_fetch_all_meters")
    def test_meter_crud_answers_the_documented_shapes(self, case: MeteringCase) -> None:
        """POST /meters answers 201 {"data": Meter}; GET /meters/{id} and GET /meters answer the same meter."""
        client = case.harness.client()
        body = {"name": "API calls", "eventName": f"conf_calls_{uuid.uuid4().hex[:8]}", "aggregation": "SUM",
                "groupBy": ["region"], "description": "conformance"}
        created = client.post("/meters", json=body)
        assert created.status_code == 201, created.text
        meter = created.json()["data"]
        assert {"meterId", "name", "eventName", "aggregation", "valueProperty", "groupBy", "status", "created",
                "modified"} <= meter.keys()
        assert (meter["name"], meter["eventName"], meter["aggregation"], meter["valueProperty"], meter["groupBy"],
                meter["status"]) == ("API calls", body["eventName"], "SUM", "value", ["region"], "active")
        fetched = client.get(f"/meters/{meter['meterId']}")
        assert fetched.status_code == 200 and fetched.json()["data"] == meter
        listed: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 60}
        for _ in range(10_000):  # the control plane is shared: earlier checks made meters too
            page = client.get("/meters", params=params)
            assert page.status_code == 200, page.text
            listed += page.json()["data"]
            if not page.json().get("next_token"):
                break
            params["next_token"] = page.json()["next_token"]
        assert meter in listed, "GET /meters does not list the new meter"

    @promise("metering_create_meter", "metering_fetch_meter", "metering_fetch_usage")
    def test_meter_errors_are_404_409_400(self, case: MeteringCase) -> None:
        """An unknown meter is 404, a second meter on one eventName is 409, an undeclared groupBy is 400."""
        client = case.harness.client()
        missing = client.get(f"/meters/{uuid.uuid4().hex}")
        assert missing.status_code == 404 and "message" in missing.json(), missing.text
        name = f"conf_dup_{uuid.uuid4().hex[:8]}"
        assert client.post("/meters", json={"name": name, "eventName": name}).status_code == 201
        again = client.post("/meters", json={"name": "other", "eventName": name})
        assert again.status_code == 409 and "message" in again.json(), again.text
        for body in ({"name": "x", "eventName": f"conf_{uuid.uuid4().hex[:8]}", "aggregation": "MEDIAN"},
                     {"name": "x", "eventName": f"conf_{uuid.uuid4().hex[:8]}", "aggregation": "COUNT",
                      "valueProperty": "value"}, {"name": "x"}):
            refused = client.post("/meters", json=body)
            assert refused.status_code == 400 and "message" in refused.json(), refused.text
        meter = case.meter()
        lo, hi = format_timestamp(_at(case.now_ms - DAY_MS)), format_timestamp(_at(case.now_ms))
        usage = client.get(f"/usage/{uuid.uuid4().hex}", params={"from": lo, "to": hi})
        assert usage.status_code == 404, usage.text
        bad = client.get(f"/usage/{meter.meter_id}", params={"from": lo, "to": hi, "groupBy": "undeclared"})
        assert bad.status_code == 400 and "message" in bad.json(), bad.text
        with pytest.raises(NotFoundError):
            case.hooks.fetch_meter(uuid.uuid4().hex)
        with pytest.raises(ConflictError):
            case.hooks.create_meter(MeterCreate(name="x", event_name=meter.event_name))

    @promise("metering_fetch_all_meters")
    def test_meter_pages_list_every_meter_once(self, case: MeteringCase) -> None:
        """GET /meters pages (limit, next_token) list every meter exactly once, oldest first; a bad token is 400."""
        made = [case.meter().meter_id for _ in range(5)]
        seen: list[str] = []
        token: str | None = None
        for _ in range(100_000):
            page = case.hooks.fetch_all_meters(limit=7, next_token=token)
            assert len(page.items) <= 7, f"a page of {len(page.items)} meters exceeds limit=7"
            seen += [m.meter_id for m in page.items]
            token = page.next_token
            if token is None:
                break
        assert len(seen) == len(set(seen)), "a meter appeared on two pages"
        assert [m for m in seen if m in made] == made, "meters are missing or not oldest first"
        with pytest.raises(BadRequestError):
            case.hooks.fetch_all_meters(limit=2, next_token="not-a-token")

    @promise("metering_update_meter", "metering_ingest_usage_event")
    def test_an_inactive_meter_refuses_events_and_keeps_its_usage(self, case: MeteringCase) -> None:
        """A meter set inactive refuses new events (400) but answers its usage; reactivated, it accepts again."""
        meter = case.meter()
        case.ingest(meter, "t-1", 5, case.now_ms - HOUR_MS)
        updated = case.hooks.update_meter(meter.meter_id, MeterUpdate(status=MeterStatus.INACTIVE, name="renamed"))
        assert (updated.status, updated.name, updated.event_name) == (MeterStatus.INACTIVE, "renamed", meter.event_name)
        with pytest.raises(BadRequestError):
            case.hooks.ingest_usage_event(case.usage_event(meter, "t-1", 7, case.now_ms - HOUR_MS))
        case.check(meter, case.now_ms - DAY_MS, case.now_ms + 60_000)
        case.hooks.update_meter(meter.meter_id, MeterUpdate(status=MeterStatus.ACTIVE))
        case.ingest(meter, "t-1", 7, case.now_ms - HOUR_MS)
        case.check(meter, case.now_ms - DAY_MS, case.now_ms + 60_000)
        with pytest.raises(NotFoundError):
            case.hooks.update_meter(uuid.uuid4().hex, MeterUpdate(name="x"))

    @promise("metering_delete_meter", "metering_fetch_meter", "metering_fetch_usage")
    def test_a_deleted_meter_is_gone(self, case: MeteringCase) -> None:
        """A deleted meter answers 404 to fetch and usage, and deleting it again is 404."""
        meter = case.meter()
        case.ingest(meter, "t-1", 1, case.now_ms - HOUR_MS)
        case.hooks.delete_meter(meter.meter_id)
        client = case.harness.client()
        assert client.get(f"/meters/{meter.meter_id}").status_code == 404
        lo, hi = format_timestamp(_at(case.now_ms - DAY_MS)), format_timestamp(_at(case.now_ms))
        assert client.get(f"/usage/{meter.meter_id}", params={"from": lo, "to": hi}).status_code == 404
        assert client.delete(f"/meters/{meter.meter_id}").status_code == 404

    # -- aggregations, windows, groups ----------------------------------------------------------------

    @pytest.mark.parametrize("aggregation", AGGREGATIONS, ids=str)
    @promise("metering_ingest_usage_event", "metering_fetch_usage")
    def test_every_aggregation_is_exact(self, case: MeteringCase, aggregation: Aggregation) -> None:
        """Each aggregation (SUM, COUNT, MAX, MIN, AVG, LATEST, UNIQUE_COUNT) folds the events as documented."""
        meter = case.meter(aggregation)
        values: list[Any] = ["a", "b", "a", 1, "1", 2.5] if aggregation is Aggregation.UNIQUE_COUNT else \
            [3, -2, 10, 0.5, 7, -4.25]
        for i, value in enumerate(values):  # LATEST is the latest *event time*, not the last ingested
            case.ingest(meter, "t-1", value, case.now_ms - (i * 37 + 5) * 60_000)
        case.ingest(meter, "t-2", values[0], case.now_ms - 3 * HOUR_MS)
        rows = case.check(meter, case.now_ms - DAY_MS, case.now_ms + 60_000)
        assert len(rows) == 2

    @pytest.mark.parametrize("size", [WindowSize.MINUTE, WindowSize.HOUR, WindowSize.DAY, WindowSize.MONTH, None],
                             ids=str)
    @pytest.mark.parametrize("zone", ["UTC", "Asia/Kathmandu", "America/Santiago"])
    @promise("metering_ingest_usage_event", "metering_fetch_usage")
    def test_windows_are_calendar_windows_in_the_zone(self, case: MeteringCase, size: WindowSize | None,
                                                       zone: str) -> None:
        """Windows (MINUTE, HOUR, DAY, MONTH, none) are calendar windows in windowTimeZone; none spans [from, to)."""
        meter = case.meter(Aggregation.SUM)
        span = (3 * HOUR_MS) if size is WindowSize.MINUTE else SPAN_DAYS * DAY_MS
        for i in range(40):
            case.ingest(meter, f"t-{i % 2}", i + 1, case.now_ms - 60_000 - (i * 7919 * 60_000) % span)
        lo = case.now_ms - span - 17 * 60_000
        case.check(meter, lo, case.now_ms + 60_000, size, zone)
        case.check(meter, lo + span // 3 + 61_000, case.now_ms - 2 * 60_000 - 1, size, zone)  # off-boundary range

    @pytest.mark.parametrize(("zone", "change"), DST_CHANGES, ids=[z for z, _ in DST_CHANGES])
    @promise("metering_ingest_usage_event", "metering_fetch_usage", unless="metering.external_clock")
    def test_day_and_hour_windows_follow_a_dst_change(self, sbt_conformance_metering: ConformanceTarget,
                                                       tmp_path: Path, zone: str, change: datetime) -> None:
        """DAY and HOUR windows in a zone follow its DST change: a 23- or 25-hour day, no hour lost or merged."""
        time_machine = pytest.importorskip("time_machine")
        with time_machine.travel(change + timedelta(days=2), tick=True):
            harness = sbt_conformance_metering.start(tmp_path / "dst")
            try:
                case = MeteringCase(harness, sbt_conformance_metering)
                meter = case.meter(Aggregation.SUM)
                base = _ms(change) - 2 * DAY_MS
                for i in range(4 * 24 * 2):  # every 30 minutes, two days either side of the change
                    case.ingest(meter, "t-1", 1, base + i * HOUR_MS // 2 + 60_000)
                lo, hi = base, base + 4 * DAY_MS
                rows = case.check(meter, lo, hi, WindowSize.DAY, zone)
                lengths = sorted({_ms(r.window_end) - _ms(r.window_start) for r in rows})
                assert (23 * HOUR_MS in lengths) or (25 * HOUR_MS in lengths), (
                    f"no 23- or 25-hour DAY window in {zone} across its DST change: {lengths}")
                case.check(meter, lo, hi, WindowSize.HOUR, zone)
                case.check(meter, lo, hi, WindowSize.DAY, "UTC")
            finally:
                harness.close()

    @promise("metering_ingest_usage_event", "metering_fetch_usage")
    def test_group_by_and_tenant_filter(self, case: MeteringCase) -> None:
        """groupBy splits rows by the declared dimensions (groups holds their values); tenantId keeps one tenant."""
        meter = case.meter(Aggregation.SUM, group_by=("region", "plan"))
        for i in range(30):
            case.ingest(meter, f"t-{i % 3}", i, case.now_ms - (i + 1) * 41 * 60_000,
                        region=["eu", "us"][i % 2], plan=["free", "pro", "team"][i % 3 - 1])
        lo, hi = case.now_ms - 2 * DAY_MS, case.now_ms + 60_000
        for group_by in [(), ("region",), ("plan",), ("region", "plan")]:
            rows = case.check(meter, lo, hi, None, "UTC", None, group_by)
            assert all(set(r.groups) >= set(group_by) for r in rows), "groups lacks a groupBy dimension"
        rows = case.check(meter, lo, hi, WindowSize.HOUR, "UTC", "t-1", ("region",))
        assert rows and {r.tenant_id for r in rows} == {"t-1"}, "tenantId did not filter to one tenant"
        assert not case.rows(meter, lo, hi, tenant="t-nobody"), "an unknown tenantId has rows"

    @pytest.mark.parametrize("limit", [1, 7])
    @promise("metering_ingest_usage_event", "metering_fetch_usage")
    def test_pages_lose_and_repeat_no_row(self, case: MeteringCase, limit: int) -> None:
        """Paging usage with limit and next_token returns every row exactly once, in order, also over HTTP."""
        meter = case.meter(Aggregation.MAX, group_by=("region",))
        for i in range(60):
            case.ingest(meter, f"t-{i % 3}", i % 17, case.now_ms - (i * 53 + 1) * 60_000, region=["eu", "us"][i % 2])
        lo, hi = case.now_ms - 2 * DAY_MS, case.now_ms + 60_000
        case.check(meter, lo, hi, WindowSize.HOUR, "UTC", None, ("region",), limit)
        client = case.harness.client()
        params: dict[str, Any] = {"from": format_timestamp(_at(lo)), "to": format_timestamp(_at(hi)),
                                  "windowSize": "HOUR", "groupBy": "region", "limit": limit}
        rows: list[dict[str, Any]] = []
        for _ in range(1000):
            answer = client.get(f"/usage/{meter.meter_id}", params=params)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert len(body["data"]) <= limit
            rows += body["data"]
            if not body.get("next_token"):
                break
            params["next_token"] = body["next_token"]
        keys = [(r["tenantId"], r["windowStart"], r["groups"].get("region")) for r in rows]
        assert len(keys) == len(set(keys)), "GET /usage pages repeat a row"
        assert len(keys) == len(case.rows(meter, lo, hi, WindowSize.HOUR, "UTC", None, ("region",), 1000)), (
            "GET /usage pages lost rows")
        with pytest.raises(BadRequestError):
            case.hooks.fetch_usage(meter.meter_id, UsageQuery(from_=_at(lo), to=_at(hi), next_token="garbage"))

    # -- exactly once --------------------------------------------------------------------------------

    @promise("metering_ingest_usage_event", "metering_fetch_usage")
    def test_a_redelivered_identifier_counts_once(self, case: MeteringCase) -> None:
        """A usage event delivered again with the same identifier is counted once (hook, bus, concurrent)."""
        meter = case.meter(Aggregation.SUM)
        ts = case.now_ms - HOUR_MS
        ident = case.ingest(meter, "t-1", 5, ts)
        case.hooks.ingest_usage_event(case.usage_event(meter, "t-1", 5, ts, ident))  # redelivery
        once = case.usage_event(meter, "t-1", 3, ts)
        results = at_once(4, lambda: case.hooks.ingest_usage_event(once))
        assert not [r for r in results if isinstance(r, Exception)], f"concurrent deliveries failed: {results}"
        case.oracles[meter.meter_id].ingest({"tenant": "t-1", "ts": ts, "value": 3, "id": once.identifier})
        case.check(meter, ts - HOUR_MS, case.now_ms + 60_000)

    @promise("metering_ingest_usage_event", "metering_fetch_usage")
    def test_a_redelivered_ingest_usage_event_counts_once_through_the_bus(self, case: MeteringCase) -> None:
        """ingestUsage events put twice (same envelope id, or same identifier) are delivered and counted once."""
        meter = case.meter(Aggregation.SUM)
        when = _at(case.now_ms - HOUR_MS)
        first = sbt_events.ingest_usage("t-1", meter.event_name, 4, timestamp=when)
        identifier = f"usage-{uuid.uuid4().hex}"
        same_id = sbt_events.ingest_usage("t-1", meter.event_name, 6, identifier=identifier, timestamp=when)
        again = sbt_events.ingest_usage("t-1", meter.event_name, 6, identifier=identifier, timestamp=when)
        case.harness.put(first, same_id)
        case.harness.settle()
        case.harness.put(first, again)
        case.harness.settle()
        for event in (first, same_id, again):
            assert set(case.harness.events.states(event).values()) <= {"delivered"}, case.harness.events.states(event)
        rows = case.rows(meter, _ms(when) - HOUR_MS, case.now_ms + 60_000)
        assert [r.value for r in rows] == [10], f"redelivered usage counted twice: {[r.value for r in rows]}"

    @pytest.mark.parametrize("aggregation", AGGREGATIONS, ids=str)
    @promise("metering_cancel_usage_events", "metering_fetch_usage")
    def test_cancel_by_identifiers_is_exact(self, case: MeteringCase, aggregation: Aggregation) -> None:
        """Cancelling events by identifier removes exactly them from usage (MIN/MAX too), once; returns how many."""
        meter = case.meter(aggregation)
        values: list[Any] = ["x", "y", "z", "x", "w", "y"] if aggregation is Aggregation.UNIQUE_COUNT else \
            [9, 1, 5, 12, -3, 4]
        ids = [case.ingest(meter, "t-1", v, case.now_ms - (i + 1) * 20 * 60_000) for i, v in enumerate(values)]
        chosen = [ids[3], ids[4], ids[0]]  # the max, the min and the latest of the numeric values
        result = case.hooks.cancel_usage_events(CancelUsageRequest(identifiers=tuple(chosen)))
        assert result.cancelled == case.oracles[meter.meter_id].cancel_ids(chosen) == 3
        assert case.hooks.cancel_usage_events(CancelUsageRequest(identifiers=tuple(chosen))).cancelled == 0, (
            "cancelling twice counted the events again")
        case.check(meter, case.now_ms - DAY_MS, case.now_ms + 60_000)
        case.check(meter, case.now_ms - DAY_MS, case.now_ms + 60_000, WindowSize.HOUR)

    @pytest.mark.parametrize("aggregation", AGGREGATIONS, ids=str)
    @promise("metering_cancel_usage_events", "metering_fetch_usage")
    def test_cancel_by_meter_tenant_and_range_is_exact(self, case: MeteringCase, aggregation: Aggregation) -> None:
        """Cancelling by meter + tenant + [from, to) removes exactly that tenant's events in range (MIN/MAX too)."""
        meter = case.meter(aggregation)
        other = case.meter(aggregation)
        for i in range(24):
            value: Any = f"v{i % 5}" if aggregation is Aggregation.UNIQUE_COUNT else [3, 40, -7, 11, 2, 25][i % 6]
            ts = case.now_ms - (i + 1) * HOUR_MS + 60_000
            for tenant in ("t-1", "t-2"):
                case.ingest(meter, tenant, value, ts)
                case.ingest(other, tenant, value, ts)
        lo, hi = case.now_ms - 10 * HOUR_MS, case.now_ms - 3 * HOUR_MS
        result = case.hooks.cancel_usage_events(CancelUsageRequest(meter_id=meter.meter_id, tenant_id="t-1",
                                                                   from_=_at(lo), to=_at(hi)))
        assert result.cancelled == case.oracles[meter.meter_id].cancel_range(lo, hi, "t-1") > 0
        span = (case.now_ms - 2 * DAY_MS, case.now_ms + 60_000)
        case.check(meter, *span)
        case.check(meter, *span, WindowSize.HOUR)
        case.check(other, *span)  # another meter's events are untouched
        with pytest.raises(NotFoundError):
            case.hooks.cancel_usage_events(CancelUsageRequest(meter_id=uuid.uuid4().hex, from_=_at(lo), to=_at(hi)))

    @promise("metering_cancel_usage_events", "metering_fetch_usage")
    def test_cancel_over_http_answers_the_count(self, case: MeteringCase) -> None:
        """DELETE /usage answers {"data": {"cancelled": N}}, by identifiers and by meter + range."""
        meter = case.meter(Aggregation.MAX)
        ids = [case.ingest(meter, "t-1", v, case.now_ms - (i + 1) * HOUR_MS) for i, v in enumerate([4, 9, 2])]
        client = case.harness.client()
        answer = client.request("DELETE", "/usage", json={"identifiers": [ids[1]]})
        assert answer.status_code == 200 and answer.json()["data"]["cancelled"] == 1, answer.text
        case.oracles[meter.meter_id].cancel_ids([ids[1]])
        body = {"meterId": meter.meter_id, "tenantId": "t-1", "from": format_timestamp(_at(case.now_ms - DAY_MS)),
                "to": format_timestamp(_at(case.now_ms - int(2.5 * HOUR_MS)))}
        answer = client.request("DELETE", "/usage", json=body)
        assert answer.status_code == 200 and answer.json()["data"]["cancelled"] == 1, answer.text
        case.oracles[meter.meter_id].cancel_range(case.now_ms - DAY_MS, case.now_ms - int(2.5 * HOUR_MS), "t-1")
        case.check(meter, case.now_ms - DAY_MS, case.now_ms + 60_000)

    @promise("metering_ingest_usage_events", "metering_fetch_usage")
    def test_the_batch_form_keeps_the_single_hooks_promises(self, case: MeteringCase) -> None:
        """metering_ingest_usage_events answers one outcome per event (None, or why it was refused) and counts
        exactly what the single hook would: duplicates once, refused events nowhere; the bus uses it too."""
        meter = case.meter(Aggregation.SUM)
        ts = case.now_ms - HOUR_MS
        good = [case.usage_event(meter, f"t-{i % 2}", i + 1, ts - i * 60_000) for i in range(5)]
        nan = case.usage_event(meter, "t-0", float("nan"), ts)
        batch = [good[0], good[1], good[0], nan, good[2], good[3], good[4], good[1]]
        outcomes = case.hooks.ingest_usage_events(batch)
        assert len(outcomes) == len(batch), f"{len(outcomes)} outcomes for {len(batch)} events"
        assert isinstance(outcomes[3], str) and outcomes[3], f"a NaN value was not refused: {outcomes}"
        assert [o for i, o in enumerate(outcomes) if i != 3] == [None] * 7, f"outcomes: {outcomes}"
        for e in good:
            case.oracles[meter.meter_id].ingest({"tenant": e.tenant_id, "ts": _ms(e.timestamp),
                                                 "value": e.properties["value"], "id": e.identifier})
        case.check(meter, ts - DAY_MS, case.now_ms + 60_000)
        burst = [sbt_events.ingest_usage("t-burst", meter.event_name, 2, timestamp=_at(ts)) for _ in range(30)]
        case.harness.put(*burst, *burst[:5])
        case.harness.settle()
        rows = case.rows(meter, ts - DAY_MS, case.now_ms + 60_000, tenant="t-burst")
        assert [r.value for r in rows] == [60], f"a burst of 30 events of 2 (5 redelivered) sums to {rows}"

    # -- refusals ------------------------------------------------------------------------------------

    @promise("metering_ingest_usage_event", "metering_fetch_usage")
    def test_unknown_event_names_are_refused_or_ignored(self, case: MeteringCase) -> None:
        """An event naming no meter is refused (400, dead-lettered without retry) or ignored; it counts nowhere."""
        meter = case.meter(Aggregation.COUNT)
        unknown = UsageEvent(tenant_id="t-1", event_name=f"no_such_meter_{uuid.uuid4().hex[:8]}",
                             identifier=uuid.uuid4().hex, timestamp=_at(case.now_ms - HOUR_MS), properties={"value": 1})
        try:
            case.hooks.ingest_usage_event(unknown)
        except BadRequestError:
            pass
        event = sbt_events.ingest_usage("t-1", unknown.event_name, 1, timestamp=_at(case.now_ms - HOUR_MS))
        case.harness.put(event)
        case.harness.settle()
        deliveries = case.harness.events.deliveries(event)
        for delivery in deliveries.values():
            assert delivery.state in ("delivered", "dead_lettered"), delivery
            assert delivery.state == "delivered" or delivery.attempts == 1, "a refused unknown event was retried"
        assert case.rows(meter, case.now_ms - DAY_MS, case.now_ms + 60_000) == []

    @pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), "ten", None, True, [1]],
                             ids=_nan_text)
    @promise("metering_ingest_usage_event", "metering_fetch_usage")
    def test_bad_values_are_refused(self, case: MeteringCase, value: Any) -> None:
        """A value that is missing, not numeric, NaN or infinite is refused with 400 and counts nowhere."""
        meter = case.meter(Aggregation.SUM)
        case.ingest(meter, "t-1", 2, case.now_ms - HOUR_MS)
        props = {} if value is None else {"value": value}
        bad = UsageEvent(tenant_id="t-1", event_name=meter.event_name, identifier=uuid.uuid4().hex,
                         timestamp=_at(case.now_ms - HOUR_MS), properties=props)
        with pytest.raises(BadRequestError):
            case.hooks.ingest_usage_event(bad)
        case.check(meter, case.now_ms - DAY_MS, case.now_ms + 60_000)

    @promise("metering_ingest_usage_event", "metering_fetch_usage", unless="metering.no_horizon")
    def test_events_outside_the_horizon_are_refused(self, case: MeteringCase) -> None:
        """An event years old or a day ahead is refused with 400; one of a minute ago is accepted."""
        meter = case.meter(Aggregation.SUM)
        for ts in (case.now_ms - 3 * 365 * DAY_MS, case.now_ms + DAY_MS):
            with pytest.raises(BadRequestError):
                case.hooks.ingest_usage_event(case.usage_event(meter, "t-1", 1, ts))
        case.ingest(meter, "t-1", 1, case.now_ms - 60_000)
        case.check(meter, case.now_ms - 4 * 365 * DAY_MS, case.now_ms + 2 * DAY_MS)

    @promise("metering_ingest_usage_event", "metering_fetch_usage")
    def test_a_sum_beyond_float_range_is_refused_or_exact(self, case: MeteringCase) -> None:
        """A SUM that would overflow to infinity is refused at ingest or answered exactly, never non-finite."""
        meter = case.meter(Aggregation.SUM)
        accepted: list[float] = []
        for i in range(3):
            try:
                # Each finite and answerable alone; any two together overflow a float.
                case.hooks.ingest_usage_event(case.usage_event(meter, "t-1", 0.9e308, case.now_ms - (i + 1) * 60_000))
                accepted.append(0.9e308)
            except BadRequestError:
                pass
        rows = case.rows(meter, case.now_ms - DAY_MS, case.now_ms + 60_000)
        values = [r.value for r in rows]
        assert all(math.isfinite(v) for v in values), f"SUM answered a non-finite value {values}"
        exact = sum(Fraction(v) for v in accepted)
        if not accepted:
            assert sum(values) == 0, f"every event was refused, yet SUM answered {values}"
            return
        assert len(values) == 1 and abs(Fraction(values[0]) - exact) <= exact * Fraction(1, 10**12), (
            f"SUM of the accepted events is {float(exact)!r} exactly; answered {values}")

    @promise("metering_create_customer", "metering_delete_customer")
    def test_customer_events_are_idempotent(self, case: MeteringCase) -> None:
        """onboardingRequest and offboardingRequest, each delivered twice, succeed; usage stays queryable."""
        meter = case.meter(Aggregation.SUM)
        onboarding = sbt_events.onboarding_request("t-9")
        case.harness.put(onboarding, onboarding)
        case.harness.settle()
        case.hooks.create_customer(onboarding)
        case.ingest(meter, "t-9", 3, case.now_ms - HOUR_MS)
        offboarding = sbt_events.offboarding_request("t-9")
        case.harness.put(offboarding)
        case.harness.settle()
        case.hooks.delete_customer(offboarding)
        for event in (onboarding, offboarding):
            assert set(case.harness.events.states(event).values()) == {"delivered"}, case.harness.events.states(event)
        case.check(meter, case.now_ms - DAY_MS, case.now_ms + 60_000)

    # -- the property --------------------------------------------------------------------------------

    @promise("metering_ingest_usage_event", "metering_fetch_usage")
    def test_random_streams_match_the_oracle(self, case: MeteringCase) -> None:
        """Over random event streams (redeliveries, cancels) and queries, usage equals a brute-force oracle.

        Hypothesis, derandomized and bounded (:data:`._streams.EXAMPLES` examples); cancels are drawn only
        when the provider implements ``metering_cancel_usage_events``."""
        from ._streams import check_streams

        check_streams(case, SPAN_DAYS)
