"""What ``sql`` adds to ``memory``'s semantics: one truth across processes (dedup by the database's
unique key, cancellations seen by the others), exact rollups after cancellations, the versioned schema,
and the ``sbt metering`` commands."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa
from sbt_sql_metering import SqlMetering, SqlMeteringSettings
from sbt_sql_metering._copy import copy_columns
from sbt_sql_metering._rollups import STAGE, differences
from sbt_sql_metering._schema import (
    HALF_HOUR,
    MIGRATIONS,
    SCHEMA_VERSION,
    dedup,
    meters,
    rollups,
    schema_versions,
    tenant_days,
)
from typer.testing import CliRunner

from sbt_core import ProviderContext
from sbt_core.cli import CliState, build_app
from sbt_core.errors import BadRequestError, ConfigError
from sbt_core.models import (
    Aggregation,
    CancelUsageRequest,
    MeterCreate,
    MeterStatus,
    MeterUpdate,
    Secret,
    UsageEvent,
    UsageQuery,
    WindowSize,
)
from sbt_core.testing import sbt_event
from sbt_core.testing.metering_oracle import NOW


def event(i: int | str, value: Any = 1, tenant: str = "t1", at: datetime | None = None, name: str = "calls",
          **props: Any) -> UsageEvent:
    return UsageEvent(tenant_id=tenant, event_name=name, identifier=str(i), timestamp=at or NOW - timedelta(hours=1),
                      properties={"v": value, **props})


def usage(provider: SqlMetering, meter_id: str, **query: Any) -> dict[tuple[str, str], float]:
    q = UsageQuery(from_=NOW - timedelta(days=3), to=NOW + timedelta(minutes=1), window_size=WindowSize.DAY, **query)
    return {(r.tenant_id, r.window_start.date().isoformat()): r.value
            for r in provider.metering_fetch_usage(meter_id, q).items}


def create(provider: SqlMetering, aggregation: Aggregation = Aggregation.SUM, **extra: Any) -> str:
    return provider.metering_create_meter(MeterCreate(
        name="calls", event_name="calls", aggregation=aggregation,
        value_property=None if aggregation is Aggregation.COUNT else "v", **extra)).meter_id


def test_min_max_latest_after_cancelling_the_extreme_are_recomputed_exactly(
        new_provider: Callable[..., SqlMetering]) -> None:
    provider = new_provider()
    ids = {agg: provider.metering_create_meter(MeterCreate(name=agg, event_name=agg, aggregation=agg,
                                                           value_property="v")).meter_id
           for agg in (Aggregation.MIN, Aggregation.MAX, Aggregation.LATEST)}
    for agg in ids:
        provider.ingest_batch([event(f"{agg}-{i}", v, name=agg, at=NOW - timedelta(minutes=10 * (3 - i)))
                               for i, v in enumerate([5, -3, 9])])
    provider.metering_cancel_usage_events(CancelUsageRequest(identifiers=("MIN-1", "MAX-2", "LATEST-2")))
    day = (NOW - timedelta(minutes=10)).date().isoformat()
    assert usage(provider, ids[Aggregation.MIN]) == {("t1", day): 5.0}
    assert usage(provider, ids[Aggregation.MAX]) == {("t1", day): 5.0}
    assert usage(provider, ids[Aggregation.LATEST]) == {("t1", day): -3.0}
    with provider.store.read() as conn:
        assert all(differences(conn, seq) == [] for seq in conn.execute(sa.select(meters.c.meter_seq)).scalars())


def test_rules_match_memory(new_provider: Callable[..., SqlMetering]) -> None:
    provider = new_provider(unknown_tenant="reject")
    meter_id = create(provider)
    with pytest.raises(BadRequestError, match="not a metering customer"):
        provider.metering_ingest_usage_event(event(1))
    provider.metering_create_customer(__import__("sbt_core.testing", fromlist=["sbt_event"]).sbt_event(
        "onboardingRequest", {"tenantId": "t1"}))
    assert provider.metering_ingest_usage_events([event(1), event(2, float("nan")), event(3, "12.5"),
                                                  event(4, at=NOW - timedelta(days=40)),
                                                  event(5, name="other")]) == [
        None, "usage event '2': v must be finite, got nan", None,
        f"usage event '4': timestamp {(NOW - timedelta(days=40)).isoformat()} is outside the accepted horizon "
        "(35 days back, 300 seconds ahead of now)", "usage event '5': no meter counts eventName 'other'"]
    provider.metering_update_meter(meter_id, MeterUpdate(status=MeterStatus.INACTIVE))
    with pytest.raises(BadRequestError, match="inactive"):
        provider.metering_ingest_usage_event(event(6))
    assert usage(provider, meter_id) == {("t1", (NOW - timedelta(hours=1)).date().isoformat()): 13.5}
    assert [r.status for r in new_provider(unknown_event="drop").ingest_batch([event(7, name="other")])] == ["dropped"]


@pytest.fixture
def two_processes(sbt_postgres_url: str, tmp_path: Path) -> tuple[SqlMetering, SqlMetering]:
    """Two providers with their own connection pools on one PostgreSQL database, as two processes."""
    made = []
    for i in range(2):
        p = SqlMetering(SqlMeteringSettings(database_url=Secret(sbt_postgres_url)),
                        ProviderContext("sql", "metering", tmp_path / str(i)))
        p.clock = lambda: int(NOW.timestamp() * 1000)
        p.sbt_startup()
        made.append(p)
    with made[0].store.write() as conn:
        for table in ("rollups", "dedup", "events", "series", "customers", "meters"):
            conn.execute(sa.text(f"DELETE FROM sbt_metering_{table}"))
    return made[0], made[1]


def test_the_same_identifiers_put_to_two_processes_at_once_count_once(
        two_processes: tuple[SqlMetering, SqlMetering]) -> None:
    a, b = two_processes
    meter_id = create(a, Aggregation.COUNT)
    start = threading.Barrier(2)
    outcomes: dict[int, list[str]] = {}

    def put(k: int, provider: SqlMetering) -> None:
        start.wait()
        for chunk in range(0, 400, 50):
            # Each process sends the same identifiers, in a different order.
            batch = [event(i) for i in range(chunk, chunk + 50)][:: 1 if k == 0 else -1]
            outcomes.setdefault(k, []).extend(r.status for r in provider.ingest_batch(batch))

    threads = [threading.Thread(target=put, args=(k, p)) for k, p in enumerate((a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(s == "accepted" for s in outcomes[0] + outcomes[1]) == 400
    day = (NOW - timedelta(hours=1)).date().isoformat()
    assert usage(a, meter_id) == usage(b, meter_id) == {("t1", day): 400.0}
    # A cancellation in one process is seen by the other's next query, and so is an event (the answer
    # each process keeps for the pages of a query is dropped once anything is committed).
    assert a.metering_cancel_usage_events(CancelUsageRequest(identifiers=("1", "2"))).cancelled == 2
    assert usage(b, meter_id) == {("t1", day): 398.0}
    assert [r.status for r in a.ingest_batch([event("new")])] == ["accepted"]
    assert usage(b, meter_id) == usage(a, meter_id) == {("t1", day): 399.0}


def test_purge_erases_one_tenant_in_every_meter_and_leaves_the_others(
        new_provider: Callable[..., SqlMetering]) -> None:
    provider = new_provider(unknown_tenant="reject")
    for tenant in ("t1", "t2"):
        provider.metering_create_customer(sbt_event("onboardingRequest", {"tenantId": tenant}))
    meter_id = create(provider)
    other_id = provider.metering_create_meter(MeterCreate(name="logins", event_name="logins",
                                                          aggregation=Aggregation.COUNT)).meter_id
    old = NOW - timedelta(days=34)  # outside the dedup window, inside the horizon
    assert [r.status for r in provider.ingest_batch([
        event("a", 3), event("b", 4, at=NOW - timedelta(days=1)), event("x", 1),
        event("x", 7, tenant="t2"),  # a duplicate of t1's "x"
        event("y", 5, tenant="t2", at=old), event("y", 6),  # t1 may reuse it: t2's is beyond the window
        event("c", 2, tenant="t2"), event("l1", name="logins"), event("l2", tenant="t2", name="logins"),
    ])] == ["accepted"] * 3 + ["duplicate"] + ["accepted"] * 5
    assert provider.metering_cancel_usage_events(CancelUsageRequest(identifiers=("b",))).cancelled == 1

    def t2_rollups() -> list[Any]:
        with provider.store.read() as conn:
            return conn.execute(sa.text(
                "SELECT r.* FROM sbt_metering_rollups r JOIN sbt_metering_series s USING (series_id) "
                "WHERE s.tenant_id = 't2' ORDER BY r.meter_seq, r.width, r.bucket, r.series_id")).all()

    kept = t2_rollups()
    t2 = {k: v for k, v in usage(provider, meter_id).items() if k[0] == "t2"}
    assert provider.purge_tenant("t1") == 5  # a, b (cancelled), x, y and l1
    assert provider.purge_tenant("t1") == provider.purge_tenant("nobody") == 0
    assert usage(provider, meter_id) == t2 == {("t2", (NOW - timedelta(hours=1)).date().isoformat()): 2.0}
    assert {k[0] for k in usage(provider, other_id)} == {"t2"}
    assert t2_rollups() == kept
    with provider.store.read() as conn:
        assert all(differences(conn, seq) == [] for seq in conn.execute(sa.select(meters.c.meter_seq)).scalars())
        dedup = {r[0]: tuple(r[1:])
                 for r in conn.execute(sa.text("SELECT identifier, first_ts, ts FROM sbt_metering_dedup"))}
        assert provider.store.customers(conn, ["t1", "t2"]) == {"t2": True}
    # t1's identifiers are forgotten ("x" too: t2's was a duplicate, never stored), "y" keeps t2's event
    # time; t1 is no customer any more.
    assert dedup == {"c": dedup["c"], "l2": dedup["l2"], "y": (int(old.timestamp() * 1000),) * 2}
    with pytest.raises(BadRequestError, match="not a metering customer"):
        provider.metering_ingest_usage_event(event("a", 1))
    provider.metering_create_customer(sbt_event("onboardingRequest", {"tenantId": "t1"}))
    assert [r.status for r in provider.ingest_batch([event("a", 1), event("x", 1, tenant="t2"),
                                                     event("c", 1, tenant="t1")])] == ["accepted"] * 2 + ["duplicate"]


def test_binary_copy_payloads_round_trip(sbt_postgres_url: str) -> None:
    rows = [(1, 2**40, 1.5, "h\u00e9llo \u2603", None, True), (2, -5, float("inf"), None, "x\ty\\n", False),
            (3, 0, -0.0, "", "ascii", True)]
    engine = sa.create_engine(sbt_postgres_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TEMPORARY TABLE copied (a int4, b int8, c float8, d text, e varchar(20), "
                                 "f bool)")
            names = ["a", "b", "c", "d", "e", "f"]
            kinds = ["int4", "int8", "float8", "text", "text", "bool"]
            columns = [(kind, [r[i] for r in rows]) for i, kind in enumerate(kinds)]
            copy_columns(conn.connection.driver_connection, "copied", names, columns)
            copy_columns(conn.connection.driver_connection, "copied", names, [(k, v[:0]) for k, v in columns])
            copy_columns(conn.connection.driver_connection, "copied", ["a", "d"], [("int4", np.array([4])),
                                                                                 ("text", None)])
            assert conn.exec_driver_sql("SELECT * FROM copied ORDER BY a").all() == [
                *rows, (4, None, None, None, None, None)]
    finally:
        engine.dispose()


def test_a_role_without_temporary_tables_folds_cells_with_upserts(
        sbt_postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(cursor: Any) -> None:
        raise psycopg.errors.InsufficientPrivilege("permission denied to create temporary tables")

    monkeypatch.setattr("sbt_sql_metering._store.create_stage", refused)
    provider = SqlMetering(SqlMeteringSettings(database_url=Secret(sbt_postgres_url)),
                           ProviderContext("sql", "metering", tmp_path))
    provider.clock = lambda: int(NOW.timestamp() * 1000)
    provider.sbt_startup()
    try:
        with provider.store.write() as conn:
            for table in ("rollups", "dedup", "events", "series", "customers", "meters"):
                conn.execute(sa.text(f"DELETE FROM sbt_metering_{table}"))
            assert STAGE not in conn.connection.info
        meter_id = create(provider)
        assert provider.ingest_columns("calls", ["t1", "t1", "t2"], [int(NOW.timestamp() * 1000) - 60_000] * 3,
                                       [1, 2, 4], ["a", "b", "c"]).accepted == 3
        day = (NOW - timedelta(minutes=1)).date().isoformat()
        assert usage(provider, meter_id) == {("t1", day): 3.0, ("t2", day): 4.0}
        with provider.store.read() as conn:
            assert all(differences(conn, seq) == [] for seq in conn.execute(sa.select(meters.c.meter_seq)).scalars())
    finally:
        provider.sbt_shutdown()


def test_a_large_batch_whose_claim_refuses_identifiers_stores_only_the_new_ones(
        new_provider: Callable[..., SqlMetering], monkeypatch: pytest.MonkeyPatch) -> None:
    # From 5 rows a PostgreSQL batch prepares its payloads while the claim runs, expecting every
    # identifier to be new; here the second batch repeats three stored ones.
    monkeypatch.setattr("sbt_sql_metering._ingest._OVERLAP_ROWS", 5)
    provider = new_provider()
    meter_id = create(provider, Aggregation.MAX)
    at = int((NOW - timedelta(minutes=5)).timestamp() * 1000)
    first = provider.ingest_columns("calls", ["t1", "t2"] * 4, [at - i for i in range(8)], list(range(8)),
                                    [f"a{i}" for i in range(8)])
    second = provider.ingest_columns("calls", ["t1"] * 6, [at] * 6, [100, 1, 1, 1, 50, 1],
                                     ["a0", "b1", "a2", "b3", "a4", "b5"])
    assert (first.accepted, first.duplicates, second.accepted, second.duplicates) == (8, 0, 3, 3)
    day = (NOW - timedelta(minutes=5)).date().isoformat()
    assert usage(provider, meter_id) == {("t1", day): 6.0, ("t2", day): 7.0}
    with provider.store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(sa.table("sbt_metering_events"))).scalar() == 11
        assert all(differences(conn, seq) == [] for seq in conn.execute(sa.select(meters.c.meter_seq)).scalars())


def test_a_cancel_of_many_identifiers_finds_them_in_every_meter(
        new_provider: Callable[..., SqlMetering], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sbt_sql_metering.provider._SPANS_PER_STATEMENT", 3)  # several statements per meter
    provider = new_provider()
    sums = create(provider)
    counts = provider.metering_create_meter(MeterCreate(name="logins", event_name="logins",
                                                        aggregation=Aggregation.COUNT)).meter_id
    provider.ingest_batch([event(i, 10, at=NOW - timedelta(hours=i)) for i in range(12)]
                          + [event(i, name="logins", at=NOW - timedelta(minutes=i)) for i in range(0, 12, 2)])
    cancelled = provider.metering_cancel_usage_events(CancelUsageRequest(identifiers=tuple(map(str, range(8)))))
    assert cancelled.cancelled == 8 + 4
    assert sum(usage(provider, sums).values()) == 40.0
    assert usage(provider, counts) == {("t1", (NOW - timedelta(minutes=10)).date().isoformat()): 2.0}
    assert provider.metering_cancel_usage_events(CancelUsageRequest(identifiers=("0", "11"))).cancelled == 1


def test_event_ids_increase_across_blocks_and_batches(new_provider: Callable[..., SqlMetering],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sbt_sql_metering._store._ID_BLOCK", 4)  # a batch of 10 takes 3 blocks
    provider = new_provider()
    create(provider)
    at = int((NOW - timedelta(minutes=5)).timestamp() * 1000)
    for batch in range(3):
        ids = [f"{batch}-{i}" for i in range(10 if batch != 1 else 1)]
        provider.ingest_columns("calls", ["t1"] * len(ids), [at] * len(ids), [1] * len(ids), ids)
    with provider.store.read() as conn:
        stored = conn.execute(sa.text("SELECT identifier FROM sbt_metering_events ORDER BY event_id")).scalars().all()
    # Ingestion order, batch after batch (LATEST breaks ties on event time with the ids).
    assert stored == [f"{b}-{i}" for b in range(3) for i in range(10 if b != 1 else 1)]


def test_columns_as_arrays_or_lists_are_refused_and_stored_alike(new_provider: Callable[..., SqlMetering]) -> None:
    provider = new_provider()
    meter_id = create(provider)
    at = int((NOW - timedelta(minutes=5)).timestamp() * 1000)
    far = int((NOW - timedelta(days=40)).timestamp() * 1000)
    messages = []
    for wrap in (list, np.array):
        with pytest.raises(BadRequestError) as refused:
            provider.ingest_columns("calls", ["t1"] * 4, wrap([at, far, at, at]), wrap([1.5, 2, float("nan"), 4]),
                                    ["a", "b", "c", ""])
        messages.append(refused.value.message)
    assert messages[0] == messages[1]
    assert "row 2 (c): v must be finite, got nan" in messages[0] and "row 1 (b): timestamp outside" in messages[0]
    assert "row 3: identifier is empty" in messages[0]
    assert provider.ingest_columns("calls", ["t1", "t2"], np.array([at, at]), np.array([3, 2**53 + 1]),
                                   ["a", "b"]).accepted == 2
    day = (NOW - timedelta(minutes=5)).date().isoformat()
    assert usage(provider, meter_id) == {("t1", day): 3.0, ("t2", day): float(2**53 + 1)}


def test_a_batch_whose_own_sum_overflows_one_cell_is_refused_event_by_event(
        new_provider: Callable[..., SqlMetering]) -> None:
    provider = new_provider()
    meter_id = create(provider)
    # Each finite alone, their sum in one cell infinite: a batch must not store an infinite cell.
    assert [r.status for r in provider.ingest_batch([event("a", 0.9e308), event("b", 0.9e308)])] == [
        "accepted", "rejected"]
    at = int((NOW - timedelta(hours=1)).timestamp() * 1000)
    with pytest.raises(BadRequestError, match="float range"):
        provider.ingest_columns("calls", ["t2", "t2"], [at, at], np.array([0.9e308, 0.9e308]), ["c", "d"])
    assert usage(provider, meter_id) == {("t1", (NOW - timedelta(hours=1)).date().isoformat()): 0.9e308}
    with provider.store.read() as conn:
        assert all(differences(conn, seq) == [] for seq in conn.execute(sa.select(meters.c.meter_seq)).scalars())


def test_schema_versions_are_recorded_and_a_newer_schema_is_refused(provider: SqlMetering) -> None:
    with provider.store.write() as conn:
        assert conn.execute(sa.select(schema_versions.c.version)).scalars().all() == [v for v, _, _ in MIGRATIONS]
        conn.execute(sa.insert(schema_versions).values(version=SCHEMA_VERSION + 1, description="from the future"))
    with pytest.raises(ConfigError, match="newer than this"):
        provider.store.migrate()
    with provider.store.write() as conn:
        conn.execute(sa.delete(schema_versions).where(schema_versions.c.version > SCHEMA_VERSION))


def test_settings_refuse_a_url_of_another_database() -> None:
    with pytest.raises(ValueError, match="unsupported database 'mysql'; use one of sqlite, postgresql"):
        SqlMeteringSettings(database_url=Secret("mysql://user:pw@host/db"))


def sbt(*args: str) -> tuple[int, str, str]:
    app = build_app(CliState(extra={"sql": SqlMetering}, entry_points=False))
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_stats_and_check_find_and_repair_a_rollup_that_disagrees_with_its_events(tmp_path: Path) -> None:
    config = tmp_path / "sbt.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n\n[providers.metering]\ntype = "sql"\n')
    provider = SqlMetering(SqlMeteringSettings(), ProviderContext("sql", "metering", tmp_path / "state"))
    provider.clock = lambda: int(NOW.timestamp() * 1000)
    meter_id = create(provider)
    provider.ingest_batch([event(i, i) for i in range(10)])
    code, out, _ = sbt("metering", "stats", "--config", str(config), "--json")
    assert code == 0 and '"events": 10' in out and '"meters": 1' in out and '"tenantDayCells": 1' in out
    assert sbt("metering", "check", "--config", str(config))[:2] == (0, f"{meter_id}: ok\n")
    with provider.store.write() as conn:
        conn.execute(sa.update(rollups).where(rollups.c.width == HALF_HOUR).values(sum=rollups.c.sum + 1))
    code, out, _ = sbt("metering", "check", "--config", str(config))
    assert code == 1 and "1 cell(s) differ" in out and "rollup (10, 46.0" in out
    assert sbt("metering", "check", "--config", str(config), "--repair")[0] == 0
    assert sbt("metering", "check", "--config", str(config))[:2] == (0, f"{meter_id}: ok\n")
    with provider.store.write() as conn:  # a tenant day cell that no longer sums its series' day cells
        conn.execute(sa.update(tenant_days).values(max=tenant_days.c.max + 1))
    code, out, _ = sbt("metering", "check", "--config", str(config))
    assert code == 1 and "1 cell(s) differ" in out and "tenant 't1'" in out and "rollup (10, 45.0, 0.0, 10.0" in out
    assert sbt("metering", "check", "--config", str(config), "--repair")[0] == 0
    assert sbt("metering", "check", "--config", str(config))[:2] == (0, f"{meter_id}: ok\n")
    code, _, err = sbt("metering", "check", "--config", str(config), "--meter", "nope")
    assert code == 1 and "not found" in err


def test_migration_5_gives_dedup_entries_their_first_time_and_cancels_find_events_through_them(
        new_provider: Callable[..., SqlMetering]) -> None:
    provider = new_provider()
    meter_id = create(provider)
    # "again" is stored twice: its first event is older than the dedup window (32 days) when it comes back.
    provider.ingest_batch([event("again", 2, at=NOW - timedelta(days=34)), event("once", 3),
                           event("other", 5, tenant="t2")])
    provider.ingest_batch([event("again", 7, at=NOW - timedelta(hours=2))])
    postgres = provider.store.postgres
    with provider.store.write() as conn:
        # What version 4 left: no first times, an index on identifiers and (PostgreSQL) a key on event ids.
        conn.exec_driver_sql("ALTER TABLE sbt_metering_dedup DROP COLUMN first_ts")
        conn.exec_driver_sql("CREATE INDEX sbt_metering_events_identifier ON sbt_metering_events (identifier)")
        if postgres:
            conn.exec_driver_sql("ALTER TABLE sbt_metering_events ADD CONSTRAINT sbt_metering_events_pkey "
                                 "PRIMARY KEY (event_id)")
        conn.execute(sa.delete(schema_versions).where(schema_versions.c.version >= 5))
    assert provider.store.migrate() == [5]
    with provider.store.read() as conn:
        spans = {r.identifier: (r.first_ts, r.ts) for r in conn.execute(sa.select(dedup))}
        inspector = sa.inspect(conn)
        indexes = {i["name"] for i in inspector.get_indexes("sbt_metering_events")}
        key = inspector.get_pk_constraint("sbt_metering_events")["constrained_columns"]
    def ago(**delta: float) -> int:
        return int((NOW - timedelta(**delta)).timestamp() * 1000)

    assert spans == {"again": (ago(days=34), ago(hours=2)), "once": (ago(hours=1),) * 2,
                     "other": (ago(hours=1),) * 2}
    assert indexes == {"sbt_metering_events_time"}
    assert key == ([] if postgres else ["event_id"])
    result = provider.metering_cancel_usage_events(CancelUsageRequest(identifiers=("again", "missing")))
    assert result.cancelled == 2
    assert usage(provider, meter_id) == {("t1", (NOW - timedelta(hours=1)).date().isoformat()): 3.0,
                                         ("t2", (NOW - timedelta(hours=1)).date().isoformat()): 5.0}
