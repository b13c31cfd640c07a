"""The read paths of ``sql``'s usage queries: windows of a zone whose days are not UTC days (whole- and
half-hour offsets read 30-minute cells, quarter-hour offsets events at the edges), DST days of 23 and 25 hours,
cancellations, pages whose token carries the last row's key, and the migration that rebuilds the rollups.
Each is checked against the conformance kit's brute-force oracle and against the same query read from
the events only."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sbt_sql_metering import SqlMetering, _query
from sbt_sql_metering._rollups import differences
from sbt_sql_metering._schema import DAY, HALF_HOUR, ROLLUP_FILLFACTOR, meters, rollups, schema_versions

from sbt_core.errors import BadRequestError
from sbt_core.metering import encode_usage_token
from sbt_core.models import Aggregation, MeterCreate, UsageQuery, UsageRow, WindowSize
from sbt_core.testing.metering_oracle import NOW, NOW_MS, check_against_oracle, usage_event

HOUR = 3_600_000
ZONES = ["Europe/Paris", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "UTC"]
LO_MS = NOW_MS - 33 * DAY  # before the New York (March 8) and Paris (March 29) DST changes
MIDNIGHT = -LO_MS % DAY  # from LO_MS to the next UTC midnight: UTC queries by tenant read tenant day cells


def _events(rng: random.Random, n: int, first: int, aggregation: Aggregation) -> list[dict[str, Any]]:
    texts = ["a", "b", "c", 1, 2.5]
    out = []
    for i in range(first, first + n):
        # Half the events near the DST changes and local midnights, the rest anywhere in the range.
        if i % 2:
            base = rng.choice([datetime(2026, 3, 8, 7, tzinfo=UTC), datetime(2026, 3, 29, 1, tzinfo=UTC),
                               datetime(2026, 3, 28, 23, tzinfo=UTC), datetime(2026, 3, 20, 18, 30, tzinfo=UTC)])
            ts = int(base.timestamp() * 1000) + rng.randint(-3 * HOUR, 3 * HOUR)
        else:
            ts = rng.randint(LO_MS, NOW_MS)
        value: Any = rng.choice(texts) if aggregation is Aggregation.UNIQUE_COUNT else rng.randint(-1000, 1000)
        out.append({"tenant": rng.choice(["t-a", "t-b", "t-c"]), "ts": ts, "value": value, "id": f"e{i}",
                    "region": rng.choice(["eu", "us", None]), "plan": rng.choice(["free", "pro"])})
    return out


def _case(aggregation: Aggregation, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    ops: list[tuple[str, Any]] = [
        ("columns", _events(rng, 300, 0, aggregation)),
        ("batch", _events(rng, 100, 300, aggregation)),
        # The extremes and latest values of some cells go: their cells are recomputed from the events.
        ("cancel_ids", [f"e{i}" for i in rng.sample(range(400), 40)]),
        ("cancel_range", (int(datetime(2026, 3, 29, 0, 30, tzinfo=UTC).timestamp() * 1000), 2 * HOUR, "t-a")),
        ("one", _events(rng, 5, 400, aggregation)),
    ]
    queries = [{"from": LO_MS + offset, "span": 32 * DAY, "size": size, "zone": zone, "tenant": tenant,
                "group_by": group_by, "limit": limit}
               for zone in ZONES
               for size, offset, tenant, group_by, limit in [
                   (WindowSize.DAY, 0, None, (), 7), (WindowSize.DAY, 1_234_567, "t-b", ("region",), 1000),
                   (WindowSize.HOUR, 0, None, ("region",), 1000), (WindowSize.MONTH, 0, None, (), 1000),
                   (None, 7 * HOUR + 1, None, ("region",), 2), (WindowSize.DAY, MIDNIGHT, None, (), 7),
                   (WindowSize.MONTH, MIDNIGHT, "t-b", (), 1000), (None, MIDNIGHT, None, (), 2),
                   (WindowSize.DAY, MIDNIGHT, "t-c", (), 5)]]
    return {"aggregation": aggregation, "group_by": ("region",), "ops": ops, "queries": queries}


def _all_pages(provider: SqlMetering, meter_id: str, query: UsageQuery) -> list[UsageRow]:
    rows: list[UsageRow] = []
    token = None
    while True:
        page = provider.metering_fetch_usage(meter_id, UsageQuery(
            from_=query.from_, to=query.to, window_size=query.window_size, window_time_zone=query.window_time_zone,
            tenant_id=query.tenant_id, group_by=query.group_by, limit=query.limit, next_token=token))
        rows += page.items
        token = page.next_token
        if token is None:
            return rows


@pytest.mark.parametrize("aggregation", list(Aggregation))
def test_local_windows_match_the_oracle_and_the_events_alone(new_provider: Callable[..., SqlMetering],
                                                             aggregation: Aggregation,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    provider = new_provider()
    case = _case(aggregation, seed=19)
    check_against_oracle(provider, case)
    meter = provider.metering_fetch_all_meters(10, None).items[0]
    with provider.store.read() as conn:
        seq = conn.execute(sa.select(meters.c.meter_seq).where(meters.c.meter_id == meter.meter_id)).scalar_one()
        assert differences(conn, seq) == []
    queries = [UsageQuery(from_=datetime.fromtimestamp(q["from"] / 1000, UTC),
                          to=datetime.fromtimestamp((q["from"] + q["span"]) / 1000, UTC), window_size=q["size"],
                          window_time_zone=q["zone"], tenant_id=q["tenant"], group_by=q["group_by"], limit=q["limit"])
               for q in case["queries"]]
    with_rollups = [_all_pages(provider, meter.meter_id, q) for q in queries]
    monkeypatch.setattr(_query, "_MAX_PIECES", -1)  # every window from the events
    from_events = [_all_pages(provider, meter.meter_id, q) for q in queries]
    for query, got, want in zip(queries, with_rollups, from_events, strict=True):
        assert [(r.tenant_id, r.window_start, r.window_end, r.groups) for r in got] == \
            [(r.tenant_id, r.window_start, r.window_end, r.groups) for r in want], query
        for a, b in zip(got, want, strict=True):
            assert math.isclose(a.value, b.value, rel_tol=1e-12, abs_tol=1e-9), (query, a, b)


def test_a_paris_dst_day_has_23_hours_of_cells(new_provider: Callable[..., SqlMetering]) -> None:
    provider = new_provider()
    meter_id = provider.metering_create_meter(MeterCreate(name="n", event_name="calls",
                                                          aggregation=Aggregation.COUNT)).meter_id
    paris = ZoneInfo("Europe/Paris")
    # One event every hour of March 28-30 local time: the 29th (spring forward) has 23.
    hours = range(int(datetime(2026, 3, 28, tzinfo=paris).timestamp() * 1000) // HOUR,
                  int(datetime(2026, 3, 31, tzinfo=paris).timestamp() * 1000) // HOUR)
    provider.ingest_batch([usage_event({"tenant": "t", "ts": h * HOUR + 60_000, "value": 1, "id": f"h{h}",
                                        "region": None, "plan": "free"}) for h in hours])
    rows = _all_pages(provider, meter_id, UsageQuery(
        from_=datetime(2026, 3, 28, tzinfo=paris), to=datetime(2026, 3, 31, tzinfo=paris),
        window_size=WindowSize.DAY, window_time_zone="Europe/Paris"))
    assert [(r.window_start.day, r.value) for r in rows] == [(28, 24.0), (29, 23.0), (30, 24.0)]


def test_a_write_between_pages_neither_repeats_nor_skips_a_row(new_provider: Callable[..., SqlMetering]) -> None:
    provider = new_provider()
    meter_id = provider.metering_create_meter(MeterCreate(name="n", event_name="calls", aggregation=Aggregation.SUM,
                                                          value_property="value")).meter_id
    start = NOW - timedelta(days=3)
    provider.ingest_batch([usage_event({"tenant": f"t{t}", "ts": int((start + timedelta(days=d, hours=1))
                                                                      .timestamp() * 1000),
                                        "value": 1, "id": f"{t}-{d}", "region": None, "plan": "free"})
                           for t in range(4) for d in range(3)])
    query = UsageQuery(from_=start, to=NOW, window_size=WindowSize.DAY, limit=4)
    first = provider.metering_fetch_usage(meter_id, query)
    assert [r.tenant_id for r in first.items] == ["t0", "t0", "t0", "t1"]
    # Rows appear before the page's end (t0, read already) and after it (t2): the next pages show t1's
    # other rows once and t2's new value.
    provider.ingest_batch([usage_event({"tenant": t, "ts": int((start + timedelta(hours=2)).timestamp() * 1000),
                                        "value": 5, "id": f"late-{t}", "region": None, "plan": "free"})
                           for t in ("t0", "t2", "t00")])
    rows, token = list(first.items), first.next_token
    while token is not None:
        page = provider.metering_fetch_usage(meter_id, UsageQuery(from_=start, to=NOW, window_size=WindowSize.DAY,
                                                                  limit=4, next_token=token))
        rows += page.items
        token = page.next_token
    keys = [(r.tenant_id, r.window_start) for r in rows]
    assert len(keys) == len(set(keys)) == 12
    assert [r.value for r in rows if r.tenant_id == "t2"] == [6.0, 1.0, 1.0]


def test_a_token_without_a_key_reads_as_an_offset_and_a_bad_key_is_refused(
        new_provider: Callable[..., SqlMetering]) -> None:
    provider = new_provider()
    meter_id = provider.metering_create_meter(MeterCreate(name="n", event_name="calls",
                                                          aggregation=Aggregation.COUNT)).meter_id
    provider.ingest_batch([usage_event({"tenant": f"t{t}", "ts": NOW_MS - HOUR, "value": 1, "id": f"{t}",
                                        "region": None, "plan": "free"}) for t in range(5)])
    query = UsageQuery(from_=NOW - timedelta(days=1), to=NOW, limit=2)
    everything = _all_pages(provider, meter_id, UsageQuery(from_=query.from_, to=query.to, limit=1000))
    assert [r.tenant_id for r in everything] == ["t0", "t1", "t2", "t3", "t4"]
    legacy = UsageQuery(from_=query.from_, to=query.to, limit=2, next_token=encode_usage_token(3, meter_id, query))
    page = provider.metering_fetch_usage(meter_id, legacy)
    assert [r.tenant_id for r in page.items] == ["t3", "t4"] and page.next_token is None
    for bad in (["t1"], ["t1", "0", []], [1, 0, []], ["t1", 0, ["extra"]]):
        with pytest.raises(BadRequestError, match="malformed"):
            provider.metering_fetch_usage(meter_id, UsageQuery(
                from_=query.from_, to=query.to, limit=2, next_token=encode_usage_token(2, meter_id, query, bad)))


@pytest.mark.parametrize(("version", "fillfactor", "applied"), [(1, None, [2, 3, 4, 5]), (2, 70, [3, 4, 5])])
def test_migration_3_rebuilds_the_rollups_from_the_events(
        new_provider: Callable[..., SqlMetering], version: int, fillfactor: int | None, applied: list[int]) -> None:
    provider = new_provider()
    meter_id = provider.metering_create_meter(MeterCreate(name="n", event_name="calls", aggregation=Aggregation.MAX,
                                                          value_property="value")).meter_id
    rng = random.Random(2)
    provider.ingest_batch([usage_event(e) for e in _events(rng, 50, 0, Aggregation.MAX)])
    with provider.store.write() as conn:
        # What versions 1 and 2 left: 15-minute cells, and no 30-minute cells.
        conn.execute(sa.delete(rollups).where(rollups.c.width == HALF_HOUR))
        conn.execute(sa.update(rollups).values(width=900_000))
        conn.execute(sa.delete(schema_versions).where(schema_versions.c.version > version))
        if provider.store.postgres:  # a storage parameter an earlier migration set survives the rebuild
            conn.exec_driver_sql("ALTER TABLE sbt_metering_rollups " + (
                f"SET (fillfactor = {fillfactor})" if fillfactor else "RESET (fillfactor)"))
    assert provider.store.migrate() == applied
    with provider.store.read() as conn:
        seq = conn.execute(sa.select(meters.c.meter_seq).where(meters.c.meter_id == meter_id)).scalar_one()
        assert differences(conn, seq) == []
        widths = conn.execute(sa.select(rollups.c.width).distinct()).scalars().all()
        if provider.store.postgres:
            assert conn.execute(sa.text("SELECT reloptions FROM pg_class WHERE oid = 'sbt_metering_rollups'::regclass")
                                ).scalar() == [f"fillfactor={fillfactor or ROLLUP_FILLFACTOR}"]
    assert sorted(widths) == [HALF_HOUR, DAY]
