"""A process that ingests until it is killed, printing what each returned call acknowledged.

``python _crash_child.py STATE_DIR`` starts a durable ``memory`` provider on STATE_DIR, creates meter
``calls`` (SUM of ``value``) unless it exists, and loops: a batch of 50 events through the batch hook,
then 5 through the one-at-a-time hook, then a cancellation of one earlier batch event every tenth
round. After each call returns it prints ``ack <kind> <identifiers...>`` and flushes, so the parent
knows exactly what was acknowledged when it sends SIGKILL.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sbt_memory_metering import MemoryMetering, MemoryMeteringSettings

from sbt_core import ProviderContext
from sbt_core.models import CancelUsageRequest, MeterCreate, UsageEvent

NOW = datetime.now(UTC)


def _event(identifier: str, tenant: str) -> UsageEvent:
    return UsageEvent(tenant_id=tenant, event_name="calls", identifier=identifier, timestamp=NOW - timedelta(minutes=1),
                      properties={"value": 1})


def main(state_dir: Path) -> None:
    provider = MemoryMetering(MemoryMeteringSettings(compact_log_bytes=64 << 10),
                              ProviderContext("memory", "metering", state_dir))
    provider.sbt_startup()
    if not provider.metering_fetch_all_meters(10, None).items:
        meter = provider.metering_create_meter(MeterCreate(name="calls", event_name="calls"))
        print(f"ack meter {meter.meter_id}", flush=True)
    for round_ in range(1_000_000):
        batch = [f"b{round_}-{i}" for i in range(50)]
        outcomes = provider.metering_ingest_usage_events([_event(x, f"t{i % 7}") for i, x in enumerate(batch)])
        assert outcomes == [None] * 50, outcomes
        print("ack events " + " ".join(batch), flush=True)
        singles = [f"s{round_}-{i}" for i in range(5)]
        for i, x in enumerate(singles):
            provider.metering_ingest_usage_event(_event(x, f"t{i}"))
        print("ack events " + " ".join(singles), flush=True)
        if round_ % 10 == 9:
            victim = f"b{round_ - 5}-3"
            provider.metering_cancel_usage_events(CancelUsageRequest(identifiers=(victim,)))
            print(f"ack cancel {victim}", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
