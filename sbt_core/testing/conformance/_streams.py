"""The metering property test: random event streams and queries, the provider against the oracle.

Derandomized (the same examples on every run, so CI is reproducible) and bounded: :data:`EXAMPLES`
examples, each on fresh meters of the test's provider. Identifiers are drawn from a small pool, so
redeliveries (same identifier, maybe another value) are frequent; events lie in the last
``span_days``, inside any horizon and dedup window the suite assumes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ...models import Aggregation, CancelUsageRequest, WindowSize
from ._metering_case import MeteringCase

__all__ = ["EXAMPLES", "check_streams"]

#: Examples per run: enough to meet every aggregation, window and operation, small enough for CI.
EXAMPLES = 30
MINUTE_MS = 60_000
DAY_MS = 86_400_000
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Adelaide"]


@st.composite
def _scenario(draw: st.DrawFn, span_ms: int, cancels: bool) -> dict[str, Any]:
    aggregation = draw(st.sampled_from(list(Aggregation)))
    group_by = draw(st.sampled_from([(), ("region",), ("region", "plan")]))
    if aggregation is Aggregation.UNIQUE_COUNT:
        values: st.SearchStrategy[Any] = st.sampled_from(["a", "b", "c", 1, 1.0, "1", 2.5])
    else:
        values = st.one_of(st.integers(-1000, 1000), st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False))
    offsets = st.one_of(st.integers(1, span_ms // MINUTE_MS), st.integers(1, 48).map(lambda h: h * 60))
    event = st.fixed_dictionaries({"tenant": st.sampled_from(["t-a", "t-b", "t-c"]), "ago": offsets,
                                   "value": values, "id": st.integers(0, 25),
                                   "region": st.sampled_from(["eu", "us"]), "plan": st.sampled_from(["free", "pro"])})
    op_kinds = [st.tuples(st.just("ingest"), st.lists(event, min_size=1, max_size=10))]
    if cancels:
        op_kinds += [st.tuples(st.just("cancel_ids"), st.lists(st.integers(0, 25), min_size=1, max_size=3)),
                     st.tuples(st.just("cancel_range"), st.tuples(offsets, offsets, st.sampled_from([None, "t-a"])))]
    ops = draw(st.lists(st.one_of(*op_kinds), min_size=1, max_size=5))
    queries = draw(st.lists(st.fixed_dictionaries({
        "ago": offsets, "span": offsets,
        "size": st.sampled_from([None, WindowSize.HOUR, WindowSize.DAY, WindowSize.MONTH]),
        "zone": st.sampled_from(ZONES), "tenant": st.sampled_from([None, "t-a", "t-b"]),
        "group_by": st.sampled_from([(), *((g,) for g in group_by)]), "limit": st.sampled_from([1, 5, 1000]),
    }), min_size=1, max_size=3))
    return {"aggregation": aggregation, "group_by": group_by, "ops": ops, "queries": queries}


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def check_streams(case: MeteringCase, span_days: int) -> None:
    """Run :data:`EXAMPLES` scenarios against ``case``'s provider (events of the last ``span_days`` days),
    each compared query by query."""
    cancels = case.target.implements("metering_cancel_usage_events")

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(_scenario(span_days * DAY_MS, cancels))
    def scenario(case_data: dict[str, Any]) -> None:
        _run(case, case_data)

    scenario()


def _run(case: MeteringCase, data: dict[str, Any]) -> None:
    meter = case.meter(data["aggregation"], data["group_by"])
    oracle = case.oracles[meter.meter_id]
    prefix = uuid.uuid4().hex[:8]  # identifiers of this example only: meters share one provider
    now = case.now_ms
    for kind, arg in data["ops"]:
        if kind == "ingest":
            for e in arg:
                dims = {g: e[g] for g in data["group_by"]}
                event = case.usage_event(meter, e["tenant"], e["value"], now - e["ago"] * MINUTE_MS,
                                         f"{prefix}-{e['id']}", **dims)
                case.hooks.ingest_usage_event(event)
                oracle.ingest({"tenant": e["tenant"], "ts": now - e["ago"] * MINUTE_MS, "value": e["value"],
                               "id": event.identifier, **dims})
        elif kind == "cancel_ids":
            ids = [f"{prefix}-{i}" for i in arg]
            got = case.hooks.cancel_usage_events(CancelUsageRequest(identifiers=tuple(ids))).cancelled
            assert got == oracle.cancel_ids(ids), f"cancel by identifiers counted {got}"
        else:
            a, b, tenant = arg
            lo, hi = now - max(a, b) * MINUTE_MS, now - min(a, b) * MINUTE_MS + MINUTE_MS
            got = case.hooks.cancel_usage_events(CancelUsageRequest(
                meter_id=meter.meter_id, tenant_id=tenant, from_=_at(lo), to=_at(hi))).cancelled
            assert got == oracle.cancel_range(lo, hi, tenant), f"cancel by range counted {got}"
    for q in data["queries"]:
        lo = now - q["ago"] * MINUTE_MS - MINUTE_MS // 2
        hi = lo + q["span"] * MINUTE_MS
        case.check(meter, lo, hi, q["size"], q["zone"], q["tenant"], q["group_by"], q["limit"])
