"""Benchmark of the ``memory`` and ``sql`` (PostgreSQL) metering providers against DuckDB, same data, same run.

Not a test. Workload (issue 5): N events (default 10 million) from 100 tenants over 30 days, one SUM
meter with one dimension (``region``, 4 values). Measures:

- batch ingest (``MemoryMetering.ingest_columns``, chunks of 1M rows) vs DuckDB ``INSERT ... SELECT``
  from the same NumPy columns;
- one-at-a-time ingest through the pluggy hook ``metering_ingest_usage_event`` (UsageEvent records built
  beforehand, untimed) vs DuckDB one-row ``INSERT`` (on a small sample: it is slow);
- ``metering_fetch_usage`` for 30 days in DAY windows grouped by tenant (3,000 rows), median of repeated
  runs: the first page (limit 100), every page (limit 1000), and a range whose ``to`` is not on a
  15-minute boundary; DuckDB runs the same GROUP BY and fetches every row;
- resident memory per stored event: RSS growth of the process over the load, measured after ``gc`` and
  glibc ``malloc_trim(0)`` so that the benchmark's own freed input lists do not count (the raw figure
  is printed too), and the engine's own accounting of its arrays. DuckDB's is measured the same way.

Durability (issue 18), log on (``durable``, ``fsync = "batch"``) against log off, in the same run:

- batch ingest: ``ingest_columns`` in chunks of 1M rows, and the bus's shape, ``metering_ingest_usage_events``
  with 100-event batches (one fsync per batch), each as a ratio to the same ingest with the log off;
- one-at-a-time ingest through the hook (one fsync per call), and the same under ``fsync = "interval"``;
- recovery: ``sbt_startup`` after a crash with N events (``--recovery-events``, default ``--events``), half in
  the snapshot and half in the log, in seconds and events/s.


``sql`` (issue 19) on PostgreSQL (``--sql-url``, default a throwaway database on 127.0.0.1:5432, dropped
after): batch ingest through ``SqlMetering.ingest_columns`` (COPY, dedup, rollups; one transaction per
chunk), as a ratio to a bare binary COPY of the same rows into a copy of the events table (its indexes, no
dedup, no rollups), chunk by chunk in turn; bytes on disk per stored event (tables, indexes, rollups, dedup:
``pg_total_relation_size``), and those of the events, dedup and rollups tables. ``--no-sql`` skips it.
The query figures: every page of the 30-day DAY query (median), the same with one event written
between pages (the writes untimed), one page, a ``to`` off the 30-minute grid, and DAY windows in
Europe/Paris, America/New_York and Asia/Kolkata (a half-hour offset).

Run: ``python benchmarks/metering.py [--events N] [--single N] [--repeat R] [--sql-chunk N]``; only the
durability part: ``python benchmarks/metering.py --durability-only --events 2000000``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psutil
from sbt_memory_metering import MemoryMetering, MemoryMeteringSettings

from sbt_core import ProviderContext
from sbt_core.models import MeterCreate, UsageEvent, UsageQuery, WindowSize
from sbt_core.plugins import new_plugin_manager

DAY_MS = 86_400_000
REGIONS = ["eu-west-1", "us-east-1", "ap-south-1", "sa-east-1"]


def rss() -> int:
    gc.collect()
    return psutil.Process(os.getpid()).memory_info().rss


def trimmed_rss() -> int:
    """RSS after glibc returns its free heap to the OS (freed temporaries of the load are not stored events)."""
    gc.collect()
    with contextlib.suppress(OSError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss()


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up (e.g. prefix sums after ingest)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


class Data:
    """Deterministic events: chunk ``i`` is the same for the engine and DuckDB."""

    def __init__(self, events: int, tenants: int, days: int, now_ms: int, chunk: int) -> None:
        self.events, self.chunk, self.now_ms = events, chunk, now_ms
        self.tenants = [f"tenant-{i:03d}" for i in range(tenants)]
        self.start_ms = (now_ms // DAY_MS - days) * DAY_MS  # midnight UTC, 30 whole days before today
        self.span = now_ms - 60_000 - self.start_ms

    def part(self, i: int) -> dict[str, object]:
        lo, hi = i * self.chunk, min((i + 1) * self.chunk, self.events)
        rng = np.random.default_rng(i)
        n = hi - lo
        tenant_idx = rng.integers(0, len(self.tenants), n)
        region_idx = rng.integers(0, len(REGIONS), n)
        return {
            "ts": self.start_ms + rng.integers(0, self.span, n),
            "value": rng.integers(1, 100, n).astype(np.float64),
            "tenant": [self.tenants[t] for t in tenant_idx.tolist()],
            "region": [REGIONS[r] for r in region_idx.tolist()],
            "id": [f"evt-{j:010d}" for j in range(lo, hi)],
        }

    @property
    def parts(self) -> int:
        return -(-self.events // self.chunk)


def new_provider(state: Path) -> MemoryMetering:
    return MemoryMetering(MemoryMeteringSettings(), ProviderContext("memory", "metering", state))


def bench_engine(data: Data, args: argparse.Namespace, state: Path) -> dict[str, float]:
    """Batch ingest, queries and memory on one provider; then one-at-a-time ingest on a fresh one."""
    out = bench_load_and_query(data, args, state)
    gc.collect()  # the first provider is gone: its memory does not count against the second
    return {**out, **bench_single(data, args, state)}


def bench_load_and_query(data: Data, args: argparse.Namespace, state: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    before = trimmed_rss()
    provider = new_provider(state)
    meter = provider.metering_create_meter(MeterCreate(name="API calls", event_name="api_calls", group_by=("region",)))
    spent = 0.0
    for i in range(data.parts):
        part = data.part(i)
        t = time.perf_counter()
        provider.ingest_columns("api_calls", part["tenant"], part["ts"], part["value"], part["id"],
                                {"region": part["region"]})
        spent += time.perf_counter() - t
        del part
    out["batch_rate"] = data.events / spent
    out["batch_s"] = spent
    # Memory of the stored events: after the load, before any query. The raw figure also holds the
    # benchmark's own freed input lists (glibc keeps freed heap); the trimmed one hands that back first.
    out["rss_bytes_per_event"] = (rss() - before) / data.events
    out["trimmed_bytes_per_event"] = (trimmed_rss() - before) / data.events
    stats = provider.stats()
    assert stats["events"] == data.events, stats

    # Queries: 30 days in DAY windows grouped by tenant.
    start = datetime.fromtimestamp(data.start_ms / 1000, UTC)
    end = start + timedelta(days=31)  # through the end of today
    q100 = UsageQuery(from_=start, to=end, window_size=WindowSize.DAY)
    q1000 = UsageQuery(from_=start, to=end, window_size=WindowSize.DAY, limit=1000)
    ragged = datetime.fromtimestamp(data.now_ms / 1000, UTC)

    def all_pages(query: UsageQuery) -> int:
        rows, token = 0, None
        while True:
            page = provider.metering_fetch_usage(meter.meter_id, UsageQuery(
                from_=query.from_, to=query.to, window_size=query.window_size, limit=1000, next_token=token))
            rows += len(page.items)
            token = page.next_token
            if token is None:
                return rows

    t = time.perf_counter()
    first = provider.metering_fetch_usage(meter.meter_id, q100)
    out["query_first_ms"] = (time.perf_counter() - t) * 1000
    out["rows"] = all_pages(q1000)
    out["query_page100_ms"] = median_ms(lambda: provider.metering_fetch_usage(meter.meter_id, q100), args.repeat)
    out["query_page1000_ms"] = median_ms(lambda: provider.metering_fetch_usage(meter.meter_id, q1000), args.repeat)
    out["query_all_ms"] = median_ms(lambda: all_pages(q1000), args.repeat)
    out["query_ragged_ms"] = median_ms(lambda: provider.metering_fetch_usage(
        meter.meter_id, UsageQuery(from_=start, to=ragged, window_size=WindowSize.DAY)), max(3, args.repeat // 10))
    variants = {
        "query_region_ms": UsageQuery(from_=start, to=end, window_size=WindowSize.DAY, group_by=("region",)),
        "query_tenant_ms": UsageQuery(from_=start, to=end, window_size=WindowSize.DAY, tenant_id=data.tenants[7]),
        "query_hour_paris_ms": UsageQuery(from_=start, to=end, window_size=WindowSize.HOUR,
                                          window_time_zone="Europe/Paris"),
    }
    for key, query in variants.items():
        out[key] = median_ms(lambda query=query: provider.metering_fetch_usage(meter.meter_id, query), args.repeat)
    assert first.items, "no rows"
    out["after_queries_bytes_per_event"] = (trimmed_rss() - before) / data.events
    out["own_bytes_per_event"] = stats["bytes"] / data.events
    out["grid_ok"] = float(provider.engine.meters[meter.meter_id].rollup is not None)
    return out


def bench_single(data: Data, args: argparse.Namespace, state: Path) -> dict[str, float]:
    """One at a time, through the pluggy hook, on a fresh provider (UsageEvents built untimed)."""
    out: dict[str, float] = {}
    single = new_provider(state)
    pm = new_plugin_manager()
    pm.register(single, name="metering:memory")
    hook = pm.hook.metering_ingest_usage_event
    single.metering_create_meter(MeterCreate(name="API calls", event_name="api_calls", group_by=("region",)))
    n_single = min(args.single, data.events)
    spent, done = 0.0, 0
    chunk = 100_000
    for i in range(data.parts):
        part = data.part(i)
        for lo in range(0, data.chunk, chunk):
            take = min(chunk, n_single - done)
            if take <= 0:
                break
            events = [UsageEvent(tenant_id=part["tenant"][j], event_name="api_calls", identifier=part["id"][j],
                                 timestamp=datetime.fromtimestamp(int(part["ts"][j]) / 1000, UTC),
                                 properties={"value": float(part["value"][j]), "region": part["region"][j]})
                      for j in range(lo, min(lo + take, len(part["id"])))]
            t = time.perf_counter()
            for ev in events:
                hook(usage_event=ev)
            spent += time.perf_counter() - t
            done += len(events)
        if done >= n_single:
            break
    t = time.perf_counter()
    single.flush()
    spent += time.perf_counter() - t
    out["single_rate"] = done / spent
    out["single_n"] = done
    return out


def started(state: Path, **settings: object) -> MemoryMetering:
    provider = MemoryMetering(MemoryMeteringSettings(**settings), ProviderContext("memory", "metering", state))  # type: ignore[arg-type]
    provider.sbt_startup()
    provider.metering_create_meter(MeterCreate(name="API calls", event_name="api_calls", group_by=("region",)))
    return provider


def bench_log(data: Data, args: argparse.Namespace, state: Path) -> dict[str, float]:
    """Ingest with the write-ahead log on against off, interleaved chunk by chunk so both see the same load."""
    out: dict[str, float] = {}
    off = started(state / "off", durable=False)
    on = started(state / "on")
    spent = {"off": 0.0, "on": 0.0}
    n = min(args.log_events, data.events)
    done = 0
    for i in range(data.parts):
        if done >= n:
            break
        part = data.part(i)
        for name, provider in (("off", off), ("on", on)) if i % 2 == 0 else (("on", on), ("off", off)):
            t = time.perf_counter()
            provider.ingest_columns("api_calls", part["tenant"], part["ts"], part["value"], part["id"],
                                    {"region": part["region"]})
            spent[name] += time.perf_counter() - t
        done += len(part["id"])
    out["log_columns_off"], out["log_columns_on"] = done / spent["off"], done / spent["on"]
    off.sbt_shutdown()
    on.sbt_shutdown()

    # The bus's shape: 100-event batches through the batch hook; and one event per call.
    part = data.part(0)
    events = [UsageEvent(tenant_id=part["tenant"][j], event_name="api_calls", identifier=part["id"][j],
                         timestamp=datetime.fromtimestamp(int(part["ts"][j]) / 1000, UTC),
                         properties={"value": float(part["value"][j]), "region": part["region"][j]})
              for j in range(min(args.log_batched, len(part["id"])))]

    # Interleaved call by call (the order rotating), so the providers share whatever else the machine does.
    modes = {"off": {"durable": False}, "on": {}, "interval": {"fsync": "interval"}}
    for shape, size, count in (("batched", 100, len(events)), ("single", 1, args.log_single)):
        providers = {key: started(state / f"{shape}-{key}", **settings) for key, settings in modes.items()}
        spent = dict.fromkeys(modes, 0.0)
        for turn, lo in enumerate(range(0, count, size)):
            keys = list(modes)[turn % 3:] + list(modes)[:turn % 3]
            for key in keys:
                provider = providers[key]
                t = time.perf_counter()
                if size == 1:
                    provider.metering_ingest_usage_event(events[lo])
                else:
                    provider.metering_ingest_usage_events(events[lo:lo + size])
                spent[key] += time.perf_counter() - t
        for key, provider in providers.items():
            t = time.perf_counter()
            provider.flush()  # one-at-a-time events are folded in later: that work counts too
            spent[key] += time.perf_counter() - t
            out[f"log_{shape}_{key}"] = count / spent[key]
            provider.sbt_shutdown()
    return out


def bench_recovery(args: argparse.Namespace, now_ms: int, state: Path) -> dict[str, float]:
    """Start-up after a crash with N events: the first half compacted into the snapshot, the rest in the log."""
    n = args.recovery_events or args.events
    data = Data(n, args.tenants, args.days, now_ms, args.chunk)
    provider = started(state, compact_log_bytes=0)  # compaction by hand: half in the snapshot, half in the log
    for i in range(data.parts):
        if i == data.parts // 2:
            provider.save_snapshot()
        part = data.part(i)
        provider.ingest_columns("api_calls", part["tenant"], part["ts"], part["value"], part["id"],
                                {"region": part["region"]})
        del part
    assert provider.durable is not None
    provider.durable.close(compact=False)  # what kill -9 leaves: no last snapshot
    sizes = {p.name: p.stat().st_size for p in (state / "memory").iterdir()}
    del provider
    gc.collect()
    t = time.perf_counter()
    recovered = MemoryMetering(MemoryMeteringSettings(), ProviderContext("memory", "metering", state))
    recovered.sbt_startup()
    seconds = time.perf_counter() - t
    assert recovered.stats()["events"] == n, recovered.stats()
    snapshot_bytes = sum(v for k, v in sizes.items() if k.endswith(".npz"))
    return {"recovery_events": n, "recovery_s": seconds, "recovery_rate": n / seconds,
            "snapshot_mb": snapshot_bytes / 2**20, "log_mb": (sum(sizes.values()) - snapshot_bytes) / 2**20}


def durability_report(out: dict[str, float], args: argparse.Namespace) -> None:
    print()
    print(f"{'durability (write-ahead log)':<52}{'log on':>14}{'log off':>14}  {'unit':<9}{'ratio':>8}  target")

    def row(label: str, on: float, off: float | None, unit: str, target: str = "") -> None:
        other = f"{off:>14,.0f}" if off is not None else f"{'-':>14}"
        ratio = f"{on / off:8.2f}" if off else f"{'':>8}"
        print(f"{label:<52}{on:>14,.0f}{other}  {unit:<9}{ratio}  {target}")

    columns = out["log_columns_on"] / out["log_columns_off"]
    row(f"ingest_columns in chunks of {args.chunk:,} ({min(args.log_events, args.events):,})",
        out["log_columns_on"], out["log_columns_off"], "events/s", ">= 0.8 " + ("MET" if columns >= 0.8 else "NOT MET"))
    row(f"batch hook, 100-event batches ({args.log_batched:,})", out["log_batched_on"], out["log_batched_off"],
        "events/s")
    row("  same, fsync = interval", out["log_batched_interval"], out["log_batched_off"], "events/s")
    row(f"one-at-a-time hook, fsync per call ({args.log_single:,})", out["log_single_on"], out["log_single_off"],
        "events/s")
    row("  same, fsync = interval", out["log_single_interval"], out["log_single_off"], "events/s")
    print(f"recovery after a crash, {out['recovery_events']:,.0f} events (snapshot {out['snapshot_mb']:,.0f} MB + "
          f"log {out['log_mb']:,.0f} MB): {out['recovery_s']:.2f} s, {out['recovery_rate']:,.0f} events/s")
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _report import Figure, report
    except ImportError:
        return
    report([
        Figure("metering", "batch ingest with the write-ahead log (fsync per batch)", out["log_columns_on"],
               "events/s", columns, "same ingest, log off", ">= 0.8", columns >= 0.8),
        Figure("metering", "100-event batch hook with the write-ahead log", out["log_batched_on"], "events/s",
               out["log_batched_on"] / out["log_batched_off"], "same ingest, log off"),
        Figure("metering", "one-at-a-time hook with the write-ahead log (fsync per call)", out["log_single_on"],
               "events/s", out["log_single_on"] / out["log_single_off"], "same ingest, log off"),
        Figure("metering", f"recovery after a crash, {out['recovery_events']:,.0f} events in snapshot + log",
               out["recovery_s"], "s"),
        Figure("metering", "recovery rate", out["recovery_rate"], "events/s"),
    ])


@contextlib.contextmanager
def _throwaway_database() -> Iterator[str]:
    import uuid

    import psycopg
    from psycopg import sql

    admin = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    name = f"sbt_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def bench_sql(data: Data, args: argparse.Namespace, state: Path) -> dict[str, float]:
    """``sql`` on PostgreSQL: batch ingest, every page of the 30-day DAY query, bytes on disk per event."""
    from sbt_sql_metering import SqlMetering, SqlMeteringSettings
    from sbt_sql_metering._copy import copy_columns

    from sbt_core.models import Secret

    out: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        url = args.sql_url or stack.enter_context(_throwaway_database())
        provider = SqlMetering(SqlMeteringSettings(database_url=Secret(url)), ProviderContext("sql", "metering", state))
        provider.sbt_startup()
        stack.callback(provider.sbt_shutdown)
        meter = provider.metering_create_meter(MeterCreate(name="API calls", event_name="api_calls",
                                                           group_by=("region",)))
        # Baseline, chunk by chunk in turn with the provider (both see the same load): a bare binary COPY of
        # the same rows into a copy of the events table with its indexes, no dedup and no rollups.
        with provider.store.engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE bench_bare (LIKE sbt_metering_events INCLUDING ALL)")
        raw = provider.store.engine.raw_connection()
        stack.callback(raw.close)
        series: dict[tuple[str, str], int] = {}
        spent = bare = 0.0
        first_id = 0
        for i in range(data.parts):
            part = data.part(i)
            for lo in range(0, len(part["id"]), args.sql_chunk):
                hi = lo + args.sql_chunk
                t = time.perf_counter()
                provider.ingest_columns("api_calls", part["tenant"][lo:hi], part["ts"][lo:hi],
                                        part["value"][lo:hi], part["id"][lo:hi], {"region": part["region"][lo:hi]})
                spent += time.perf_counter() - t
                ids = part["id"][lo:hi]
                n = len(ids)
                sids = np.array([series.setdefault(k, len(series)) for k in zip(part["tenant"][lo:hi],
                                                                                  part["region"][lo:hi], strict=True)])
                columns = [("int8", np.arange(first_id, first_id + n)), ("int4", np.ones(n)), ("int4", sids),
                           ("int8", part["ts"][lo:hi]), ("float8", part["value"][lo:hi]),
                           ("bool", np.zeros(n, dtype=bool)), ("text", None), ("text", ids)]
                first_id += n
                t = time.perf_counter()
                copy_columns(raw.driver_connection, "bench_bare", ["event_id", "meter_seq", "series_id", "ts", "value",
                                                                   "cancelled", "text", "identifier"], columns)
                raw.commit()
                bare += time.perf_counter() - t
            del part
        out["batch_rate"] = data.events / spent
        out["bare_rate"] = data.events / bare
        with provider.store.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE bench_bare")
        with provider.store.engine.connect() as conn:  # settle the visibility map, as autovacuum would
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
        stats = provider.stats()
        assert stats["events"] == data.events, stats
        out["disk_bytes_per_event"] = sum(stats["bytes"].values()) / data.events
        for table in ("events", "dedup", "rollups"):
            out[f"disk_{table}"] = stats["bytes"][f"sbt_metering_{table}"] / data.events
        out["rollup_cells"] = stats["rollupCells"]
        start = datetime.fromtimestamp(data.start_ms / 1000, UTC)
        end = start + timedelta(days=31)

        written = 0

        def write_one() -> None:
            # One event, so that no page can be answered from anything computed before it.
            nonlocal written
            written += 1
            provider.ingest_batch([UsageEvent(tenant_id=data.tenants[written % len(data.tenants)],
                                              event_name="api_calls", identifier=f"between-{written}",
                                              timestamp=start + timedelta(days=3), properties={"value": 1.0,
                                                                                               "region": REGIONS[0]})])

        def all_pages(to: datetime = end, between: Callable[[], None] | None = None, **extra: object) -> int:
            rows, token = 0, None
            while True:
                page = provider.metering_fetch_usage(meter.meter_id, UsageQuery(
                    from_=start, to=to, window_size=WindowSize.DAY, limit=1000, next_token=token, **extra))
                rows += len(page.items)
                token = page.next_token
                if token is None:
                    return rows
                if between is not None:
                    paused = time.perf_counter()
                    between()
                    spent_writing.append(time.perf_counter() - paused)

        spent_writing: list[float] = []

        def timed_without_writes(fn: Callable[[], object]) -> float:
            # Median of the fetches alone: the writes between the pages are not timed.
            fn()
            times = []
            for _ in range(args.repeat):
                spent_writing.clear()
                t = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t - sum(spent_writing)) * 1000)
            return statistics.median(times)

        out["rows"] = all_pages()
        out["query_all_ms"] = median_ms(all_pages, args.repeat)
        out["query_fresh_ms"] = timed_without_writes(lambda: all_pages(between=write_one))
        out["query_page_ms"] = median_ms(lambda: provider.metering_fetch_usage(meter.meter_id, UsageQuery(
            from_=start, to=end, window_size=WindowSize.DAY, limit=1000)), args.repeat)
        ragged = datetime.fromtimestamp(data.now_ms / 1000, UTC)
        out["query_ragged_ms"] = median_ms(lambda: all_pages(to=ragged), args.repeat)
        few = max(3, args.repeat // 5)
        out["query_paris_ms"] = median_ms(lambda: all_pages(window_time_zone="Europe/Paris"), few)
        out["query_new_york_ms"] = median_ms(lambda: all_pages(window_time_zone="America/New_York"), few)
        out["query_kolkata_ms"] = median_ms(lambda: all_pages(window_time_zone="Asia/Kolkata"), few)
    return out


def bench_duckdb(data: Data, args: argparse.Namespace) -> dict[str, float]:
    import duckdb

    out: dict[str, float] = {}
    con = duckdb.connect(":memory:", config={"threads": os.cpu_count() or 1})
    con.execute("CREATE TABLE events(tenant VARCHAR, ts TIMESTAMP, value DOUBLE, region VARCHAR, id VARCHAR)")
    before = trimmed_rss()
    spent = 0.0
    for i in range(data.parts):
        part = data.part(i)
        cols = {"tenant": np.array(part["tenant"], dtype=object), "ts": part["ts"].astype("datetime64[ms]"),
                "value": part["value"], "region": np.array(part["region"], dtype=object),
                "id": np.array(part["id"], dtype=object)}
        t = time.perf_counter()
        con.execute("INSERT INTO events SELECT * FROM cols")
        spent += time.perf_counter() - t
        del part, cols
    out["batch_rate"] = data.events / spent
    out["batch_s"] = spent
    out["rss_bytes_per_event"] = (trimmed_rss() - before) / data.events
    start = datetime.fromtimestamp(data.start_ms / 1000, UTC).replace(tzinfo=None)
    end = start + timedelta(days=31)
    # date_trunc was the fastest of the formulations tried (time_bucket, date_trunc; ORDER BY or not).
    sql = ("SELECT tenant, date_trunc('day', ts) AS day, sum(value) FROM events "
           "WHERE ts >= ? AND ts < ? GROUP BY ALL ORDER BY tenant, day")
    out["rows"] = len(con.execute(sql, [start, end]).fetchall())
    out["query_all_ms"] = median_ms(lambda: con.execute(sql, [start, end]).fetchall(), args.repeat)
    # One row at a time: a small sample, it is slow.
    part = data.part(0)
    sample = min(args.duck_single, len(part["id"]))
    con.execute("CREATE TABLE one(tenant VARCHAR, ts TIMESTAMP, value DOUBLE, region VARCHAR, id VARCHAR)")
    t = time.perf_counter()
    for j in range(sample):
        con.execute("INSERT INTO one VALUES (?, ?, ?, ?, ?)",
                    [part["tenant"][j], datetime.fromtimestamp(int(part["ts"][j]) / 1000, UTC).replace(tzinfo=None),
                     float(part["value"][j]), part["region"][j], part["id"][j]])
    out["single_rate"] = sample / (time.perf_counter() - t)
    con.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--single", type=int, default=1_000_000, help="events ingested one at a time")
    parser.add_argument("--duck-single", type=int, default=20_000, help="DuckDB one-row INSERTs (sample)")
    parser.add_argument("--repeat", type=int, default=50, help="runs per query for the median")
    parser.add_argument("--chunk", type=int, default=1_000_000)
    parser.add_argument("--no-duckdb", action="store_true")
    parser.add_argument("--log-events", type=int, default=2_000_000, help="batch ingest with the log on and off")
    parser.add_argument("--log-batched", type=int, default=20_000, help="events through the 100-event batch hook")
    parser.add_argument("--log-single", type=int, default=5_000, help="one-at-a-time events, log on and off")
    parser.add_argument("--recovery-events", type=int, default=0, help="events to recover (default: --events)")
    parser.add_argument("--durability-only", action="store_true", help="only the write-ahead log figures")
    parser.add_argument("--state-dir", default=None, help="where the log benchmarks write (default: the temp dir)")
    parser.add_argument("--no-durability", action="store_true", help="skip the write-ahead log figures")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory provider")
    parser.add_argument("--no-sql", action="store_true", help="skip the sql provider (PostgreSQL)")
    parser.add_argument("--sql-url", default=None, help="PostgreSQL URL (default: a throwaway database)")
    parser.add_argument("--sql-chunk", type=int, default=1_000_000, help="events per sql ingest_columns call")
    args = parser.parse_args()
    now_ms = time.time_ns() // 1_000_000
    data = Data(args.events, args.tenants, args.days, now_ms, args.chunk)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
          f"Python {platform.python_version()}, NumPy {np.__version__}")
    print(f"workload: {args.events:,} events, {args.tenants} tenants, {args.days} days, one SUM meter, "
          f"1 dimension x {len(REGIONS)} values")
    durability: dict[str, float] = {}
    if not args.no_durability:
        with tempfile.TemporaryDirectory(dir=args.state_dir) as state:
            durability.update(bench_log(data, args, Path(state)))
        gc.collect()
        with tempfile.TemporaryDirectory(dir=args.state_dir) as state:
            durability.update(bench_recovery(args, now_ms, Path(state)))
        gc.collect()
    if args.durability_only:
        durability_report(durability, args)
        return
    with tempfile.TemporaryDirectory() as state:
        ours = None if args.no_memory else bench_engine(data, args, Path(state))
        sql = None if args.no_sql else bench_sql(data, args, Path(state))
    duck = None if args.no_duckdb else bench_duckdb(data, args)
    if sql is not None:
        _sql_report(sql, duck)
    if ours is None:
        return

    def row(label: str, mine: float, theirs: float | None, unit: str, target: str, better: str = "higher") -> None:
        other = f"{theirs:>14,.3f}" if theirs is not None else f"{'-':>14}"
        ratio = ""
        if theirs:
            ratio = f"{mine / theirs:8.2f}x" if better == "higher" else f"{mine / theirs:8.3f}x"
        print(f"{label:<44}{mine:>14,.3f}{other}  {unit:<9}{ratio:>10}  {target}")

    print()
    print(f"{'':<44}{'memory':>14}{'duckdb':>14}  {'unit':<9}{'ratio':>10}  target")
    row("batch ingest", ours["batch_rate"], duck and duck["batch_rate"], "events/s",
        ">= 1,000,000/s " + ("MET" if ours["batch_rate"] >= 1e6 else "NOT MET"))
    row(f"one-at-a-time ingest ({ours['single_n']:,.0f} via hook)", ours["single_rate"],
        duck and duck["single_rate"], "events/s",
        ">= 200,000/s " + ("MET" if ours["single_rate"] >= 2e5 else "NOT MET"))
    row("query first run after ingest (limit 100)", ours["query_first_ms"], None, "ms", "")
    ok_page = ours["query_page100_ms"] <= 1.0
    row("query median, first page (limit 100)", ours["query_page100_ms"], duck and duck["query_all_ms"], "ms",
        "<= 1 ms " + ("MET" if ok_page else "NOT MET") + (", <= 1/10 DuckDB " + (
            "MET" if duck and ours["query_page100_ms"] <= duck["query_all_ms"] / 10 else "NOT MET") if duck else ""),
        better="lower")
    row("query median, one page of 1000 rows", ours["query_page1000_ms"], duck and duck["query_all_ms"], "ms", "",
        better="lower")
    row(f"query median, all {ours['rows']:,.0f} rows (3 pages)", ours["query_all_ms"], duck and duck["query_all_ms"],
        "ms", "", better="lower")
    row("query median, `to` off the 15-min grid", ours["query_ragged_ms"], None, "ms", "(raw edge scan)")
    row("query median, grouped by tenant and region", ours["query_region_ms"], None, "ms", "(first page)")
    row("query median, one tenant", ours["query_tenant_ms"], None, "ms", "")
    row("query median, HOUR windows in Europe/Paris", ours["query_hour_paris_ms"], None, "ms", "(first page)")
    row("resident memory per event after the load", ours["trimmed_bytes_per_event"],
        duck and duck["rss_bytes_per_event"], "bytes",
        "<= 48 " + ("MET" if ours["trimmed_bytes_per_event"] <= 48 else "NOT MET"), better="lower")
    row("  same, without malloc_trim (input lists freed)", ours["rss_bytes_per_event"], None, "bytes", "")
    row("  after the queries too (prefix sums, caches)", ours["after_queries_bytes_per_event"], None, "bytes", "")
    row("engine arrays per event (own accounting)", ours["own_bytes_per_event"], None, "bytes", "")
    if duck:
        print(f"\nDuckDB rows: {duck['rows']:,.0f}; DuckDB one-row INSERT measured on {args.duck_single:,} rows.")
    if not ours["grid_ok"]:
        print("note: the pre-aggregation grid was off (over budget); queries ran on raw events")
    _machine_report(ours, duck)
    if durability:
        durability_report(durability, args)


def _sql_report(sql: dict[str, float], duck: dict[str, float] | None) -> None:
    print(f"\n{'sql (PostgreSQL)':<44}{'sql':>14}{'duckdb':>14}  {'unit':<9}{'ratio':>10}  target")
    rate = sql["batch_rate"]
    print(f"{'batch ingest (ingest_columns)':<44}{rate:>14,.0f}{duck['batch_rate'] if duck else 0:>14,.0f}  "
          f"{'events/s':<9}{'':>10}  >= 100,000/s {'MET' if rate >= 1e5 else 'NOT MET'}")
    print(f"{'  bare COPY of the rows, events indexes only':<44}{sql['bare_rate']:>14,.0f}{'':>14}  {'events/s':<9}"
          f"{rate / sql['bare_rate']:9.2f}x  (ingest / bare COPY, chunk by chunk in turn)")
    q = sql["query_all_ms"]
    dq = duck["query_all_ms"] if duck else None
    ok = q <= 50 and dq is not None and q <= 0.5 * dq
    ratio = f"{q / dq:8.3f}x" if dq else ""
    label = f"fetch_usage all {sql['rows']:,.0f} rows, median"
    print(f"{label:<44}{q:>14,.3f}{dq or 0:>14,.3f}  {'ms':<9}"
          f"{ratio:>10}  <= 50 ms and <= 0.5x DuckDB {'MET' if ok else 'NOT MET'}")
    fresh = sql["query_fresh_ms"]
    fresh_ok = fresh <= 50 and dq is not None and fresh <= 0.5 * dq
    fresh_ratio = f"{fresh / dq:8.3f}x" if dq else ""
    print(f"{'same, one event written between pages':<44}{fresh:>14,.3f}{dq or 0:>14,.3f}  {'ms':<9}{fresh_ratio:>10}"
          f"  same target {'MET' if fresh_ok else 'NOT MET'}")
    print(f"{'one page of 1,000 rows':<44}{sql['query_page_ms']:>14,.3f}{'':>14}  {'ms':<9}")
    print(f"{'all pages, `to` off the 30-min grid (now)':<44}{sql['query_ragged_ms']:>14,.3f}{'':>14}  {'ms':<9}")
    for label, key in (("Europe/Paris", "query_paris_ms"), ("America/New_York", "query_new_york_ms"),
                       ("Asia/Kolkata (+5:30)", "query_kolkata_ms")):
        print(f"{'all pages, DAY windows in ' + label:<44}{sql[key]:>14,.3f}{'':>14}  {'ms':<9}")
    print(f"{'bytes on disk per stored event':<44}{sql['disk_bytes_per_event']:>14,.1f}{'':>14}  {'bytes':<9}"
          f"{'':>10}  (tables + indexes + rollups + dedup)")
    print(f"{'  of which events / dedup / rollups':<44}{sql['disk_events']:>14,.1f}{sql['disk_dedup']:>7,.1f}"
          f"{sql['disk_rollups']:>7,.1f}  {'bytes':<9}")
    print(f"{'rollup cells':<44}{sql['rollup_cells']:>14,.0f}")


def _machine_report(ours: dict[str, float], duck: dict[str, float] | None) -> None:
    """The ``SBT-BENCH`` lines ``run_all.py`` gathers (when its ``_report`` module is present)."""
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _report import Figure, report
    except ImportError:
        return
    def ratio(key: str) -> float | None:
        return ours[key] / duck[key] if duck and duck.get(key) else None
    base = "DuckDB in memory" if duck else None
    q = ours["query_page100_ms"]
    report([
        Figure("metering", "batch ingest", ours["batch_rate"], "events/s", ratio("batch_rate"), base,
               ">= 1,000,000/s", ours["batch_rate"] >= 1e6),
        Figure("metering", "one-at-a-time ingest (hook)", ours["single_rate"], "events/s", ratio("single_rate"), base,
               ">= 200,000/s", ours["single_rate"] >= 2e5),
        Figure("metering", "fetch_usage 30 DAY windows by tenant (median)", q, "ms",
               q / duck["query_all_ms"] if duck else None, base, "<= 1 ms and <= 0.1x",
               q <= 1.0 and (duck is None or q <= duck["query_all_ms"] / 10)),
        Figure("metering", "fetch_usage all pages (median)", ours["query_all_ms"], "ms",
               ours["query_all_ms"] / duck["query_all_ms"] if duck else None, base),
        Figure("metering", "resident memory per stored event", ours["trimmed_bytes_per_event"], "bytes",
               ours["trimmed_bytes_per_event"] / duck["rss_bytes_per_event"] if duck else None, base, "<= 48",
               ours["trimmed_bytes_per_event"] <= 48),
    ])


if __name__ == "__main__":
    main()
