"""Property-test scenarios of IMetering's usage semantics, checked against the conformance kit's oracle.

``memory``'s property tests and ``sql``'s run the same hypothesis scenarios (:func:`scenarios`) through
:func:`check_against_oracle`, which compares a provider with :class:`~.conformance.oracle.UsageOracle`
(the brute-force oracle the conformance suite uses too): every aggregation, window size, time zone
(DST, half- and quarter-hour offsets, midnight DST jumps), group-by, tenant filter, dedup (within a
batch, across batches, outside the window), cancellation (by identifiers and by range) and pagination.
Needs ``hypothesis`` (the ``test`` extra).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from ..models import Aggregation, CancelUsageRequest, MeterCreate, UsageEvent, UsageQuery, WindowSize
from .conformance.oracle import UsageOracle, window_label

__all__ = ["NOW", "NOW_MS", "check_against_oracle", "scenarios", "usage_event"]

#: The scenarios' "now": a few days after the Paris spring DST change, so the 35-day horizon spans it.
#: A provider under test must read this as its clock.
NOW = datetime(2026, 4, 2, 9, 30, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)

DAY_MS = 86_400_000
DEDUP_MS = 32 * DAY_MS
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Adelaide",
         "America/Santiago", "Pacific/Chatham"]
TENANTS = ["t-a", "t-b", "t-c"]
REGIONS = ["eu", "us", None]  # None: the dimension is missing
PLANS = ["free", "pro"]
# Instants worth landing on: DST changes in the zones above, around NOW - 30 days .. NOW.
SPECIAL = [datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2026, 3, 8, 7, tzinfo=UTC),
           datetime(2026, 4, 5, 3, tzinfo=UTC), datetime(2026, 4, 4, 16, 30, tzinfo=UTC),
           datetime(2026, 4, 1, 0, tzinfo=UTC), datetime(2026, 3, 1, 0, tzinfo=UTC)]
LO_MS = NOW_MS - 34 * DAY_MS
HI_MS = NOW_MS + 4 * 60_000


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


timestamps = st.one_of(
    st.integers(LO_MS, HI_MS),
    st.builds(lambda base, delta: min(max(_ms(base) + delta, LO_MS), HI_MS),
              st.sampled_from(SPECIAL), st.integers(-3 * 3_600_000, 3 * 3_600_000)),
    # A few fixed instants, so events tie on time (LATEST breaks ties by ingestion order).
    st.sampled_from([LO_MS + 5 * DAY_MS + 123, NOW_MS - 3_600_000, NOW_MS - DAY_MS - 1]),
    # On the 15-minute grid, exactly on window boundaries.
    st.integers(LO_MS // 900_000 + 1, HI_MS // 900_000).map(lambda q: q * 900_000),
)
int_values = st.integers(-1000, 1000)
frac_values = st.one_of(st.integers(-1000, 1000), st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
                        st.sampled_from([0.1, 0.2, 0.3, 1e-3]))
text_values = st.sampled_from(["a", "b", "c", 1, 1.0, "1", 2.5, "2.5"])


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    aggregation = draw(st.sampled_from(list(Aggregation)))
    group_by = tuple(draw(st.sampled_from([(), ("region",), ("region", "plan"), ("plan",)])))
    if aggregation is Aggregation.UNIQUE_COUNT:
        values = text_values
    else:
        values = draw(st.sampled_from([int_values, frac_values]))
    event = st.fixed_dictionaries({
        "tenant": st.sampled_from(TENANTS),
        "ts": timestamps,
        "value": values,
        "id": st.integers(0, 40).map(lambda i: f"e{i}"),
        "region": st.sampled_from(REGIONS),
        "plan": st.sampled_from(PLANS),
    })
    ops = draw(st.lists(st.one_of(
        st.tuples(st.just("one"), st.lists(event, min_size=1, max_size=6)),
        st.tuples(st.just("batch"), st.lists(event, min_size=1, max_size=12)),
        st.tuples(st.just("columns"), st.lists(event, min_size=1, max_size=12)),
        st.tuples(st.just("cancel_ids"), st.lists(st.integers(0, 40).map(lambda i: f"e{i}"), min_size=1, max_size=4)),
        st.tuples(st.just("cancel_range"), st.tuples(timestamps, st.integers(1, 10 * DAY_MS),
                                                      st.sampled_from([None, *TENANTS]))),
    ), min_size=1, max_size=8))
    queries = draw(st.lists(st.fixed_dictionaries({
        "from": timestamps,
        "span": st.one_of(st.integers(1, 36 * DAY_MS), st.integers(1, 6).map(lambda d: d * DAY_MS)),
        "size": st.sampled_from([None, WindowSize.MINUTE, WindowSize.HOUR, WindowSize.DAY, WindowSize.MONTH]),
        "zone": st.sampled_from(ZONES),
        "tenant": st.sampled_from([None, *TENANTS, "t-unknown"]),
        "group_by": st.sampled_from([(), *((g,) for g in group_by), group_by]),
        "limit": st.sampled_from([1, 7, 1000]),
    }), min_size=1, max_size=3))
    return {"aggregation": aggregation, "group_by": group_by, "ops": ops, "queries": queries,
            "grid": draw(st.booleans()), "block": draw(st.sampled_from([3, 1 << 16]))}


def _oracle(aggregation: Aggregation, group_by: tuple[str, ...]) -> UsageOracle:
    return UsageOracle(aggregation, group_by, dedup_window_ms=DEDUP_MS, now_ms=lambda: NOW_MS)


def usage_event(e: dict[str, Any]) -> UsageEvent:
    props: dict[str, Any] = {"value": e["value"], "plan": e["plan"]}
    if e["region"] is not None:
        props["region"] = e["region"]
    return UsageEvent(tenant_id=e["tenant"], event_name="calls", identifier=e["id"],
                      timestamp=datetime.fromtimestamp(e["ts"] / 1000, UTC), properties=props)


def check_against_oracle(provider: Any, case: dict[str, Any]) -> None:
    """Run ``case`` (drawn from :func:`scenarios`) on ``provider`` and on the :class:`Oracle`; fail on
    any difference (ingest outcomes, cancel counts, rows, values, row order, pages).

    ``provider``: the IMetering hooks plus ``ingest_batch`` and ``ingest_columns`` (the bulk entry
    points of ``memory`` and ``sql``), with its clock pinned at :data:`NOW` and a fresh store.
    """
    agg, group_by = case["aggregation"], case["group_by"]
    meter = provider.metering_create_meter(MeterCreate(
        name="calls", event_name="calls", aggregation=agg,
        value_property=None if agg is Aggregation.COUNT else "value", group_by=group_by))
    oracle = _oracle(agg, group_by)
    for kind, arg in case["ops"]:
        if kind == "one":
            for e in arg:
                provider.metering_ingest_usage_event(usage_event(e))
                oracle.ingest(e)
        elif kind == "batch":
            results = provider.ingest_batch([usage_event(e) for e in arg])
            expected = [oracle.ingest(e) for e in arg]
            assert [r.status for r in results] == ["accepted" if ok else "duplicate" for ok in expected]
        elif kind == "columns":
            dims = {"region": [e["region"] for e in arg], "plan": [e["plan"] for e in arg]}
            result = provider.ingest_columns(
                "calls", [e["tenant"] for e in arg], [e["ts"] for e in arg],
                None if agg is Aggregation.COUNT else [e["value"] for e in arg], [e["id"] for e in arg],
                {k: v for k, v in dims.items() if k in group_by})
            expected = [oracle.ingest(e) for e in arg]
            assert (result.accepted, result.duplicates) == (sum(expected), len(expected) - sum(expected))
        elif kind == "cancel_ids":
            got = provider.metering_cancel_usage_events(CancelUsageRequest(identifiers=tuple(arg)))
            assert got.cancelled == oracle.cancel_ids(arg)
        else:
            lo, span, tenant = arg
            got = provider.metering_cancel_usage_events(CancelUsageRequest(
                meter_id=meter.meter_id, tenant_id=tenant, from_=datetime.fromtimestamp(lo / 1000, UTC),
                to=datetime.fromtimestamp((lo + span) / 1000, UTC)))
            assert got.cancelled == oracle.cancel_range(lo, lo + span, tenant)

    for q in case["queries"]:
        lo, hi = q["from"], q["from"] + q["span"]
        zone = ZoneInfo(q["zone"])
        if q["size"] is WindowSize.MINUTE and q["span"] > 3 * DAY_MS:
            hi = lo + 3 * DAY_MS  # keep MINUTE queries small
        query = UsageQuery(from_=datetime.fromtimestamp(lo / 1000, UTC), to=datetime.fromtimestamp(hi / 1000, UTC),
                           window_size=q["size"], window_time_zone=q["zone"], tenant_id=q["tenant"],
                           group_by=q["group_by"], limit=q["limit"])
        rows, token = [], None
        for _ in range(100_000):
            page = provider.metering_fetch_usage(meter.meter_id, UsageQuery(
                from_=query.from_, to=query.to, window_size=query.window_size, window_time_zone=query.window_time_zone,
                tenant_id=query.tenant_id, group_by=query.group_by, limit=query.limit, next_token=token))
            assert len(page.items) <= query.limit
            rows += page.items
            token = page.next_token
            if token is None:
                break
        got = {}
        for r in rows:
            start_ms = _ms(r.window_start)
            key = (r.tenant_id, window_label(start_ms, q["size"], zone), tuple(r.groups[g] for g in q["group_by"]))
            assert key not in got, f"two rows for {key}"
            got[key] = r.value
            if q["size"] is not None:
                assert start_ms < hi and _ms(r.window_end) > lo
                # The window is exactly the instants of its label.
                assert window_label(_ms(r.window_end) - 1, q["size"], zone) == key[1]
                assert window_label(start_ms - 1, q["size"], zone) != key[1]
            else:
                assert (r.window_start, r.window_end) == (query.from_, query.to)
        want = oracle.query(lo, hi, q["size"], zone, q["tenant"], q["group_by"])
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert math.isclose(got[key], value, rel_tol=1e-9, abs_tol=1e-6), (key, got[key], value)
        order = [(r.tenant_id, r.window_start, tuple(r.groups[g] for g in q["group_by"])) for r in rows]
        assert order == sorted(order)
