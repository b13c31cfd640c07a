"""The metering suite's per-test handle (:class:`MeteringCase`) and its row check against the oracle,
shared by the suite (:mod:`.metering`) and its property test (:mod:`._streams`)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from ...models import Aggregation, Meter, MeterCreate, UsageEvent, UsageQuery, UsageRow, WindowSize
from ..harness import Harness
from ._kit import ConformanceTarget
from .oracle import UsageOracle, window_label

__all__ = ["MeteringCase", "assert_rows_match"]


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class MeteringCase:
    """One test's metering provider in a started control plane, and the suite's ways to use it.

    ``now_ms`` is the test's "now" (whole minutes); :meth:`ingest` feeds the hook and the oracle of the
    meter alike, and :meth:`check` compares a query's every page with the oracle.
    """

    def __init__(self, harness: Harness, target: ConformanceTarget) -> None:
        self.harness, self.target = harness, target
        facade = harness.providers.metering
        assert facade is not None
        self.hooks = facade
        self.now_ms = _ms(datetime.now(UTC)) // 60_000 * 60_000
        self.oracles: dict[str, UsageOracle] = {}

    def meter(self, aggregation: Aggregation = Aggregation.SUM, group_by: Sequence[str] = (),
              event_name: str | None = None) -> Meter:
        """A new meter with a fresh event name, and its oracle."""
        name = event_name or f"conf_{aggregation.lower()}_{uuid.uuid4().hex[:10]}"
        meter: Meter = self.hooks.create_meter(MeterCreate(
            name=name, event_name=name, aggregation=aggregation, group_by=tuple(group_by),
            value_property=None if aggregation is Aggregation.COUNT else "value"))
        self.oracles[meter.meter_id] = UsageOracle(aggregation, tuple(group_by))
        return meter

    @staticmethod
    def usage_event(meter: Meter, tenant: str, value: Any, ts_ms: int, identifier: str | None = None,
                    **dimensions: Any) -> UsageEvent:
        props = dict(dimensions)
        if meter.aggregation is not Aggregation.COUNT:
            props["value"] = value
        return UsageEvent(tenant_id=tenant, event_name=meter.event_name, identifier=identifier or uuid.uuid4().hex,
                          timestamp=_at(ts_ms), properties=props)

    def ingest(self, meter: Meter, tenant: str, value: Any, ts_ms: int, identifier: str | None = None,
               **dimensions: Any) -> str:
        """Ingest one event through ``metering_ingest_usage_event``; returns its identifier."""
        event = self.usage_event(meter, tenant, value, ts_ms, identifier, **dimensions)
        self.hooks.ingest_usage_event(event)
        self.oracles[meter.meter_id].ingest({"tenant": tenant, "ts": ts_ms, "value": value, "id": event.identifier,
                                             **dimensions})
        return event.identifier

    def rows(self, meter: Meter, lo: int, hi: int, size: WindowSize | None = None, zone: str = "UTC",
             tenant: str | None = None, group_by: Sequence[str] = (), limit: int = 100) -> list[UsageRow]:
        """Every row of a query, page after page (each page no longer than ``limit``)."""
        rows: list[UsageRow] = []
        token: str | None = None
        for _ in range(10_000):
            page = self.hooks.fetch_usage(meter.meter_id, UsageQuery(
                from_=_at(lo), to=_at(hi), window_size=size, window_time_zone=zone, tenant_id=tenant,
                group_by=tuple(group_by), limit=limit, next_token=token))
            assert len(page.items) <= limit, f"a page of {len(page.items)} rows exceeds limit={limit}"
            rows += page.items
            token = page.next_token
            if token is None:
                return rows
        raise AssertionError("pagination never ended: next_token was still given after 10,000 pages")

    def check(self, meter: Meter, lo: int, hi: int, size: WindowSize | None = None, zone: str = "UTC",
              tenant: str | None = None, group_by: Sequence[str] = (), limit: int = 100) -> list[UsageRow]:
        """Query (every page) and compare with the oracle: the same cells, values, windows and order."""
        rows = self.rows(meter, lo, hi, size, zone, tenant, group_by, limit)
        assert_rows_match(rows, self.oracles[meter.meter_id], lo, hi, size, zone, tenant, group_by)
        return rows


def assert_rows_match(rows: Sequence[UsageRow], oracle: UsageOracle, lo: int, hi: int, size: WindowSize | None,
                      zone: str, tenant: str | None, group_by: Sequence[str]) -> None:
    """Rows of one query (all pages) against the oracle; the message says which promise broke."""
    tz = ZoneInfo(zone)
    got: dict[tuple[Any, ...], float] = {}
    for r in rows:
        start, end = _ms(r.window_start), _ms(r.window_end)
        label = window_label(start, size, tz)
        key = (r.tenant_id, label, tuple(r.groups.get(g, "") for g in group_by))
        assert key not in got, f"a row was repeated (pagination or grouping): {key} appears twice"
        got[key] = r.value
        if size is None:
            assert (start, end) == (lo, hi), (
                f"without windowSize a row spans [from, to): got {r.window_start}..{r.window_end}")
        else:
            assert window_label(end - 1, size, tz) == label and window_label(start - 1, size, tz) != label, (
                f"{size} window {r.window_start}..{r.window_end} is not a calendar {size.lower()} in {zone}")
    expected = oracle.query(lo, hi, size, tz, tenant, tuple(group_by))
    missing, extra = expected.keys() - got.keys(), got.keys() - expected.keys()
    assert not missing and not extra, (
        f"rows differ from the events ingested (windowSize={size}, zone={zone}, tenantId={tenant}, "
        f"groupBy={list(group_by)}): missing {sorted(missing, key=str)}, unexpected {sorted(extra, key=str)}")
    for key, value in expected.items():
        assert math.isclose(got[key], value, rel_tol=1e-9, abs_tol=1e-9), (
            f"{oracle.aggregation} of {key} is {got[key]}, the events ingested give {value}")
    order = [(r.tenant_id, r.window_start, tuple(r.groups.get(g, "") for g in group_by)) for r in rows]
    assert order == sorted(order), "rows are not ordered by tenant, window start, then groups"
