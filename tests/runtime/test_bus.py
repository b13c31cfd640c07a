"""The event bus on its own: routing, retries, dead letters and replay, dedup, isolation, drain."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from sbt_core.config import EventsConfig
from sbt_core.errors import BadRequestError, ProviderError
from sbt_core.models import APPLICATION_PLANE_SOURCE, CONTROL_PLANE_SOURCE, Event
from sbt_core.runtime.bus import Bus, InProcessTransport, Message
from sbt_core.triggers import EventTrigger

ONBOARDING = EventTrigger("onboardingRequest", CONTROL_PLANE_SOURCE)
#: No waiting between attempts: tests never sleep on backoff.
FAST = EventsConfig(max_attempts=3, backoff_base_seconds=0, backoff_max_seconds=0)
JOIN = 10.0  # a hang guard only: join returns as soon as the bus is idle


@pytest.fixture
def bus() -> Iterator[Bus]:
    b = Bus(FAST)
    yield b
    b.stop(timeout=JOIN)


def onboarding(event_id: str | None = None, **detail: object) -> Event:
    event = Event.create("onboardingRequest", {"tenantId": "t1", **detail})
    return Event(event.detail_type, event.source, event.detail, id=event_id) if event_id else event


def test_routes_by_detail_type_and_source_to_every_target(bus: Bus) -> None:
    got: dict[str, list[str]] = {"a": [], "b": [], "other": []}
    bus.add_target("a", ONBOARDING, lambda e: got["a"].append(e.id))
    bus.subscribe("b", ONBOARDING, lambda e: got["b"].append(e.id))
    bus.add_target("other", EventTrigger("onboardingRequest", APPLICATION_PLANE_SOURCE),
                   lambda e: got["other"].append(e.id))
    bus.start()
    event = onboarding()
    [result] = bus.put_events([event])
    assert result.event_id == event.id and result.error_code is None
    assert bus.join(JOIN)
    assert got == {"a": [event.id], "b": [event.id], "other": []}
    record = bus.get(event.id)
    assert record is not None
    assert {(d.target, d.state, d.attempts) for d in record.deliveries} == {("a", "delivered", 1),
                                                                            ("b", "delivered", 1)}


def test_sbt_aws_prefixed_names_are_routed_like_bare_names(bus: Bus) -> None:
    got: list[str] = []
    bus.add_target("a", EventTrigger("sbt_aws_onboardingRequest", CONTROL_PLANE_SOURCE),
                   lambda e: got.append(e.detail_type))
    bus.start()
    bus.put_events([Event("sbt_aws_onboardingRequest", CONTROL_PLANE_SOURCE, {}), Event.create("onboardingRequest")])
    assert bus.join(JOIN)
    assert sorted(got) == ["onboardingRequest", "sbt_aws_onboardingRequest"]


def test_publish_renames_per_config_naming() -> None:
    bus = Bus(EventsConfig(naming="sbt_aws"))
    seen: list[str] = []
    bus.add_target("a", ONBOARDING, lambda e: seen.append(e.detail_type))
    bus.start()
    published = bus.publish(Event.create("onboardingRequest"))
    custom = bus.publish(Event.create("myCustomEvent"))
    assert bus.join(JOIN)
    bus.stop()
    assert published.detail_type == "sbt_aws_onboardingRequest" and seen == ["sbt_aws_onboardingRequest"]
    assert custom.detail_type == "myCustomEvent"  # custom events are never prefixed (sbt-aws)


def test_an_event_matching_nothing_is_accepted_and_logged(bus: Bus) -> None:
    bus.start()
    event = Event.create("somethingElse", {"x": 1})
    assert bus.put_events([event])[0].event_id == event.id
    record = bus.get(event.id)
    assert record is not None and record.deliveries == () and record.event == event
    assert [r.event.id for r in bus.recent()] == [event.id]


def test_retries_then_dead_letter_then_replay_once_fixed(bus: Bus) -> None:
    calls = {"a": 0, "b": 0}
    broken = threading.Event()
    broken.set()

    def flaky(event: Event) -> None:
        calls["a"] += 1
        if broken.is_set():
            raise ProviderError("backend down")

    bus.add_target("a", ONBOARDING, flaky)
    bus.add_target("b", ONBOARDING, lambda e: calls.__setitem__("b", calls["b"] + 1))
    bus.start()
    event = onboarding()
    bus.put_events([event])
    assert bus.join(JOIN)
    assert calls == {"a": 3, "b": 1}  # max_attempts = 3; the healthy target is delivered once
    [letter] = bus.dead_letters()
    assert (letter.event.id, letter.target, letter.attempts, letter.last_error) == (event.id, "a", 3, "backend down")
    record = bus.get(event.id)
    assert record is not None
    states = {d.target: (d.state, d.attempts, d.last_error) for d in record.deliveries}
    assert states == {"a": ("dead_lettered", 3, "backend down"), "b": ("delivered", 1, None)}

    broken.clear()  # the provider is fixed
    replayed = bus.replay(event_id=event.id)
    assert [(d.event.id, d.target) for d in replayed] == [(event.id, "a")]
    assert bus.join(JOIN)
    assert calls == {"a": 4, "b": 1}  # re-delivered to the failed target only, despite dedup
    assert bus.dead_letters() == []
    record = bus.get(event.id)
    assert record is not None and {d.target: d.state for d in record.deliveries} == {"a": "delivered", "b": "delivered"}


def test_bad_request_dead_letters_at_once_with_its_message(bus: Bus) -> None:
    calls: list[int] = []

    def reject(event: Event) -> None:
        calls.append(1)
        raise BadRequestError("detail lacks tenantId")

    bus.add_target("a", ONBOARDING, reject)
    bus.start()
    bus.put_events([onboarding()])
    assert bus.join(JOIN)
    assert len(calls) == 1
    [letter] = bus.dead_letters()
    assert letter.attempts == 1 and letter.last_error == "detail lacks tenantId"


def test_unexpected_exceptions_are_retried(bus: Bus) -> None:
    calls: list[int] = []

    def boom(event: Event) -> None:
        calls.append(1)
        if len(calls) < 2:
            raise RuntimeError("transient")

    bus.add_target("a", ONBOARDING, boom)
    bus.start()
    event = onboarding()
    bus.put_events([event])
    assert bus.join(JOIN)
    record = bus.get(event.id)
    assert record is not None
    [delivery] = record.deliveries
    assert (delivery.state, delivery.attempts, delivery.last_error) == ("delivered", 2, "RuntimeError: transient")
    assert bus.dead_letters() == []


def test_replay_of_an_unknown_dead_letter_is_not_found(bus: Bus) -> None:
    from sbt_core.errors import NotFoundError

    with pytest.raises(NotFoundError):
        bus.replay(event_id="nope")
    assert bus.replay() == []


def test_duplicate_event_id_delivered_once_per_target(bus: Bus) -> None:
    got: dict[str, list[str]] = {"a": [], "b": []}
    bus.add_target("a", ONBOARDING, lambda e: got["a"].append(e.id))
    bus.add_target("b", ONBOARDING, lambda e: got["b"].append(e.id))
    bus.start()
    first = onboarding("evt-1")
    results = bus.put_events([first, onboarding("evt-1"), onboarding("evt-2")])
    bus.put_events([onboarding("evt-1")])
    assert [r.event_id for r in results] == ["evt-1", "evt-1", "evt-2"]
    assert bus.join(JOIN)
    assert sorted(got["a"]) == ["evt-1", "evt-2"] and sorted(got["b"]) == ["evt-1", "evt-2"]


def test_dedup_forgets_ids_after_the_window() -> None:
    now = [0.0]
    bus = Bus(EventsConfig(dedup_window_seconds=60), clock=lambda: now[0])
    got: list[str] = []
    bus.add_target("a", ONBOARDING, lambda e: got.append(e.id))
    bus.start()
    bus.put_events([onboarding("evt-1")])
    now[0] = 30.0
    bus.put_events([onboarding("evt-1")])  # inside the window: skipped
    now[0] = 61.0
    bus.put_events([onboarding("evt-1")])  # past it: delivered again
    assert bus.join(JOIN)
    bus.stop()
    assert got == ["evt-1", "evt-1"]


def test_dedup_remembers_at_most_max_ids_forgetting_the_oldest_first() -> None:
    bus = Bus(EventsConfig(dedup_max_ids=3))
    got: list[str] = []
    bus.add_target("a", ONBOARDING, lambda e: got.append(e.id))
    bus.start()
    for i in (1, 2, 3, 4, 4, 1):  # e1 is forgotten to make room; e4 is still remembered
        bus.put_events([onboarding(f"e{i}")])
    bus.put_events([onboarding("e5"), onboarding("e5")])  # a duplicate within one batch
    assert bus.join(JOIN)
    bus.stop()
    assert got == ["e1", "e2", "e3", "e4", "e1", "e5"]


def test_a_slow_target_does_not_stall_another(bus: Bus) -> None:
    release = threading.Event()
    fast_done = threading.Event()
    bus.add_target("slow", ONBOARDING, lambda e: release.wait(JOIN))
    bus.add_target("fast", ONBOARDING, lambda e: fast_done.set())
    bus.start()
    bus.put_events([onboarding(), onboarding()])
    # "fast" finishes both events while "slow" is still blocked inside its first handler call.
    assert fast_done.wait(JOIN)
    assert bus.busy("slow")
    assert not release.is_set()
    release.set()
    assert bus.join(JOIN)
    assert not bus.busy("slow")


def test_join_wakes_as_soon_as_the_last_event_finishes(bus: Bus) -> None:
    """join() waits on a condition the worker notifies only while someone is joining: a lost wake-up
    would leave join() asleep until its timeout."""
    release = threading.Event()
    bus.add_target("slow", ONBOARDING, lambda e: release.wait(JOIN))
    bus.start()
    bus.put_events([onboarding()])
    threading.Timer(0.05, release.set).start()  # finishes while join() is already waiting
    start = time.monotonic()
    assert bus.join(120)
    assert time.monotonic() - start < 60, "join() slept through the end of delivery (a lost wake-up)"


def test_put_events_never_blocks_on_handlers(bus: Bus) -> None:
    release = threading.Event()
    bus.add_target("slow", ONBOARDING, lambda e: release.wait(JOIN))
    bus.start()
    results = bus.put_events([onboarding() for _ in range(5)])  # returns while the handler is blocked
    assert all(r.event_id for r in results)
    assert not release.is_set()
    release.set()
    assert bus.join(JOIN)


def test_graceful_stop_drains_in_flight_events_and_then_refuses() -> None:
    bus = Bus(FAST)
    started = threading.Event()
    release = threading.Event()
    done: list[str] = []

    def handler(event: Event) -> None:
        started.set()
        release.wait(JOIN)
        done.append(event.id)

    bus.add_target("a", ONBOARDING, handler)
    bus.start()
    events = [onboarding() for _ in range(3)]
    bus.put_events(events)
    assert started.wait(JOIN)
    stopper = threading.Thread(target=bus.stop, kwargs={"timeout": JOIN})
    stopper.start()
    release.set()
    stopper.join(JOIN)
    assert done == [e.id for e in events]  # every queued event finished before stop returned
    [result] = bus.put_events([onboarding()])
    assert result.error_code == "BusClosed" and result.event_id is None


def test_stop_times_out_when_a_handler_hangs() -> None:
    bus = Bus(FAST)
    release = threading.Event()
    bus.add_target("a", ONBOARDING, lambda e: release.wait(JOIN))
    bus.start()
    bus.put_events([onboarding()])
    assert bus.stop(timeout=0) is False
    release.set()


def test_events_put_before_start_are_delivered_on_start() -> None:
    bus = Bus(FAST)
    got: list[str] = []
    bus.add_target("a", ONBOARDING, lambda e: got.append(e.id))
    event = onboarding()
    bus.put_events([event])
    bus.start()
    assert bus.join(JOIN)
    bus.stop()
    assert got == [event.id]


def test_event_log_is_bounded_newest_first() -> None:
    bus = Bus(EventsConfig(log_size=3))
    events = [onboarding(f"e{i}") for i in range(5)]
    bus.put_events(events)
    assert [r.event.id for r in bus.recent()] == ["e4", "e3", "e2"]
    assert [r.event.id for r in bus.recent(limit=1)] == ["e4"]
    assert bus.get("e0") is None
    bus.stop()


def test_event_log_forgets_by_first_acceptance_across_many_batches() -> None:
    bus = Bus(EventsConfig(log_size=4))
    for start in range(0, 40, 10):  # batches big enough for the uniform accept path, each trimming the last
        bus.put_events([onboarding(f"e{i}") for i in range(start, start + 10)])
    assert [r.event.id for r in bus.recent()] == ["e39", "e38", "e37", "e36"]
    bus.put_events([onboarding("e36")])  # a re-put keeps its first entry, and so its place in line
    bus.put_events([onboarding("e40")])
    assert [r.event.id for r in bus.recent()] == ["e40", "e39", "e38", "e37"]
    bus.stop()


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    bus = Bus(EventsConfig(backoff_base_seconds=1, backoff_max_seconds=4))
    for attempt, high in ((1, 1), (2, 2), (3, 4), (10, 4)):
        assert all(0 <= bus._backoff(attempt) <= high for _ in range(50))


def test_in_process_transport_delays_retries() -> None:
    now = [0.0]
    transport = InProcessTransport(clock=lambda: now[0])
    transport.open("a")
    late, early = Message("a", onboarding("late")), Message("a", onboarding("early"))
    transport.send([late], delay=5)
    transport.send([early])
    assert transport.receive("a") == early
    now[0] = 5.0
    assert transport.receive("a") == late
    transport.close()
    assert transport.receive("a") is None


def test_message_wire_form_round_trips() -> None:
    event = onboarding("e1")
    message = Message("a", event, attempt=2)
    assert message.events == (event,)  # a single event is a message of one
    assert Message.from_json(message.to_json()) == message
    batch = Message("a", [onboarding("e1"), onboarding("e2")], batch=42)
    assert Message.from_json(batch.to_json()) == batch
    without = batch.to_json()
    del without["batch"]  # the wire form of a sender that has no batch numbers
    assert Message.from_json(without) == Message("a", batch.events)


class CountingTransport(InProcessTransport):
    """The in-process transport, keeping every message sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Message] = []

    def send(self, messages, *, delay: float = 0.0, dedup: bool = True):  # type: ignore[no-untyped-def]
        messages = list(messages)
        self.sent += messages
        super().send(messages, delay=delay)


@pytest.mark.parametrize("size", [5, 12])  # under and over the size accepted in C-level passes
def test_a_batch_is_one_message_per_target_and_a_failure_stays_with_its_event(size: int) -> None:
    transport = CountingTransport()
    bus = Bus(FAST, transport=transport)
    seen: list[tuple[str, int]] = []
    failed_once: set[str] = set()

    def flaky(event: Event) -> None:
        seen.append((event.id, len(seen)))
        if event.id == "e2" and event.id not in failed_once:
            failed_once.add(event.id)
            raise ProviderError("hiccup")

    bus.add_target("a", ONBOARDING, flaky)
    bus.add_target("b", ONBOARDING, lambda e: None)
    bus.start()
    events = [onboarding(f"e{i}") for i in range(size)]
    bus.put_events(events)
    assert bus.join(JOIN)
    bus.stop()
    first = [m for m in transport.sent if m.attempt == 1]
    ids = [e.id for e in events]
    assert sorted((m.target, [e.id for e in m.events]) for m in first) == [("a", ids), ("b", ids)]
    assert [(m.target, [e.id for e in m.events], m.attempt) for m in transport.sent if m.attempt > 1] == [
        ("a", ["e2"], 2)]
    rows = {}
    for event in events:
        record = bus.get(event.id)
        assert record is not None
        rows[event.id] = {d.target: (d.state, d.attempts, d.last_error) for d in record.deliveries}
    assert rows["e2"] == {"a": ("delivered", 2, "hiccup"), "b": ("delivered", 1, None)}
    for other in set(ids) - {"e2"}:  # batch-mates keep their own rows: one attempt, no error
        assert rows[other] == {"a": ("delivered", 1, None), "b": ("delivered", 1, None)}


def test_a_re_put_id_routed_to_another_target_changes_only_its_own_row(bus: Bus) -> None:
    # A batch's events share their delivery rows when accepted together; a later change to one of them
    # (here a re-put of its id that routes to another target) must not show up on its batch-mates.
    other = EventTrigger("offboardingRequest", CONTROL_PLANE_SOURCE)
    bus.add_target("a", ONBOARDING, lambda e: None)
    bus.add_target("c", other, lambda e: None)
    batch = [onboarding(f"x{i}") for i in range(1, 13)]  # big enough to be accepted in C-level passes
    bus.put_events(batch)  # before start: the rows are still shared
    bus.put_events([Event("offboardingRequest", CONTROL_PLANE_SOURCE, {"tenantId": "t1"}, id="x1")])
    bus.start()
    assert bus.join(JOIN)
    rows = {}
    for event_id in ("x1", "x2", "x12"):
        record = bus.get(event_id)
        assert record is not None
        rows[event_id] = {d.target: d.state for d in record.deliveries}
        assert record.event.detail_type == "onboardingRequest"  # a re-put id keeps its first envelope
    assert rows == {"x1": {"a": "delivered", "c": "delivered"}, "x2": {"a": "delivered"}, "x12": {"a": "delivered"}}


def test_a_re_put_id_delivered_again_leaves_its_first_batch_mates_rows_to_their_own_delivery() -> None:
    # Without dedup a re-put id is delivered again, and its row follows the new delivery. Recording the
    # first delivery must still reach the row its batch-mates share, not the one the re-put took over.
    bus = Bus(EventsConfig(dedup_window_seconds=0))
    calls: list[int] = []

    def batch(events: list[Event]) -> list[Exception | None]:
        calls.append(len(events))
        return [None] * len(events)

    bus.add_target("a", ONBOARDING, lambda e: None, batch=batch)
    bus.put_events([onboarding(f"x{i}") for i in range(1, 13)])  # big enough to be accepted in C-level passes
    bus.put_events([onboarding("x12"), onboarding("y1")])  # x12, the newest, re-put while the first is queued
    bus.start()  # both messages in one burst: one batch call, recorded message by message
    assert bus.join(JOIN)
    bus.stop()
    assert calls == [14]
    states = {}
    for event_id in [f"x{i}" for i in range(1, 13)] + ["y1"]:
        record = bus.get(event_id)
        assert record is not None
        states[event_id] = [(d.state, d.attempts) for d in record.deliveries]
    assert states == {event_id: [("delivered", 1)] for event_id in states}


def test_a_lone_event_s_delivery_does_not_mark_the_batch_that_re_put_it_before_that_batch_is_delivered() -> None:
    bus = Bus(EventsConfig(dedup_window_seconds=0))
    release, blocked = threading.Event(), threading.Event()

    def handler(event: Event) -> None:
        if event.id == "y1":
            blocked.set()
            release.wait(JOIN)

    bus.add_target("a", ONBOARDING, handler)
    bus.put_events([onboarding("x1")])
    bus.put_events([onboarding("x1"), onboarding("y1")])  # re-puts x1 while its first delivery is queued
    bus.start()
    try:
        assert blocked.wait(JOIN)
        record = bus.get("y1")
        assert record is not None and record.deliveries[0].state == "pending"  # its handler is still running
    finally:
        release.set()
    assert bus.join(JOIN)
    bus.stop()
    for event_id in ("x1", "y1"):
        record = bus.get(event_id)
        assert record is not None and record.deliveries[0].state == "delivered"


def test_failures_of_one_batch_retry_together_and_dead_letter_each() -> None:
    transport = CountingTransport()
    bus = Bus(FAST, transport=transport)
    calls: list[str] = []

    def outcomes(events: list[Event]) -> list[Exception | None]:
        calls.extend(f"batch:{e.id}" for e in events)
        return [ProviderError(f"{e.id} down") if e.detail.get("bad") else None for e in events]

    def single(event: Event) -> None:
        calls.append(event.id)
        if event.detail.get("bad"):
            raise ProviderError(f"{event.id} still down")

    bus.add_target("a", ONBOARDING, single, batch=outcomes)
    events = [onboarding(f"e{i}", bad=i % 2 == 1) for i in range(6)]
    bus.put_events(events)
    bus.start()
    assert bus.join(JOIN)
    bus.stop()
    assert calls[:6] == [f"batch:e{i}" for i in range(6)]  # the first attempt: one batch call
    retries = [(m.attempt, [e.id for e in m.events]) for m in transport.sent if m.attempt > 1]
    assert retries == [(2, ["e1", "e3", "e5"]), (3, ["e1", "e3", "e5"])]  # one message, one backoff per round
    assert calls[6:] == ["e1", "e3", "e5"] * 2  # retries go through the single hook
    assert sorted((d.event.id, d.attempts, d.last_error) for d in bus.dead_letters()) == [
        ("e1", 3, "e1 still down"), ("e3", 3, "e3 still down"), ("e5", 3, "e5 still down")]
    states = {}
    for event in events:
        record = bus.get(event.id)
        assert record is not None
        [delivery] = record.deliveries
        states[event.id] = (delivery.state, delivery.attempts)
    assert states == {"e0": ("delivered", 1), "e1": ("dead_lettered", 3), "e2": ("delivered", 1),
                      "e3": ("dead_lettered", 3), "e4": ("delivered", 1), "e5": ("dead_lettered", 3)}


def test_handler_results_are_recorded_as_json(bus: Bus) -> None:
    from sbt_core.models import Customer, to_json

    bus.add_target("record", ONBOARDING, lambda e: Customer("t1", "cus_1"))
    bus.add_target("odd", ONBOARDING, lambda e: object())
    bus.add_target("none", ONBOARDING, lambda e: None)
    bus.start()
    event = onboarding()
    bus.put_events([event])
    assert bus.join(JOIN)
    record = bus.get(event.id)
    assert record is not None
    results = {d.target: d.result for d in record.deliveries}
    assert results["record"] == {"tenantId": "t1", "customerId": "cus_1", "email": None, "name": None, "metadata": {}}
    assert results["odd"].startswith("<object object") and results["none"] is None
    assert "result" not in to_json(record)["deliveries"][2]  # None is left out of the JSON


def test_concurrent_publishers_lose_nothing_and_duplicate_nothing(bus: Bus) -> None:
    got: dict[str, list[str]] = {name: [] for name in ("a", "b", "c")}
    for name in got:
        bus.add_target(name, ONBOARDING, got[name].append)
    bus.start()
    batches = [[onboarding(f"p{p}-{i}") for i in range(300)] for p in range(4)]

    def publish(events: list[Event]) -> None:
        for i in range(0, len(events), 7):  # uneven batches, and every event put twice
            bus.put_events(events[i:i + 7])
            bus.put_events(events[i:i + 7])

    threads = [threading.Thread(target=publish, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN)
    assert bus.join(JOIN)
    expected = sorted(e.id for b in batches for e in b)
    for name, events in got.items():
        assert sorted(e.id for e in events) == expected, name


def test_a_failure_inside_the_bus_dead_letters_instead_of_stranding(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    bus.add_target("a", ONBOARDING, lambda e: None)
    bus.start()

    def broken_backoff(attempt: int) -> float:
        raise RuntimeError("bug")

    def failing(event: Event) -> None:
        raise ProviderError("down")  # retryable, so the (broken) backoff is computed

    monkeypatch.setattr(bus, "_backoff", broken_backoff)
    bus.add_target("b", ONBOARDING, failing)
    event = onboarding()
    bus.put_events([event])
    assert bus.join(JOIN)
    record = bus.get(event.id)
    assert record is not None
    assert {d.target: d.state for d in record.deliveries} == {"a": "delivered", "b": "dead_lettered"}
    [letter] = bus.dead_letters()
    assert letter.last_error == "internal error while delivering: RuntimeError: bug"


def test_a_bug_after_a_message_is_settled_counts_it_once_and_dead_letters_only_the_rest() -> None:
    transport = InProcessTransport()
    bus = Bus(FAST, transport=transport)
    bus.add_target("a", ONBOARDING, lambda e: None, batch=lambda events: [None] * len(events))
    first, second = [onboarding("m1-a"), onboarding("m1-b")], [onboarding("m2-a")]
    bus.put_events(first)
    bus.put_events(second)  # two messages, delivered in one burst through the batch handler
    acks: list[Message] = []

    def ack(message: Message) -> None:
        acks.append(message)
        if len(acks) == 1:
            raise RuntimeError("broker went away")  # after the first message was settled

    transport.ack = ack  # type: ignore[method-assign]
    bus.start()
    assert bus.join(JOIN)  # nothing counted twice, nothing stranded
    assert not bus.busy("a")
    states = {}
    for event in first + second:
        record = bus.get(event.id)
        assert record is not None
        states[event.id] = record.deliveries[0].state
    assert states == {"m1-a": "delivered", "m1-b": "delivered", "m2-a": "dead_lettered"}
    [letter] = bus.dead_letters()
    assert letter.last_error == "internal error while delivering: RuntimeError: broker went away"
    bus.stop()


class ThreadCountingLock:
    """A lock that counts acquisitions per thread name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_thread: dict[str, int] = {}

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        name = threading.current_thread().name
        self.by_thread[name] = self.by_thread.get(name, 0) + 1
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    __enter__ = acquire

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_workers_record_outcomes_without_taking_the_bus_lock_per_event() -> None:
    """A worker that takes the bus lock per event hands the interpreter lock back and forth with the
    publisher on every event (a convoy): outcomes are queued instead and applied by the next reader."""
    bus = Bus(FAST)
    lock = ThreadCountingLock()
    bus._lock, bus._idle = lock, threading.Condition(lock)  # type: ignore[assignment]
    failed_once: set[str] = set()

    def handler(event: Event) -> None:
        if event.id == "e7" and not failed_once:
            failed_once.add(event.id)
            raise ProviderError("once")

    bus.add_target("a", ONBOARDING, handler)
    for i in range(200):
        bus.publish(onboarding(f"e{i}"))  # one message per event
    bus.start()
    assert bus.join(JOIN)
    worker = lock.by_thread.get("sbt-bus-a", 0)
    assert worker <= 3, f"the worker took the bus lock {worker} times for 200 events"
    record = bus.get("e7")
    assert record is not None and [(d.state, d.attempts, d.last_error) for d in record.deliveries] == [
        ("delivered", 2, "once")]
    assert all((r := bus.get(f"e{i}")) is not None and r.deliveries[0].state == "delivered" for i in range(200))
    bus.stop()


def test_the_in_process_transport_meets_the_transport_contract() -> None:
    from sbt_core.testing.transport import check_transport

    check_transport(InProcessTransport)
