"""Durable storage: the write-ahead log replays to the same state, a torn tail is dropped, a damaged
snapshot or segment stops start-up naming the file, compaction under ingest loses nothing, and a process
killed with SIGKILL keeps everything it acknowledged."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sbt_memory_metering import MemoryMetering, _wal

from sbt_core import ProviderError, StartupError
from sbt_core.config import load_config
from sbt_core.models import (
    Aggregation,
    CancelUsageRequest,
    Event,
    MeterCreate,
    MeterStatus,
    MeterUpdate,
    UsageEvent,
    UsageQuery,
    WindowSize,
)
from sbt_core.plugins import build_providers, discover
from sbt_core.testing.waiting import wait_for

HERE = Path(__file__).resolve().parent
NOW = datetime(2026, 4, 2, 9, 30, tzinfo=UTC)  # the clock of conftest.py
NOW_MS = int(NOW.timestamp() * 1000)
Restart = Callable[..., MemoryMetering]


def crash(provider: MemoryMetering) -> None:
    """What kill -9 leaves: the log as written so far, no final snapshot (the threads are stopped so the
    abandoned provider writes nothing more)."""
    assert provider.durable is not None
    provider.durable.close(compact=False)
    provider.durable = None


@pytest.fixture
def restart(new_provider: Callable[..., MemoryMetering]) -> Iterator[Restart]:
    """``restart(**settings)``: a provider on the test's state directory, started (recovered); those
    still open at the end are shut down (their lock and threads released)."""
    started: list[MemoryMetering] = []

    def start(**settings: Any) -> MemoryMetering:
        provider = new_provider(**settings)
        provider.sbt_startup()
        started.append(provider)
        return provider

    yield start
    for provider in started:
        provider.sbt_shutdown()


def ev(identifier: str, tenant: str = "t1", *, hours: float = 1, **props: Any) -> UsageEvent:
    return UsageEvent(tenant_id=tenant, event_name=props.pop("name", "calls"), identifier=identifier,
                      timestamp=NOW - timedelta(hours=hours), properties=props)


def state(provider: MemoryMetering) -> dict[str, Any]:
    """Everything a caller can observe: meters, usage of every meter, counters, customers."""
    meters = provider.metering_fetch_all_meters(1000, None).items
    usage = {}
    for meter in meters:
        page = provider.metering_fetch_usage(meter.meter_id, UsageQuery(
            from_=NOW - timedelta(days=40), to=NOW + timedelta(hours=1), window_size=WindowSize.HOUR,
            group_by=meter.group_by, limit=1000))
        usage[meter.meter_id] = [(r.tenant_id, r.window_start, r.value, r.groups) for r in page.items]
    stats = provider.stats()
    return {"meters": meters, "usage": usage, "customers": dict(provider.engine.customers),
            **{k: stats[k] for k in ("meters", "events", "cancelled", "dropped")}}


def fill(provider: MemoryMetering, round_: int = 0) -> dict[str, str]:
    """Every kind of change, through every entry point."""
    r = f"r{round_}-"
    sums = provider.metering_create_meter(MeterCreate(name="calls", event_name=f"{r}calls", value_property="value",
                                                      group_by=("region",)))
    uniq = provider.metering_create_meter(MeterCreate(name="users", event_name=f"{r}users",
                                                      aggregation=Aggregation.UNIQUE_COUNT, value_property="user"))
    gone = provider.metering_create_meter(MeterCreate(name="gone", event_name=f"{r}gone", aggregation=Aggregation.COUNT,
                                                      value_property=None))
    paused = provider.metering_create_meter(MeterCreate(name="paused", event_name=f"{r}paused"))
    provider.metering_update_meter(uniq.meter_id, MeterUpdate(description="distinct users"))
    provider.metering_update_meter(paused.meter_id, MeterUpdate(status=MeterStatus.INACTIVE))
    for tenant in ("t1", "t2", "t3"):
        provider.metering_create_customer(Event.create("onboardingRequest", {"tenantId": f"{r}{tenant}"}))
    provider.metering_delete_customer(Event.create("offboardingRequest", {"tenantId": f"{r}t2"}))
    for i in range(30):
        provider.metering_ingest_usage_event(ev(f"{r}one{i}", f"{r}t{i % 3}", hours=i / 2, name=f"{r}calls",
                                                value=i, region=["eu", "us"][i % 2]))
        provider.metering_ingest_usage_event(ev(f"{r}u{i}", f"{r}t1", hours=i, name=f"{r}users", user=f"user{i % 4}"))
    outcomes = provider.metering_ingest_usage_events(
        [ev(f"{r}batch{i}", f"{r}t{i % 2}", hours=i, name=f"{r}calls", value=2.5, region="ap") for i in range(20)]
        + [ev(f"{r}one3", name=f"{r}calls", value=99, region="eu"),  # a duplicate: not counted again
           ev(f"{r}bad", name=f"{r}calls", value="nan", region="eu"),  # refused
           ev(f"{r}ghost", name="no-such-meter", value=1)])
    assert outcomes[:21] == [None] * 21 and outcomes[21] is not None  # the ghost: dropped or refused by policy
    provider.ingest_columns(f"{r}calls", [f"{r}t4"] * 10, [NOW_MS - 1000 * i for i in range(10)], list(range(10)),
                            [f"{r}col{i}" for i in range(10)], {"region": ["eu"] * 10})
    provider.ingest_columns(f"{r}gone", ["t1"] * 3, [NOW_MS - 1] * 3, None, ["g1", "g2", "g3"])
    provider.metering_delete_meter(gone.meter_id)
    provider.metering_cancel_usage_events(CancelUsageRequest(identifiers=(f"{r}one1", f"{r}batch2", f"{r}u5")))
    provider.metering_cancel_usage_events(CancelUsageRequest(meter_id=sums.meter_id, tenant_id=f"{r}t0",
                                                             from_=NOW - timedelta(hours=5), to=NOW))
    provider.purge_tenant(f"{r}t4")
    return {"sums": sums.meter_id, "uniq": uniq.meter_id}


@pytest.mark.parametrize("fsync", ["batch", "interval", "off"])
def test_replay_of_the_log_gives_the_same_state(tmp_path: Path, restart: Restart, fsync: str) -> None:
    first = restart(fsync=fsync, unknown_event="drop", pending_flush_events=8)
    fill(first)
    before = state(first)
    assert before["dropped"] == 1 and before["cancelled"] > 3
    crash(first)
    assert not (tmp_path / "memory" / "metering.npz").exists()  # all of it came from the log

    second = restart(fsync=fsync, unknown_event="drop")
    assert state(second) == before
    # Dedup identifiers survived: redelivered events count once, cancelled ones stay cancelled.
    redelivered = [ev("r0-one3", "r0-t0", name="r0-calls", value=1000, region="eu"),
                   ev("r0-batch2", name="r0-calls", value=1000, region="ap")]
    assert second.metering_ingest_usage_events(redelivered) == [None] * 2
    second.metering_ingest_usage_event(ev("r0-u7", "r0-t1", name="r0-users", user="someone-new"))
    assert state(second) == before
    second.sbt_shutdown()


def test_snapshot_plus_log_gives_the_same_state(tmp_path: Path, restart: Restart) -> None:
    first = restart()
    ids = fill(first, 0)
    assert first.save_snapshot() > 0  # a compaction: what follows lives in the log only
    fill(first, 1)
    first.metering_cancel_usage_events(CancelUsageRequest(identifiers=("r0-one4",)))
    first.metering_delete_meter(ids["uniq"])
    before = state(first)
    crash(first)

    second = restart()
    assert state(second) == before
    second.sbt_shutdown()  # compacts: the next start-up reads the snapshot only
    assert sorted(p.name for p in (tmp_path / "memory").iterdir()) == ["metering.00000003.wal", "metering.lock",
                                                                        "metering.npz"]
    assert state(restart()) == before


def _last_segment(tmp_path: Path) -> Path:
    return sorted((tmp_path / "memory").glob("metering.*.wal"))[-1]


@pytest.mark.parametrize("tear", ["half a header", "half a record", "a bad checksum"])
def test_a_torn_last_record_is_dropped_never_half_applied(tmp_path: Path, restart: Restart, tear: str) -> None:
    first = restart()
    fill(first)
    before = state(first)
    segment = _last_segment(tmp_path)
    good = segment.stat().st_size
    first.metering_ingest_usage_events([ev(f"late{i}", name="r0-calls", value=1, region="eu") for i in range(100)])
    crash(first)
    data = segment.read_bytes()
    last = data[good:]  # the batch's record, as a power cut mid-write might leave it
    torn = {"half a header": last[:5], "half a record": last[:len(last) // 2],
            "a bad checksum": last[:-1] + bytes([last[-1] ^ 0xFF])}[tear]
    segment.write_bytes(data[:good] + torn)

    second = restart()
    assert state(second) == before  # none of the 100 events, not some of them
    assert segment.stat().st_size == good  # cut off, so later records are not stranded behind it
    second.metering_ingest_usage_event(ev("after", name="r0-calls", value=7, region="eu"))
    after = state(second)
    crash(second)
    assert state(restart()) == after


def test_a_damaged_snapshot_stops_start_up_naming_the_file(tmp_path: Path, restart: Restart) -> None:
    first = restart()
    fill(first)
    first.sbt_shutdown()
    snapshot = tmp_path / "memory" / "metering.npz"
    data = bytearray(snapshot.read_bytes())
    data[len(data) // 3] ^= 0xFF  # one flipped byte inside an array: the zip's CRC32 catches it
    snapshot.write_bytes(bytes(data))
    with pytest.raises(StartupError, match=f"snapshot {snapshot} cannot be read"):
        restart()
    snapshot.write_bytes(bytes(data[:len(data) // 2]))  # truncated
    with pytest.raises(StartupError, match=f"snapshot {snapshot} cannot be read"):
        restart()
    assert snapshot.stat().st_size == len(data) // 2  # left for the operator, never overwritten


def test_a_damaged_segment_before_the_last_stops_start_up_naming_it(tmp_path: Path, restart: Restart) -> None:
    first = restart(compact_log_bytes=0)
    fill(first, 0)
    crash(first)
    second = restart(compact_log_bytes=0)
    second.durable.log.rotate()  # type: ignore[union-attr]  # a second segment follows the first
    fill(second, 1)
    crash(second)
    segment = tmp_path / "memory" / "metering.00000001.wal"
    data = bytearray(segment.read_bytes())
    data[100] ^= 0xFF
    segment.write_bytes(bytes(data))
    with pytest.raises(StartupError, match=f"write-ahead log {segment} cannot be replayed"):
        restart()


def test_compaction_under_concurrent_ingest_loses_nothing(tmp_path: Path, restart: Restart) -> None:
    provider = restart(compact_log_bytes=4096, pending_flush_events=16)
    meter = provider.metering_create_meter(MeterCreate(name="calls", event_name="calls", value_property="value"))
    errors: list[BaseException] = []
    per_thread = 400

    def single(k: int) -> None:
        try:
            for i in range(per_thread):
                provider.metering_ingest_usage_event(ev(f"s{k}-{i}", f"t{k}", value=1))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    def batches(k: int) -> None:
        try:
            for lo in range(0, per_thread, 40):
                provider.metering_ingest_usage_events([ev(f"b{k}-{i}", f"t{k}", value=2) for i in range(lo, lo + 40)])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=single, args=(k,)) for k in range(2)]
    threads += [threading.Thread(target=batches, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    compactions = 0
    while any(t.is_alive() for t in threads):
        provider.save_snapshot()  # besides the background compactor's own rounds
        compactions += 1
    for t in threads:
        t.join()
    assert not errors and compactions > 0
    before = state(provider)
    assert before["events"] == 4 * per_thread
    crash(provider)
    after = restart()
    assert state(after) == before
    assert [(r.tenant_id, r.value) for r in after.metering_fetch_usage(meter.meter_id, UsageQuery(
        from_=NOW - timedelta(days=1), to=NOW)).items] == [("t0", 3.0 * per_thread), ("t1", 3.0 * per_thread)]


def test_a_failed_write_refuses_every_later_change_and_loses_nothing_acknowledged(
        tmp_path: Path, restart: Restart, monkeypatch: pytest.MonkeyPatch) -> None:
    first = restart()
    fill(first)
    before = state(first)

    def disk_full(*_: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("sbt_memory_metering._wal.os.writev", disk_full)
    with pytest.raises(ProviderError, match="No space left on device"):
        first.metering_ingest_usage_events([ev("lost", name="r0-calls", value=1, region="eu")])
    monkeypatch.undo()  # the disk has room again, but the log stays failed until a restart
    with pytest.raises(ProviderError, match="no change is accepted until the control plane restarts"):
        first.metering_create_meter(MeterCreate(name="late", event_name="late"))
    assert first.metering_fetch_all_meters(100, None).items  # reads go on
    crash(first)
    assert state(restart()) == before


def test_fsync_batch_syncs_before_returning_and_interval_in_the_background(
        restart: Restart, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = _wal._sync
    monkeypatch.setattr(_wal, "_sync", lambda fd: (synced.append(fd), real(fd))[1])
    batch = restart()
    batch.metering_create_meter(MeterCreate(name="calls", event_name="calls"))
    assert synced  # before the call returned
    batch.sbt_shutdown()
    synced.clear()
    interval = restart(fsync="interval", fsync_interval_ms=10)
    interval.metering_create_meter(MeterCreate(name="more", event_name="more"))
    wait_for(lambda: synced, "the background fsync of fsync = interval")


def test_the_embedded_default_is_durable(tmp_path: Path) -> None:
    """What `sbt serve` builds with no config file: memory metering logs into <state_dir>/memory."""
    catalog = discover(entry_points=False, builtins=False, extra={"memory": MemoryMetering})
    config = load_config(catalog, raw={"state_dir": str(tmp_path), "providers": {"metering": {"type": "memory"}}})
    providers = build_providers(catalog, config)
    providers.startup()
    facade = providers.metering
    assert facade is not None
    meter = facade.create_meter(MeterCreate(name="calls", event_name="calls"))
    providers.shutdown()
    assert (tmp_path / "memory" / "metering.npz").exists()
    again = build_providers(catalog, config)
    again.startup()
    assert again.metering is not None and again.metering.fetch_all_meters().items == [meter]
    again.shutdown()


def test_a_second_provider_on_the_same_files_is_refused(tmp_path: Path, restart: Restart) -> None:
    first = restart()
    with pytest.raises(StartupError, match="metering.lock is locked by another process"):
        restart()
    first.sbt_shutdown()  # releases the lock (as the kernel does when a process dies)
    restart().sbt_shutdown()


def test_in_memory_mode_keeps_nothing(tmp_path: Path, restart: Restart) -> None:
    provider = restart(durable=False)
    fill(provider)
    assert provider.durable is None
    provider.sbt_shutdown()
    assert restart().stats()["events"] == 0


def _acknowledged(lines: list[str]) -> tuple[set[str], set[str]]:
    events: set[str] = set()
    cancelled: set[str] = set()
    for line in lines:
        if not line.endswith("\n"):  # cut by the kill: the call's return was not fully reported
            continue
        words = line.split()
        if words[:2] == ["ack", "events"]:
            events.update(words[2:])
        elif words[:2] == ["ack", "cancel"]:
            cancelled.add(words[2])
    return events, cancelled


@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_mid_ingest_keeps_everything_acknowledged(tmp_path: Path, restart: Restart, seed: int) -> None:
    """A real process, killed at a seeded random point twice over the same state directory."""
    rng = random.Random(seed)
    acked: set[str] = set()
    cancelled: set[str] = set()
    for _ in range(2):
        kill_after = rng.randrange(5, 60)  # acknowledgements before the kill
        child = subprocess.Popen([sys.executable, str(HERE / "_crash_child.py"), str(tmp_path)],
                                 stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONHASHSEED": str(seed)})
        assert child.stdout is not None
        lines = []
        for line in child.stdout:
            lines.append(line)
            if len(lines) >= kill_after:
                break
        child.send_signal(signal.SIGKILL)
        lines += child.stdout.readlines()
        child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL, "".join(lines[-5:])
        events, cut = _acknowledged(lines)
        acked |= events
        cancelled |= cut

    provider = restart()
    provider.engine.clock = lambda: int(datetime.now(UTC).timestamp() * 1000)
    meter = provider.metering_fetch_all_meters(10, None).items[0]
    provider.flush()
    stored = provider.stats()["events"]
    rows = provider.metering_fetch_usage(meter.meter_id, UsageQuery(
        from_=datetime.now(UTC) - timedelta(days=1), to=datetime.now(UTC) + timedelta(minutes=1))).items
    counted = sum(r.value for r in rows)
    # Every acknowledged event is stored once (unacknowledged ones may be there too: at most the calls in
    # flight at each kill), and every acknowledged cancellation holds.
    assert stored >= len(acked)
    assert stored - len(acked) <= 2 * 50
    assert provider.metering_cancel_usage_events(CancelUsageRequest(identifiers=tuple(cancelled))).cancelled == 0
    assert counted == stored - provider.stats()["cancelled"]
    # Redelivering everything acknowledged changes nothing: each identifier is stored exactly once.
    again = provider.metering_ingest_usage_events([UsageEvent(
        tenant_id="t0", event_name="calls", identifier=x, timestamp=datetime.now(UTC) - timedelta(minutes=1),
        properties={"value": 1}) for x in sorted(acked)])
    assert again == [None] * len(acked) and provider.stats()["events"] == stored
