"""The scheduler on an injected clock: firing, no overlap, retries through the bus, manual runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sbt_core.bindings import Binding
from sbt_core.config import EventsConfig
from sbt_core.errors import NotFoundError, ProviderError, SbtError
from sbt_core.models import ScheduleRun
from sbt_core.runtime.bus import Bus
from sbt_core.runtime.scheduler import SCHEDULE_DETAIL_TYPE, Scheduler
from sbt_core.triggers import parse_schedule

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
JOIN = 10.0


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def binding(expression: str, hook: str = "billing_put_usage") -> Binding:
    return Binding(hook, "billing", "test", parse_schedule(expression))


@pytest.fixture
def bus() -> Iterator[Bus]:
    b = Bus(EventsConfig(max_attempts=2, backoff_base_seconds=0, backoff_max_seconds=0))
    b.start()
    yield b
    b.stop(timeout=JOIN)


def recorder() -> tuple[list[tuple[str, ScheduleRun]], Any]:
    runs: list[tuple[str, ScheduleRun]] = []

    def call(hook: str, *, run: ScheduleRun) -> None:
        runs.append((hook, run))

    return runs, call


def test_a_rate_schedule_fires_when_due(bus: Bus) -> None:
    clock = Clock()
    runs, call = recorder()
    scheduler = Scheduler(bus, [binding("rate(5 minutes)")], call, clock=clock)
    assert scheduler.tick(T0 + timedelta(minutes=4)) == []
    [event] = scheduler.tick(T0 + timedelta(minutes=5))
    assert event.detail_type == SCHEDULE_DETAIL_TYPE and event.resources == ["schedule/billing_put_usage"]
    assert bus.join(JOIN)
    assert runs == [("billing_put_usage",
                     ScheduleRun("billing_put_usage", "rate(5 minutes)", T0 + timedelta(minutes=5)))]
    assert scheduler.next_wake() == T0 + timedelta(minutes=10)
    record = bus.get(event.id)
    assert record is not None
    assert [(d.target, d.state) for d in record.deliveries] == [("billing_put_usage", "delivered")]


def test_missed_slots_collapse_into_one_run(bus: Bus) -> None:
    runs, call = recorder()
    scheduler = Scheduler(bus, [binding("rate(1 minute)")], call, clock=Clock())
    assert len(scheduler.tick(T0 + timedelta(minutes=10, seconds=30))) == 1
    assert bus.join(JOIN)
    assert [r.scheduled_time for _, r in runs] == [T0 + timedelta(minutes=10)]
    assert scheduler.next_wake() == T0 + timedelta(minutes=11)


def test_a_cron_schedule_fires_at_its_times(bus: Bus) -> None:
    runs, call = recorder()
    scheduler = Scheduler(bus, [binding("cron(0 13 * * ? *)")], call, clock=Clock())
    assert scheduler.next_wake() == T0 + timedelta(hours=1)
    assert len(scheduler.tick(T0 + timedelta(hours=1))) == 1
    assert bus.join(JOIN)
    assert runs[0][1].scheduled_time == datetime(2026, 1, 1, 13, 0, tzinfo=UTC)
    assert scheduler.next_wake() == datetime(2026, 1, 2, 13, 0, tzinfo=UTC)


def test_no_overlapping_runs_of_one_hook(bus: Bus) -> None:
    release = threading.Event()
    started = threading.Event()
    calls: list[ScheduleRun] = []

    def call(hook: str, *, run: ScheduleRun) -> None:
        calls.append(run)
        started.set()
        release.wait(JOIN)

    scheduler = Scheduler(bus, [binding("rate(1 minute)")], call, clock=Clock())
    assert len(scheduler.tick(T0 + timedelta(minutes=1))) == 1
    assert started.wait(JOIN)
    assert scheduler.tick(T0 + timedelta(minutes=2)) == []  # the first run is still going: skipped
    assert scheduler.schedules[0].skipped == 1
    release.set()
    assert bus.join(JOIN)
    assert len(calls) == 1
    assert len(scheduler.tick(T0 + timedelta(minutes=3))) == 1
    assert bus.join(JOIN)
    assert len(calls) == 2


def test_a_failed_run_is_retried_then_dead_lettered(bus: Bus) -> None:
    calls: list[ScheduleRun] = []

    def call(hook: str, *, run: ScheduleRun) -> None:
        calls.append(run)
        raise ProviderError("push failed")

    scheduler = Scheduler(bus, [binding("rate(1 hour)")], call, clock=Clock())
    [event] = scheduler.tick(T0 + timedelta(hours=1))
    assert bus.join(JOIN)
    assert len(calls) == 2  # max_attempts = 2
    [letter] = bus.dead_letters()
    assert (letter.event.id, letter.target, letter.last_error) == (event.id, "billing_put_usage", "push failed")


def test_run_now_fires_a_manual_run(bus: Bus) -> None:
    clock = Clock(T0 + timedelta(seconds=7))
    runs, call = recorder()
    scheduler = Scheduler(bus, [binding("rate(1 day)")], call, clock=clock)
    scheduler.run_now("billing_put_usage")
    assert bus.join(JOIN)
    [(hook, run)] = runs
    assert run.manual and run.scheduled_time == clock.now and run.expression == "rate(1 day)"
    with pytest.raises(NotFoundError, match="scheduled hooks: billing_put_usage"):
        scheduler.run_now("metering_nothing")


def test_the_timer_thread_fires_due_schedules(bus: Bus) -> None:
    fired = threading.Event()
    times = iter([T0, T0])  # construction and start read T0; every later reading is an hour on

    def clock() -> datetime:
        return next(times, T0 + timedelta(hours=1))

    def call(hook: str, *, run: ScheduleRun) -> None:
        fired.set()

    scheduler = Scheduler(bus, [binding("rate(5 minutes)")], call, clock=clock)
    scheduler.start()
    try:
        assert fired.wait(JOIN)
    finally:
        scheduler.stop()


def test_nothing_fires_once_the_bus_has_stopped() -> None:
    bus = Bus()
    runs, call = recorder()
    scheduler = Scheduler(bus, [binding("rate(1 minute)")], call, clock=Clock())
    bus.stop()
    assert scheduler.tick(T0 + timedelta(minutes=1)) == []
    assert scheduler.schedules[0].fired == 0
    with pytest.raises(SbtError, match="not run"):
        scheduler.run_now("billing_put_usage")
