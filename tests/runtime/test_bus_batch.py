"""Batch delivery: when the selected provider implements a hook's batch form, the bus hands it the
first attempts queued together in one call, with the same per-event outcomes as one at a time."""

from __future__ import annotations

from typing import Any

from sbt_core import BadRequestError, Provider, hookimpl
from sbt_core.models import Page, UsageEvent
from sbt_core.testing import Harness
from sbt_core.testing.events import ingest_usage


class BatchMetering(Provider):
    """Records single and batch calls; refuses events whose value is negative; ``fail_batch`` makes the
    whole batch call raise."""

    fail_batch = False

    def __init__(self, settings: Any, context: Any) -> None:
        super().__init__(settings, context)
        self.single: list[str] = []
        self.batches: list[list[str]] = []
        self.recorded: dict[str, float] = {}

    def _record(self, usage: UsageEvent) -> str | None:
        if usage.properties["value"] < 0:
            return f"value of {usage.identifier} must not be negative"
        self.recorded.setdefault(usage.identifier, usage.properties["value"])  # dedup by identifier
        return None

    @hookimpl
    def metering_ingest_usage_event(self, usage_event: UsageEvent) -> None:
        self.single.append(usage_event.identifier)
        refusal = self._record(usage_event)
        if refusal:
            raise BadRequestError(refusal)

    @hookimpl
    def metering_ingest_usage_events(self, usage_events: list[UsageEvent]) -> list[str | None]:
        self.batches.append([u.identifier for u in usage_events])
        if self.fail_batch:
            for usage in usage_events[:2]:  # part of the batch was recorded before it failed
                self._record(usage)
            raise RuntimeError("backend hiccup")
        return [self._record(u) for u in usage_events]

    @hookimpl
    def metering_create_meter(self, meter: Any) -> Any:
        raise NotImplementedError

    @hookimpl
    def metering_fetch_meter(self, meter_id: str) -> Any:
        raise NotImplementedError

    @hookimpl
    def metering_fetch_all_meters(self, limit: int, next_token: str | None) -> Page[Any]:
        return Page()

    @hookimpl
    def metering_fetch_usage(self, meter_id: str, query: Any) -> Page[Any]:
        return Page()


def _plane(sbt_control_plane: Any, *, fail_batch: bool = False) -> tuple[Harness, BatchMetering]:
    harness = sbt_control_plane(plugins={"batchy": BatchMetering},
                                config={"providers": {"metering": {"type": "batchy"}}}, start=False, tenants=False)
    provider: BatchMetering = harness.provider("metering")
    provider.fail_batch = fail_batch
    return harness, provider


def test_a_burst_goes_through_the_batch_form_with_per_event_outcomes(sbt_control_plane: Any) -> None:
    harness, provider = _plane(sbt_control_plane)
    events = [ingest_usage("t1", "calls", v, event_id=f"e{i}") for i, v in enumerate([1, 2, -1, 4])]
    events.append(ingest_usage("t1", "calls", 9, event_id="e4", properties={"value": 9}))
    broken = ingest_usage("t1", "calls", 1, event_id="no-tenant")
    broken = type(broken)(detail_type=broken.detail_type, source=broken.source, detail={"eventName": "calls"},
                          id="no-tenant")
    harness.put(*events, broken)  # queued before the worker starts: one burst
    harness.control_plane.open()
    harness.settle()
    assert provider.batches == [["e0", "e1", "e2", "e3", "e4"]]  # the malformed event never reaches the hook
    assert provider.single == []
    states = {e.id: harness.events.deliveries(e)["metering_ingest_usage_event"] for e in [*events, broken]}
    assert {k: d.state for k, d in states.items()} == {
        "e0": "delivered", "e1": "delivered", "e2": "dead_lettered", "e3": "delivered", "e4": "delivered",
        "no-tenant": "dead_lettered"}
    assert states["e2"].attempts == 1 and "must not be negative" in (states["e2"].last_error or "")
    assert "tenantId is required" in (states["no-tenant"].last_error or "")
    assert provider.recorded == {"e0": 1, "e1": 2, "e3": 4, "e4": 9}


def test_a_failed_batch_falls_back_to_one_at_a_time_without_counting_twice(sbt_control_plane: Any) -> None:
    harness, provider = _plane(sbt_control_plane, fail_batch=True)
    events = [ingest_usage("t1", "calls", v, event_id=f"e{i}") for i, v in enumerate([1, 2, 3])]
    harness.put(*events)
    harness.control_plane.open()
    harness.settle()
    assert provider.batches == [["e0", "e1", "e2"]]
    assert provider.single == ["e0", "e1", "e2"]
    assert provider.recorded == {"e0": 1, "e1": 2, "e2": 3}
    assert {harness.events.states(e)["metering_ingest_usage_event"] for e in events} == {"delivered"}


def test_a_lone_event_and_retries_use_the_single_hook(sbt_control_plane: Any) -> None:
    harness, provider = _plane(sbt_control_plane)
    harness.control_plane.open()
    harness.put(ingest_usage("t1", "calls", 5, event_id="alone"))
    harness.settle()
    assert provider.single == ["alone"] and provider.batches == []
