"""Plugin loading and selection, settings validation, snapshots, thread safety."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sbt_memory_metering import MemoryMetering, MemoryMeteringSettings

from sbt_core.config import load_config
from sbt_core.errors import ConfigError
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

NOW = datetime(2026, 4, 2, 9, 30, tzinfo=UTC)  # the clock of conftest.py
NOW_MS = int(NOW.timestamp() * 1000)


def usage(provider: MemoryMetering, meter_id: str, **query: Any) -> list[tuple[Any, ...]]:
    page = provider.metering_fetch_usage(meter_id, UsageQuery(from_=NOW - timedelta(days=30), to=NOW, limit=1000,
                                                              **query))
    return [(r.tenant_id, r.window_start, r.value, r.groups) for r in page.items]


def test_selected_through_config_and_facade(tmp_path: Path) -> None:
    catalog = discover(entry_points=False, builtins=False, extra={"memory": MemoryMetering})
    assert catalog.get("memory").interfaces == ("metering",)  # type: ignore[union-attr]
    config = load_config(catalog, raw={"providers": {"metering": {"type": "memory", "dedup_window_days": 3,
                                                                  "unknown_event": "drop"}}})
    providers = build_providers(catalog, config, state_dir=tmp_path)
    facade = providers.metering
    assert facade is not None and facade.provider_type == "memory"
    meter = facade.create_meter(MeterCreate(name="calls", event_name="calls"))
    facade.ingest_usage_event(UsageEvent(tenant_id="t1", event_name="calls", identifier="a",
                                         timestamp=datetime.now(UTC), properties={"value": 2}))
    facade.ingest_usage_event(UsageEvent(tenant_id="t1", event_name="ghost", identifier="b",
                                         timestamp=datetime.now(UTC), properties={"value": 2}))
    page = facade.fetch_usage(meter.meter_id, UsageQuery(from_=datetime.now(UTC) - timedelta(days=1),
                                                         to=datetime.now(UTC) + timedelta(minutes=1)))
    assert [(r.tenant_id, r.value) for r in page.items] == [("t1", 2.0)]
    assert facade.fetch_all_meters().items == [meter]


@pytest.mark.parametrize(("table", "problem"), [
    ({"unknown_event": "ignore"}, "providers.metering.unknown_event: must be one of 'reject', 'drop' (got 'ignore')"),
    ({"unknown_tenant": "maybe"}, "providers.metering.unknown_tenant: must be one of 'accept', 'reject' (got 'maybe')"),
    ({"dedup_window_days": 0}, "providers.metering.dedup_window_days: must be > 0 (got 0.0)"),
    ({"horizon_future_seconds": -1}, "providers.metering.horizon_future_seconds: must be >= 0 (got -1.0)"),
    ({"snapshot": True}, "snapshot"),
    ({"fsync": "always"}, "providers.metering.fsync: must be one of 'batch', 'interval', 'off' (got 'always')"),
])
def test_settings_are_validated(table: dict[str, Any], problem: str) -> None:
    catalog = discover(entry_points=False, builtins=False, extra={"memory": MemoryMetering})
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_config(catalog, raw={"providers": {"metering": {"type": "memory", **table}}})


def test_every_refused_setting_is_reported_at_once_under_its_dotted_key() -> None:
    catalog = discover(entry_points=False, builtins=False, extra={"memory": MemoryMetering})
    with pytest.raises(ConfigError) as info:
        load_config(catalog, raw={"providers": {"metering": {"type": "memory", "horizon_past_days": 0,
                                                             "dedup_window_days": 0, "fsync": "always"}}})
    assert info.value.problems == (
        "providers.metering.horizon_past_days: must be > 0 (got 0.0)",
        "providers.metering.dedup_window_days: must be > 0 (got 0.0)",
        "providers.metering.fsync: must be one of 'batch', 'interval', 'off' (got 'always')",
    )


def _fill(provider: MemoryMetering) -> tuple[str, str]:
    sums = provider.metering_create_meter(MeterCreate(name="calls", event_name="calls", group_by=("region", "plan")))
    uniq = provider.metering_create_meter(MeterCreate(name="users", event_name="users",
                                                      aggregation=Aggregation.UNIQUE_COUNT, value_property="user"))
    provider.metering_update_meter(uniq.meter_id, MeterUpdate(description="distinct users"))
    provider.metering_create_customer(Event.create("onboardingRequest", {"tenantId": "t1"}))
    provider.metering_create_customer(Event.create("onboardingRequest", {"tenantId": "t2"}))
    provider.metering_delete_customer(Event.create("offboardingRequest", {"tenantId": "t2"}))
    for i in range(40):
        provider.metering_ingest_usage_event(UsageEvent(
            tenant_id=f"t{i % 3}", event_name="calls", identifier=f"c{i}", timestamp=NOW - timedelta(hours=i),
            properties={"value": i, "region": ["eu", "us"][i % 2], "plan": "pro" if i % 5 else None}))
        provider.metering_ingest_usage_event(UsageEvent(
            tenant_id="t1", event_name="users", identifier=f"u{i}", timestamp=NOW - timedelta(hours=i),
            properties={"user": f"user-{i % 7}"}))
    provider.metering_cancel_usage_events(CancelUsageRequest(identifiers=("c3", "c4", "u1")))
    return sums.meter_id, uniq.meter_id


def test_snapshot_round_trip(tmp_path: Path, new_provider: Any) -> None:
    first = new_provider()
    first.sbt_startup()
    sums, uniq = _fill(first)
    before = [usage(first, sums, window_size=WindowSize.HOUR, group_by=("region", "plan")), usage(first, uniq)]
    first.sbt_shutdown()
    assert (tmp_path / "memory" / "metering.npz").exists()

    second = new_provider(unknown_tenant="reject")
    second.sbt_startup()
    assert [usage(second, sums, window_size=WindowSize.HOUR, group_by=("region", "plan")),
            usage(second, uniq)] == before
    assert second.metering_fetch_all_meters(10, None).items == first.metering_fetch_all_meters(10, None).items
    assert second.stats()["cancelled"] == 3
    # Dedup memory survived: a redelivered event is ignored; cancelled identifiers stay cancelled.
    second.metering_ingest_usage_event(UsageEvent(tenant_id="t1", event_name="calls", identifier="c1",
                                                  timestamp=NOW, properties={"value": 1000}))
    assert usage(second, sums, window_size=WindowSize.HOUR, group_by=("region", "plan")) == before[0]
    assert second.metering_cancel_usage_events(CancelUsageRequest(identifiers=("c3",))).cancelled == 0
    # Customers survived: t2 is offboarded.
    with pytest.raises(Exception, match="offboarded"):
        second.metering_ingest_usage_event(UsageEvent(tenant_id="t2", event_name="calls", identifier="new",
                                                      timestamp=NOW, properties={"value": 1}))
    # New meters after a load do not collide with loaded ones in fetch-all order.
    late = second.metering_create_meter(MeterCreate(name="late", event_name="late"))
    assert [m.meter_id for m in second.metering_fetch_all_meters(10, None).items][-1] == late.meter_id
    second.sbt_shutdown()


def test_in_memory_mode_reads_and_writes_nothing(tmp_path: Path, new_provider: Any) -> None:
    provider = new_provider(durable=False)
    provider.sbt_startup()
    _fill(provider)
    provider.sbt_shutdown()
    assert not (tmp_path / "memory").exists() or not any((tmp_path / "memory").iterdir())
    fresh = new_provider()
    fresh.sbt_startup()  # no files: starts empty
    assert fresh.stats()["events"] == 0
    fresh.sbt_shutdown()


def test_snapshot_path_setting(tmp_path: Path, new_provider: Any) -> None:
    target = tmp_path / "elsewhere" / "usage.npz"
    provider = new_provider(snapshot_path=target)
    provider.sbt_startup()
    _fill(provider)
    provider.sbt_shutdown()
    assert target.exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["usage.00000002.wal", "usage.lock", "usage.npz"]
    with pytest.raises(ValueError, match="not a memory-metering snapshot"):
        bad = tmp_path / "bad.npz"
        np.savez(bad, header=np.frombuffer(b'{"format": 99}', dtype=np.uint8))
        new_provider().load_snapshot(bad)


def test_concurrent_ingest_and_queries_are_exact(new_provider: Any) -> None:
    provider = new_provider(pending_flush_events=64)
    meter = provider.metering_create_meter(MeterCreate(name="calls", event_name="calls", group_by=("region",)))
    errors: list[BaseException] = []
    per_thread = 1500

    def single(k: int) -> None:
        try:
            for i in range(per_thread):
                provider.metering_ingest_usage_event(UsageEvent(
                    tenant_id=f"t{k}", event_name="calls", identifier=f"s{k}-{i}",
                    timestamp=NOW - timedelta(seconds=i + 1), properties={"value": 1, "region": "eu"}))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    def columns(k: int) -> None:
        try:
            for lo in range(0, per_thread, 100):
                provider.ingest_columns("calls", [f"t{k}"] * 100, [NOW_MS - j - 1 for j in range(lo, lo + 100)],
                                        [2.0] * 100, [f"b{k}-{j}" for j in range(lo, lo + 100)],
                                        {"region": ["us"] * 100})
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(60):
                for row in usage(provider, meter.meter_id):
                    assert row[2] >= 0
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=single, args=(k,)) for k in range(3)]
    threads += [threading.Thread(target=columns, args=(k,)) for k in range(3)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert usage(provider, meter.meter_id) == [(f"t{k}", NOW - timedelta(days=30), 3.0 * per_thread, {})
                                               for k in range(3)]


def test_settings_defaults_mirror_stripe_and_openmeter() -> None:
    s = MemoryMeteringSettings()
    assert (s.horizon_past_days, s.horizon_future_seconds, s.dedup_window_days) == (35, 300, 32)
    assert (s.unknown_event, s.unknown_tenant) == ("reject", "accept")
    assert (s.durable, s.fsync) == (True, "batch")
    assert MeterStatus.INACTIVE.value == "inactive"
